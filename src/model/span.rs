//! Spans as Oxeye stores them: OTLP's span with its resource's service name
//! pulled out, ids as fixed-size arrays, attribute values typed. Encoded
//! compactly for the WAL and for the payload column of span blocks.

use std::fmt::Write;

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// An attribute value; arrays and maps are kept as their JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Json(String),
}

impl AttrValue {
    /// The value as text (tags are matched on it).
    pub fn as_text(&self) -> String {
        match self {
            AttrValue::Str(s) | AttrValue::Json(s) => s.clone(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bytes(b) => hex(b),
        }
    }
}

pub type Attributes = Vec<(String, AttrValue)>;

#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub time_ns: i64,
    pub name: String,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Attributes,
}

/// OTLP span kinds (`SpanKind` enum values).
pub const KIND_NAMES: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

/// OTLP status codes: 0 unset, 1 ok, 2 error.
pub const STATUS_ERROR: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: u8,
    pub start_ns: i64,
    pub end_ns: i64,
    pub status_code: u8,
    pub status_message: String,
    /// `service.name` of the resource (`unknown_service` when absent).
    pub service: String,
    /// Every resource attribute, `service.name` included (shared by the
    /// spans of one resource).
    pub resource: std::sync::Arc<Attributes>,
    pub scope_name: String,
    pub scope_version: String,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
}

