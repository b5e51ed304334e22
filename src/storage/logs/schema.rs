//! The tantivy schema of a log partition and how a typed document becomes a
//! tantivy document.
//!
//! | field          | holds                                   | index            | fast |
//! |----------------|-----------------------------------------|------------------|------|
//! | `_uid`         | `index \0 id` of caller-chosen ids (stored) | raw         |      |
//! | `_id_seed`, `_id_seq` | the two halves of a generated id |                  | u64  |
//! | `_index`       | index name                              | raw              | yes  |
//! | `ts`           | `@timestamp` (ms precision)             |                  | yes  |
//! | `body`         | `message`/`body` text                   | words+positions  |      |
//! | `trace_id`     | a 32-hex trace id as 16 bytes           |                  | u128 |
//! | `span_id`      | a 16-hex span id as 8 bytes             |                  | u64  |
//! | `text`         | JSON: every text leaf, analysed         | words+positions  |      |
//! | `kw`           | JSON: exact values (keywords ≤ ignore_above, numbers, booleans, dates) | raw | yes |
//! | `_field_names` | every leaf path and its parents (for `exists`) | raw       |      |
//! | `_source`      | the original JSON (stored, zstd)        |                  |      |
//!
//! Two choices keep per-document unique values out of term dictionaries,
//! which dominate both indexing CPU and size otherwise: generated ids are a
//! per-process seed and a sequence number in two fast columns (an `ids`
//! query on them scans those columns), and trace/span ids in the OTel hex
//! form are fixed-width fast columns, found by a column scan instead of a
//! term lookup. Severity, `service.name` and every other keyword are fast
//! columns of `kw` at their own path.

use std::net::Ipv6Addr;

use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, IpAddrOptions, JsonObjectOptions,
    NumericOptions, OwnedValue, Schema, TextFieldIndexing, TextOptions, STORED,
};
use tantivy::{DateTime, TantivyDocument};

use super::catalog::{Typed, TypedDoc};

pub const UID: &str = "_uid";
pub const ID_SEED: &str = "_id_seed";
pub const ID_SEQ: &str = "_id_seq";
pub const INDEX: &str = "_index";
pub const TS: &str = "ts";
pub const BODY: &str = "body";
pub const TRACE_ID: &str = "trace_id";
pub const SPAN_ID: &str = "span_id";
pub const TEXT: &str = "text";
pub const KW: &str = "kw";
pub const FIELD_NAMES: &str = "_field_names";
pub const SOURCE: &str = "_source";

/// The analyser of `body` and `text` (split on non-alphanumerics, lowercase).
pub const TEXT_TOKENIZER: &str = "default";

/// Handles of every field of the schema.
#[derive(Clone)]
pub struct LogSchema {
    pub schema: Schema,
    pub uid: Field,
    pub id_seed: Field,
    pub id_seq: Field,
    pub index: Field,
    pub ts: Field,
    pub body: Field,
    pub trace_id: Field,
    pub span_id: Field,
    pub text: Field,
    pub kw: Field,
    pub field_names: Field,
    pub source: Field,
}

impl LogSchema {
    pub fn new() -> LogSchema {
        let mut builder = Schema::builder();
        let analysed = TextFieldIndexing::default()
            .set_tokenizer(TEXT_TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let raw_basic = TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::Basic);
        let keyword = TextOptions::default()
            .set_indexing_options(raw_basic.clone())
            .set_fast("raw");
        let uid = builder.add_text_field(
            UID,
            TextOptions::default()
                .set_indexing_options(raw_basic.clone())
                .set_stored(),
        );
        let id_seed = builder.add_u64_field(ID_SEED, NumericOptions::default().set_fast());
        let id_seq = builder.add_u64_field(ID_SEQ, NumericOptions::default().set_fast());
        let index = builder.add_text_field(INDEX, keyword);
        let ts = builder.add_date_field(
            TS,
            DateOptions::default()
                .set_fast()
                .set_precision(DateTimePrecision::Milliseconds),
        );
        let body = builder.add_text_field(
            BODY,
            TextOptions::default().set_indexing_options(analysed.clone()),
        );
        let trace_id = builder.add_ip_addr_field(TRACE_ID, IpAddrOptions::default().set_fast());
        let span_id = builder.add_u64_field(SPAN_ID, NumericOptions::default().set_fast());
        let text = builder.add_json_field(
            TEXT,
            JsonObjectOptions::default()
                .set_indexing_options(analysed)
                .set_expand_dots_enabled(),
        );
        let kw = builder.add_json_field(
            KW,
            JsonObjectOptions::default()
                .set_indexing_options(raw_basic.clone())
                .set_fast("raw")
                .set_expand_dots_enabled(),
        );
        let field_names = builder.add_text_field(
            FIELD_NAMES,
            TextOptions::default().set_indexing_options(raw_basic),
        );
        let source = builder.add_bytes_field(SOURCE, STORED);
        LogSchema {
            schema: builder.build(),
            uid,
            id_seed,
            id_seq,
            index,
            ts,
            body,
            trace_id,
            span_id,
            text,
            kw,
            field_names,
            source,
        }
    }

