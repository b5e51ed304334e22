//! OTLP spans → [`Span`]s: ids as fixed arrays, the resource's
//! `service.name` pulled out, attribute values typed (arrays and maps as
//! JSON text). Spans with malformed ids or an end before their start are
//! rejected with a reason.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};

use super::any_to_json;
use crate::model::span::{AttrValue, Attributes, Span, SpanEvent, SpanLink};

#[derive(Debug, Default)]
pub struct Translated {
    pub spans: Vec<Span>,
    pub rejected: u64,
    pub messages: Vec<String>,
}

impl Translated {
    fn reject(&mut self, message: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.messages.len() < 5 {
            self.messages.push(message());
        }
    }
}

/// Attributes, moving keys and string values out of the decoded request.
pub fn attributes(kvs: Vec<KeyValue>) -> Attributes {
    kvs.into_iter()
        .filter_map(|kv| {
            let value = match kv.value?.value? {
                any_value::Value::StringValue(s) => AttrValue::Str(s),
                any_value::Value::BoolValue(b) => AttrValue::Bool(b),
                any_value::Value::IntValue(i) => AttrValue::Int(i),
                any_value::Value::DoubleValue(d) => AttrValue::Double(d),
                any_value::Value::BytesValue(b) => AttrValue::Bytes(b),
                other => AttrValue::Json(any_to_json(&other).to_string()),
            };
            Some((kv.key, value))
        })
        .collect()
}

fn id<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let id: [u8; N] = bytes.try_into().ok()?;
    (id != [0u8; N]).then_some(id)
}

/// Translate a request, taking it apart: strings and attribute lists move
/// into the spans instead of being copied (this path runs for every span).
pub fn translate(request: ExportTraceServiceRequest) -> Translated {
    let mut out = Translated::default();
    for resource_spans in request.resource_spans {
        let resource = std::sync::Arc::new(
            resource_spans
                .resource
                .map(|r| attributes(r.attributes))
                .unwrap_or_default(),
        );
        let service = resource
            .iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v.as_text())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown_service".to_owned());
        for scope_spans in resource_spans.scope_spans {
            let (scope_name, scope_version) = scope_spans
                .scope
                .map(|s| (s.name, s.version))
                .unwrap_or_default();
            for span in scope_spans.spans {
                let (Some(trace_id), Some(span_id)) =
                    (id::<16>(&span.trace_id), id::<8>(&span.span_id))
                else {
                    out.reject(|| {
                        format!(
                            "span {:?}: trace_id must be 16 non-zero bytes and span_id 8 (got {} and {})",
                            span.name,
                            span.trace_id.len(),
                            span.span_id.len()
                        )
                    });
                    continue;
                };
                let parent_span_id = if span.parent_span_id.is_empty() {
                    None
                } else {
                    match id::<8>(&span.parent_span_id) {
                        Some(parent) => Some(parent),
                        None => {
                            out.reject(|| {
                                format!("span {:?}: parent_span_id must be 8 bytes", span.name)
                            });
                            continue;
                        }
                    }
                };
                if span.end_time_unix_nano < span.start_time_unix_nano {
                    out.reject(|| format!("span {:?}: end time is before start time", span.name));
                    continue;
                }
                let ns = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
                let (status_code, status_message) = match span.status {
                    Some(status) => (
                        u8::try_from(status.code)
                            .ok()
                            .filter(|c| *c <= 2)
                            .unwrap_or(0),
                        status.message,
                    ),
                    None => (0, String::new()),
                };
                out.spans.push(Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    trace_state: span.trace_state,
                    flags: span.flags,
                    name: span.name,
                    kind: u8::try_from(span.kind)
                        .ok()
                        .filter(|k| *k <= 5)
                        .unwrap_or(0),
                    start_ns: ns(span.start_time_unix_nano),
                    end_ns: ns(span.end_time_unix_nano),
                    status_code,
                    status_message,
                    service: service.clone(),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    attributes: attributes(span.attributes),
                    events: span
                        .events
                        .into_iter()
                        .map(|e| SpanEvent {
                            time_ns: ns(e.time_unix_nano),
                            name: e.name,
                            attributes: attributes(e.attributes),
                        })
                        .collect(),
                    links: span
                        .links
                        .into_iter()
                        .filter_map(|l| {
                            Some(SpanLink {
                                trace_id: id::<16>(&l.trace_id)?,
                                span_id: id::<8>(&l.span_id)?,
                                trace_state: l.trace_state,
                                attributes: attributes(l.attributes),
                            })
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_example() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/conformance/otlp-json/trace.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}); it comes with ../shared",
                path.display()
            )
        });
        let request: ExportTraceServiceRequest = serde_json::from_str(&text).unwrap();
        let out = translate(request);
        assert_eq!(out.rejected, 0, "{:?}", out.messages);
        let span = &out.spans[0];
        assert_eq!(
            crate::model::span::hex(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(span.kind, 2);
        assert!(span.end_ns >= span.start_ns);
        assert_ne!(span.service, "");
    }
}