impl Span {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns).max(0)
    }

    pub fn kind_name(&self) -> &'static str {
        KIND_NAMES
            .get(self.kind as usize)
            .copied()
            .unwrap_or("unspecified")
    }

    /// Whether any span attribute, resource attribute or event attribute has
    /// `key` with a value whose text is `value` (Jaeger's tag match).
    pub fn has_tag(&self, key: &str, value: &str) -> bool {
        let hit = |attrs: &Attributes| attrs.iter().any(|(k, v)| k == key && v.as_text() == value);
        hit(&self.attributes)
            || hit(&self.resource)
            || self.events.iter().any(|e| hit(&e.attributes))
            || match key {
                "error" => (self.status_code == STATUS_ERROR).to_string() == value,
                "span.kind" => self.kind_name() == value,
                "otel.status_code" => {
                    ["UNSET", "OK", "ERROR"].get(self.status_code as usize) == Some(&value)
                }
                _ => false,
            }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Exactly `2 * N` hex digits (either case).
pub fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A trace id from 32 hex digits, or fewer (Jaeger's 16-digit ids are
/// left-padded with zeros).
pub fn parse_trace_id(text: &str) -> Option<TraceId> {
    let text = text.trim();
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    let padded = format!("{text:0>32}");
    parse_hex::<16>(&padded)
}

pub mod codec {
    //! The compact binary form of a span's non-column fields.

    use super::*;
    use crate::storage::codec::{put_str, put_uvarint, put_varint, Reader};

    fn put_attrs(out: &mut Vec<u8>, attrs: &Attributes) {
        put_uvarint(out, attrs.len() as u64);
        for (key, value) in attrs {
            put_str(out, key);
            match value {
                AttrValue::Str(s) => {
                    out.push(0);
                    put_str(out, s);
                }
                AttrValue::Bool(b) => {
                    out.push(1);
                    out.push(u8::from(*b));
                }
                AttrValue::Int(i) => {
                    out.push(2);
                    put_varint(out, *i);
                }
                AttrValue::Double(d) => {
                    out.push(3);
                    out.extend_from_slice(&d.to_le_bytes());
                }
                AttrValue::Bytes(b) => {
                    out.push(4);
                    put_uvarint(out, b.len() as u64);
                    out.extend_from_slice(b);
                }
                AttrValue::Json(s) => {
                    out.push(5);
                    put_str(out, s);
                }
            }
        }
    }

    fn get_attrs(r: &mut Reader<'_>) -> Option<Attributes> {
        let n = r.uvarint()? as usize;
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let key = r.str()?.to_owned();
            let value = match r.u8()? {
                0 => AttrValue::Str(r.str()?.to_owned()),
                1 => AttrValue::Bool(r.u8()? != 0),
                2 => AttrValue::Int(r.varint()?),
                3 => AttrValue::Double(r.f64_le()?),
                4 => {
                    let len = r.uvarint()? as usize;
                    AttrValue::Bytes(r.bytes(len)?.to_vec())
                }
                5 => AttrValue::Json(r.str()?.to_owned()),
                _ => return None,
            };
            out.push((key, value));
        }
        Some(out)
    }

    /// Everything but the columns a block keeps separately (ids, name,
    /// service, kind, times, status code).
    pub fn put_payload(out: &mut Vec<u8>, span: &Span) {
        put_str(out, &span.trace_state);
        put_uvarint(out, u64::from(span.flags));
        put_str(out, &span.status_message);
        put_attrs(out, &span.resource);
        put_str(out, &span.scope_name);
        put_str(out, &span.scope_version);
        put_attrs(out, &span.attributes);
        put_uvarint(out, span.events.len() as u64);
        for event in &span.events {
            put_varint(out, event.time_ns);
            put_str(out, &event.name);
            put_attrs(out, &event.attributes);
        }
        put_uvarint(out, span.links.len() as u64);
        for link in &span.links {
            out.extend_from_slice(&link.trace_id);
            out.extend_from_slice(&link.span_id);
            put_str(out, &link.trace_state);
            put_attrs(out, &link.attributes);
        }
    }

    /// Fill the payload fields of `span` from `data`.
    pub fn get_payload(data: &[u8], span: &mut Span) -> Option<()> {
        let mut r = Reader::new(data);
        span.trace_state = r.str()?.to_owned();
        span.flags = r.uvarint()? as u32;
        span.status_message = r.str()?.to_owned();
        span.resource = std::sync::Arc::new(get_attrs(&mut r)?);
        span.scope_name = r.str()?.to_owned();
        span.scope_version = r.str()?.to_owned();
        span.attributes = get_attrs(&mut r)?;
        let n = r.uvarint()? as usize;
        span.events = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            span.events.push(SpanEvent {
                time_ns: r.varint()?,
                name: r.str()?.to_owned(),
                attributes: get_attrs(&mut r)?,
            });
        }
        let n = r.uvarint()? as usize;
        span.links = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let trace_id: TraceId = r.bytes(16)?.try_into().ok()?;
            let span_id: SpanId = r.bytes(8)?.try_into().ok()?;
            span.links.push(SpanLink {
                trace_id,
                span_id,
                trace_state: r.str()?.to_owned(),
                attributes: get_attrs(&mut r)?,
            });
        }
        Some(())
    }

    /// A whole span (for the WAL).
    pub fn put_span(out: &mut Vec<u8>, span: &Span) {
        out.extend_from_slice(&span.trace_id);
        out.extend_from_slice(&span.span_id);
        match span.parent_span_id {
            Some(parent) => {
                out.push(1);
                out.extend_from_slice(&parent);
            }
            None => out.push(0),
        }
        put_str(out, &span.name);
        put_str(out, &span.service);
        out.push(span.kind);
        out.push(span.status_code);
        put_varint(out, span.start_ns);
        put_varint(out, span.end_ns);
        let mut payload = Vec::new();
        put_payload(&mut payload, span);
        put_uvarint(out, payload.len() as u64);
        out.extend_from_slice(&payload);
    }

    pub fn get_span(r: &mut Reader<'_>) -> Option<Span> {
        let trace_id: TraceId = r.bytes(16)?.try_into().ok()?;
        let span_id: SpanId = r.bytes(8)?.try_into().ok()?;
        let parent_span_id = match r.u8()? {
            0 => None,
            _ => Some(r.bytes(8)?.try_into().ok()?),
        };
        let mut span = Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state: String::new(),
            flags: 0,
            name: r.str()?.to_owned(),
            service: r.str()?.to_owned(),
            kind: r.u8()?,
            status_code: r.u8()?,
            start_ns: r.varint()?,
            end_ns: r.varint()?,
            status_message: String::new(),
            resource: Default::default(),
            scope_name: String::new(),
            scope_version: String::new(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
        };
        let len = r.uvarint()? as usize;
        get_payload(r.bytes(len)?, &mut span)?;
        Some(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Span {
        Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            trace_state: "k=v".into(),
            flags: 1,
            name: "GET /".into(),
            kind: 2,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_250_000_000,
            status_code: STATUS_ERROR,
            status_message: "boom".into(),
            service: "api".into(),
            resource: std::sync::Arc::new(vec![(
                "service.name".into(),
                AttrValue::Str("api".into()),
            )]),
            scope_name: "lib".into(),
            scope_version: "1.0".into(),
            attributes: vec![
                ("http.status_code".into(), AttrValue::Int(500)),
                ("ok".into(), AttrValue::Bool(false)),
                ("ratio".into(), AttrValue::Double(0.5)),
                ("raw".into(), AttrValue::Bytes(vec![0, 255])),
                ("list".into(), AttrValue::Json("[1,2]".into())),
            ],
            events: vec![SpanEvent {
                time_ns: 1_700_000_000_100_000_000,
                name: "exception".into(),
                attributes: vec![("exception.type".into(), AttrValue::Str("E".into()))],
            }],
            links: vec![SpanLink {
                trace_id: [9; 16],
                span_id: [8; 8],
                trace_state: String::new(),
                attributes: vec![],
            }],
        }
    }

    #[test]
    fn round_trip_and_tags() {
        let span = sample();
        let mut out = Vec::new();
        codec::put_span(&mut out, &span);
        let back = codec::get_span(&mut crate::storage::codec::Reader::new(&out)).unwrap();
        assert_eq!(back, span);
        assert!(span.has_tag("http.status_code", "500"));
        assert!(span.has_tag("exception.type", "E"));
        assert!(span.has_tag("error", "true"));
        assert!(span.has_tag("service.name", "api"));
        assert!(!span.has_tag("http.status_code", "200"));
        assert_eq!(
            parse_trace_id("1"),
            Some({
                let mut t = [0u8; 16];
                t[15] = 1;
                t
            })
        );
        assert_eq!(parse_trace_id("xyz"), None);
        assert_eq!(hex(&[0, 171]), "00ab");
    }
}