    /// Build the tantivy document of a typed record. A generated id's
    /// sequence number is added by the store ([`LogSchema::set_seq`]) once
    /// it is assigned under the write lock.
    pub fn document(
        &self,
        index: &str,
        id: &DocId,
        timestamp_ns: i64,
        typed: TypedDoc,
        source: &[u8],
        keyword_ignore_above: usize,
    ) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        match id {
            DocId::Explicit(id) => doc.add_text(self.uid, uid(index, id)),
            DocId::Generated { seed, .. } => doc.add_u64(self.id_seed, *seed),
        }
        doc.add_text(self.index, index);
        doc.add_date(self.ts, DateTime::from_timestamp_nanos(timestamp_ns));
        let mut names: Vec<String> = Vec::with_capacity(typed.leaves.len() + 1);
        if let Some(body) = typed.body {
            doc.add_text(self.body, &body);
            names.push(typed.body_field.unwrap_or_else(|| BODY.to_owned()));
        }
        let mut text = Vec::new();
        let mut kw = Vec::new();
        for (path, value) in typed.leaves {
            match value {
                Typed::Str {
                    value,
                    text: analysed,
                    keyword,
                } => {
                    if let Some(id) = self.fixed_width_id(&path, &value) {
                        doc.add_field_value(self.trace_id_or_span(&id), &id.value());
                    } else {
                        let exact = keyword && value.len() <= keyword_ignore_above;
                        match (analysed, exact) {
                            (true, true) => {
                                kw.push((path.clone(), OwnedValue::Str(value.clone())));
                                text.push((path.clone(), OwnedValue::Str(value)));
                            }
                            (true, false) => text.push((path.clone(), OwnedValue::Str(value))),
                            (false, true) => kw.push((path.clone(), OwnedValue::Str(value))),
                            (false, false) => {}
                        }
                    }
                }
                Typed::I64(v) => kw.push((path.clone(), OwnedValue::I64(v))),
                Typed::F64(v) => kw.push((path.clone(), OwnedValue::F64(v))),
                Typed::Bool(v) => kw.push((path.clone(), OwnedValue::Bool(v))),
                // `@timestamp` is the `ts` field already.
                Typed::Date(_) if path == crate::model::log::TIMESTAMP_FIELD => {}
                Typed::Date(ns) => kw.push((
                    path.clone(),
                    OwnedValue::Date(DateTime::from_timestamp_nanos(ns)),
                )),
            }
            names.push(path);
        }
        if !text.is_empty() {
            doc.add_field_value(self.text, &OwnedValue::Object(text));
        }
        if !kw.is_empty() {
            doc.add_field_value(self.kw, &OwnedValue::Object(kw));
        }
        // Every path and its parents, once.
        let mut all: Vec<&str> = Vec::with_capacity(names.len() * 2);
        for name in &names {
            let mut end = name.len();
            loop {
                all.push(&name[..end]);
                match name[..end].rfind('.') {
                    Some(dot) => end = dot,
                    None => break,
                }
            }
        }
        all.sort_unstable();
        all.dedup();
        for name in all {
            doc.add_text(self.field_names, name);
        }
        doc.add_bytes(self.source, source);
        doc
    }

    /// Add the sequence number of a generated id.
    pub fn set_seq(&self, doc: &mut TantivyDocument, seq: u64) {
        doc.add_u64(self.id_seq, seq);
    }

    fn fixed_width_id(&self, path: &str, value: &str) -> Option<FixedId> {
        if TRACE_ID_PATHS.contains(&path) {
            parse_hex::<16>(value).map(FixedId::Trace)
        } else if SPAN_ID_PATHS.contains(&path) {
            parse_hex::<8>(value).map(FixedId::Span)
        } else {
            None
        }
    }

    fn trace_id_or_span(&self, id: &FixedId) -> Field {
        match id {
            FixedId::Trace(_) => self.trace_id,
            FixedId::Span(_) => self.span_id,
        }
    }
}

