//! Log records as documents: a JSON object (the `_source`), the index it was
//! written to, its id and its timestamp. Records from OTLP are turned into the
//! same shape (see `ingest::otlp::logs`), so every log record is searched the
//! same way whichever receiver took it.

use serde_json::{Map, Value};

/// Field holding a document's time, as Elasticsearch and Beats name it.
pub const TIMESTAMP_FIELD: &str = "@timestamp";

/// Fields holding a record's message text: full-text searchable, never
/// exact-match (Elastic Common Schema maps `message` as `match_only_text`).
pub const BODY_FIELDS: [&str; 2] = ["message", "body"];

/// How a document asks to be written (the `_bulk` action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    /// Add, or replace the document with the same id.
    Index,
    /// Add; fails with a conflict if the id exists.
    Create,
}

impl WriteOp {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOp::Index => "index",
            WriteOp::Create => "create",
        }
    }
}

/// One log record to store.
#[derive(Debug, Clone, PartialEq)]
pub struct LogDoc {
    pub index: String,
    /// Caller-chosen id; the store generates one when absent.
    pub id: Option<String>,
    pub op: WriteOp,
    /// Nanoseconds since the Unix epoch; `None` means "when it arrived".
    pub timestamp_ns: Option<i64>,
    pub source: Map<String, Value>,
    /// The source exactly as received, returned as `_source` (key order and
    /// number formatting kept); `None` means "serialize `source`".
    pub raw: Option<Vec<u8>>,
}

impl LogDoc {
    /// A document whose timestamp is read from its `@timestamp` field.
    pub fn new(index: String, id: Option<String>, op: WriteOp, source: Map<String, Value>) -> Self {
        let timestamp_ns = source.get(TIMESTAMP_FIELD).and_then(parse_timestamp);
        LogDoc {
            index,
            id,
            op,
            timestamp_ns,
            source,
            raw: None,
        }
    }
}

/// Read a timestamp as Elasticsearch's default `date` format does:
/// `strict_date_optional_time` strings or epoch milliseconds.
pub fn parse_timestamp(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            if let Some(ms) = n.as_i64() {
                return ms.checked_mul(1_000_000);
            }
            let ms = n.as_f64()?;
            ms.is_finite().then_some((ms * 1e6) as i64)
        }
        Value::String(s) => parse_date_string(s),
        _ => None,
    }
}

/// RFC 3339 (with or without zone, fractional seconds optional), a date
/// alone, or digits as epoch milliseconds.
pub fn parse_date_string(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok()?.checked_mul(1_000_000);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return t.timestamp_nanos_opt();
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return t.and_utc().timestamp_nanos_opt();
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return t.timestamp_nanos_opt();
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt();
    }
    None
}

/// Format nanoseconds as Elasticsearch prints dates (`2024-05-01T12:00:00.000Z`).
pub fn format_timestamp_ms(ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(ns);
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Elasticsearch's limit on `_id`, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// Elasticsearch's `_id` rule, with its message.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "id [{}...] is too long, must be no longer than {MAX_ID_BYTES} bytes but was: {}",
            id.chars().take(32).collect::<String>(),
            id.len()
        ));
    }
    if id.is_empty() {
        return Err("if _id is specified it must not be empty".into());
    }
    Ok(())
}

/// Elasticsearch's index name rules.
pub fn valid_index_name(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > 255 {
        Some("must not be longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("must not be '.' or '..'")
    } else if name.starts_with(['-', '_', '+']) {
        Some("must not start with '_', '-', or '+'")
    } else if name.chars().any(|c| c.is_uppercase()) {
        Some("must be lowercase")
    } else if name.contains([' ', '\\', '/', '*', '?', '"', '<', '>', '|', ',', '#', ':']) {
        Some("must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]")
    } else {
        None
    };
    match problem {
        Some(p) => Err(format!("Invalid index name [{name}], {p}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let ns = 1_700_000_000_123_000_000;
        assert_eq!(parse_date_string("2023-11-14T22:13:20.123Z"), Some(ns));
        assert_eq!(parse_date_string("2023-11-14T22:13:20.123"), Some(ns));
        assert_eq!(parse_date_string("2023-11-14T23:13:20.123+01:00"), Some(ns));
        assert_eq!(parse_date_string("1700000000123"), Some(ns));
        assert_eq!(
            parse_timestamp(&serde_json::json!(1700000000123u64)),
            Some(ns)
        );
        assert_eq!(
            parse_date_string("2023-11-14"),
            Some(1_699_920_000_000_000_000)
        );
        assert_eq!(parse_date_string("yesterday"), None);
        assert_eq!(format_timestamp_ms(ns), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn index_names() {
        assert!(valid_index_name("logs-app-2024.05.01").is_ok());
        assert!(valid_index_name("Logs").is_err());
        assert!(valid_index_name("_x").is_err());
        assert!(valid_index_name("a b").is_err());
    }
}
