//! Durable storage for every signal: the write-ahead log and the per-signal
//! stores built on it.

pub mod codec;
pub mod faults;
pub mod logs;
pub mod metrics;
pub mod traces;
pub mod wal;

use std::io;
use std::path::Path;

/// Replace `path` with `bytes` so that a crash leaves the old or the new
/// file, never a mix: write a temporary file, fsync it, rename it over
/// `path`, then fsync the directory so that the rename itself is durable
/// (before anything that could rebuild the file, such as WAL segments, is
/// deleted).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    faults::check("rename")?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A fresh directory name under `dir` for a block of `[min, max]` written
/// at WAL segment `checkpoint`: times zero-padded to `width` digits, negative
/// ones spelled `m…`, and a counter suffix when the name is taken (two cuts
/// of out-of-order data can make blocks of the same span). Unique whatever
/// the timestamps.
pub fn unique_block_name(dir: &Path, min: i64, max: i64, checkpoint: u64, width: usize) -> String {
    let time = |t: i64| {
        if t >= 0 {
            format!("{t:0width$}")
        } else {
            format!("m{:0width$}", t.unsigned_abs())
        }
    };
    let base = format!("{}-{}-{checkpoint:08}", time(min), time(max));
    let mut name = base.clone();
    let mut n = 1;
    while dir.join(&name).exists() {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// Whether an error (or one it wraps) is a resource shortage that says
/// nothing about the data: too many open files, out of memory, out of map
/// areas, interrupted. Opening a block or partition that fails this way must
/// stop start-up, not move healthy data aside as corrupt.
pub fn is_transient(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            // EINTR, EAGAIN, ENOMEM, ENFILE, EMFILE
            if matches!(io.raw_os_error(), Some(4 | 11 | 12 | 23 | 24))
                || io.kind() == io::ErrorKind::OutOfMemory
            {
                return true;
            }
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_told_from_corruption() {
        let emfile = io::Error::from_raw_os_error(24);
        assert!(is_transient(&emfile));
        let wrapped =
            crate::storage::metrics::block::BlockError::Io(io::Error::from_raw_os_error(12));
        assert!(is_transient(&wrapped));
        assert!(!is_transient(&io::Error::new(
            io::ErrorKind::InvalidData,
            "bad"
        )));
        assert!(!is_transient(&io::Error::from(io::ErrorKind::NotFound)));
    }
}