/// Paths whose 32-hex values go to the `trace_id` column.
pub const TRACE_ID_PATHS: [&str; 3] = ["trace_id", "trace.id", "traceId"];
/// Paths whose 16-hex values go to the `span_id` column.
pub const SPAN_ID_PATHS: [&str; 3] = ["span_id", "span.id", "spanId"];

/// A trace or span id in its fixed-width column form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedId {
    Trace([u8; 16]),
    Span([u8; 8]),
}

impl FixedId {
    pub fn value(&self) -> OwnedValue {
        match self {
            FixedId::Trace(bytes) => OwnedValue::IpAddr(Ipv6Addr::from(*bytes)),
            FixedId::Span(bytes) => OwnedValue::U64(u64::from_be_bytes(*bytes)),
        }
    }
}

pub use crate::model::span::parse_hex;

/// How a document is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocId {
    /// Chosen by the caller: indexed as `_uid`.
    Explicit(String),
    /// Generated: a per-process seed and a sequence number (fast columns).
    Generated { seed: u64, seq: u64 },
}

impl DocId {
    /// The id as clients see it.
    pub fn render(&self) -> String {
        match self {
            DocId::Explicit(id) => id.clone(),
            DocId::Generated { seed, seq } => generated_id(*seed, *seq),
        }
    }
}

/// A generated id: 20 URL-safe base64 characters of seed (8 bytes) and
/// sequence (7 bytes), so ids of one process share a prefix.
pub fn generated_id(seed: u64, seq: u64) -> String {
    let mut bytes = [0u8; 15];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    bytes[8..].copy_from_slice(&seq.to_be_bytes()[1..]);
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(20);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for i in 0..4 {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The seed and sequence of a generated id, if `id` has that form.
pub fn parse_generated_id(id: &str) -> Option<(u64, u64)> {
    if id.len() != 20 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut bytes = [0u8; 15];
    for (i, chunk) in id.as_bytes().chunks(4).enumerate() {
        let mut n = 0u32;
        for &c in chunk {
            n = n << 6 | value(c)?;
        }
        bytes[i * 3] = (n >> 16) as u8;
        bytes[i * 3 + 1] = (n >> 8) as u8;
        bytes[i * 3 + 2] = n as u8;
    }
    let seed = u64::from_be_bytes(bytes[..8].try_into().ok()?);
    let mut seq = [0u8; 8];
    seq[1..].copy_from_slice(&bytes[8..]);
    Some((seed, u64::from_be_bytes(seq)))
}

impl Default for LogSchema {
    fn default() -> Self {
        LogSchema::new()
    }
}

/// The unique key of a document: index name and id.
pub fn uid(index: &str, id: &str) -> String {
    let mut out = String::with_capacity(index.len() + id.len() + 1);
    out.push_str(index);
    out.push('\0');
    out.push_str(id);
    out
}

/// Split a stored `_uid` into index and id.
pub fn split_uid(uid: &str) -> (&str, &str) {
    uid.split_once('\0').unwrap_or(("", uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for (seed, seq) in [
            (0u64, 0u64),
            (u64::MAX, (1 << 56) - 1),
            (0x1234_5678_9abc_def0, 42),
        ] {
            let id = generated_id(seed, seq);
            assert_eq!(id.len(), 20);
            assert_eq!(parse_generated_id(&id), Some((seed, seq)));
        }
        assert_eq!(parse_generated_id("short"), None);
        assert_eq!(parse_generated_id("!!!!!!!!!!!!!!!!!!!!"), None);
        assert_eq!(
            parse_hex::<8>("00f067aa0BA902B7"),
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(parse_hex::<8>("00f067aa0ba902b"), None);
        assert_eq!(parse_hex::<8>("00f067aa0ba902bx"), None);
    }
}
