//! Durable storage for every signal: the write-ahead log and the per-signal
//! stores built on it.

pub mod codec;
pub mod logs;
pub mod metrics;
pub mod traces;
pub mod wal;
