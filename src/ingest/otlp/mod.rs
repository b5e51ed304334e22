//! OTLP receivers: request bodies (protobuf or JSON, optionally gzip) in,
//! signal-specific translation out.

pub mod budget;
pub mod logs;
pub mod metrics;
pub mod traces;

use std::io::Read;

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};

use crate::ingest::IngestError;

/// The two OTLP/HTTP encodings; responses use the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn from_content_type(content_type: Option<&str>) -> Result<Encoding, IngestError> {
        let media = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            "" => Err(IngestError::UnsupportedMediaType(
                "missing Content-Type: use application/x-protobuf or application/json".into(),
            )),
            other => Err(IngestError::UnsupportedMediaType(format!(
                "unsupported Content-Type {other:?}: use application/x-protobuf or application/json"
            ))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Undo `Content-Encoding` (identity or gzip), enforcing `max` decompressed bytes.
pub fn decompress(
    content_encoding: Option<&str>,
    body: &[u8],
    max: usize,
) -> Result<Vec<u8>, IngestError> {
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            let read = flate2::read::GzDecoder::new(body)
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|err| IngestError::BadRequest(format!("gzip: {err}")))?;
            if read > max {
                return Err(IngestError::PayloadTooLarge(format!(
                    "decompressed body is over the limit of {max} bytes (limits.max_body_size)"
                )));
            }
            Ok(out)
        }
        Some(other) => Err(IngestError::UnsupportedMediaType(format!(
            "unsupported Content-Encoding {other:?}: use gzip or none"
        ))),
    }
}

/// Decode an OTLP message from its HTTP body.
pub fn decode<T>(encoding: Encoding, body: &[u8]) -> Result<T, IngestError>
where
    T: prost::Message + Default + serde::de::DeserializeOwned,
{
    match encoding {
        Encoding::Protobuf => T::decode(body)
            .map_err(|err| IngestError::BadRequest(format!("invalid OTLP protobuf: {err}"))),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|err| IngestError::BadRequest(format!("invalid OTLP JSON: {err}"))),
    }
}

/// Encode a response in the request's encoding.
pub fn encode<T>(encoding: Encoding, message: &T) -> Vec<u8>
where
    T: prost::Message + serde::Serialize,
{
    match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(message).expect("OTLP messages serialize"),
    }
}

/// Bytes as lowercase hex (trace and span ids).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// An OTLP `AnyValue` as JSON (bytes as hex, kvlists as objects).
pub fn any_to_json(value: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => J::from(*d),
        any_value::Value::BytesValue(b) => J::String(hex(b)),
        any_value::Value::ArrayValue(array) => J::Array(
            array
                .values
                .iter()
                .filter_map(|v| v.value.as_ref().map(any_to_json))
                .collect(),
        ),
        any_value::Value::KvlistValue(list) => J::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map_or(J::Null, any_to_json),
                    )
                })
                .collect(),
        ),
        #[allow(unreachable_patterns)]
        _ => J::Null,
    }
}

/// OTLP attributes as a JSON object (keys kept as sent, dots included).
pub fn attributes_to_json(attributes: &[KeyValue]) -> serde_json::Map<String, serde_json::Value> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = kv.value.as_ref()?.value.as_ref()?;
            Some((kv.key.clone(), any_to_json(value)))
        })
        .collect()
}
