//! OTLP log records → log documents.
//!
//! Each record becomes one JSON document in the shape Elasticsearch's own
//! OpenTelemetry mapping uses, so the same queries work on records from
//! OTLP and from `_bulk`:
//!
//! ```json
//! {"@timestamp": "…", "observed_timestamp": "…", "severity_text": "ERROR",
//!  "severity_number": 17, "body": "…" (or an object), "trace_id": "hex",
//!  "span_id": "hex", "event_name": "…", "attributes": {…},
//!  "resource": {"attributes": {"service.name": "…", …}},
//!  "scope": {"name": "…", "version": "…"}}
//! ```
//!
//! `@timestamp` is the record's time, or its observed time when the time is
//! unset (0), as the specification suggests. Records with malformed trace or
//! span ids are rejected with a reason.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use serde_json::{Map, Value};

use super::{any_to_json, attributes_to_json, hex};
use crate::model::log::{format_timestamp_ms, LogDoc, WriteOp};

/// Records translated, and the ones refused with their reasons.
#[derive(Debug, Default)]
pub struct Translated {
    pub docs: Vec<LogDoc>,
    pub rejected: u64,
    pub messages: Vec<String>,
}

pub fn translate(request: &ExportLogsServiceRequest, index: &str, now_ns: i64) -> Translated {
    let mut out = Translated::default();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map(|r| attributes_to_json(&r.attributes))
            .unwrap_or_default();
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref().map(|s| {
                let mut scope = Map::new();
                if !s.name.is_empty() {
                    scope.insert("name".into(), Value::String(s.name.clone()));
                }
                if !s.version.is_empty() {
                    scope.insert("version".into(), Value::String(s.version.clone()));
                }
                if !s.attributes.is_empty() {
                    scope.insert(
                        "attributes".into(),
                        Value::Object(attributes_to_json(&s.attributes)),
                    );
                }
                scope
            });
            for record in &scope_logs.log_records {
                let bad_id = |bytes: &[u8], len: usize| !bytes.is_empty() && bytes.len() != len;
                if bad_id(&record.trace_id, 16) || bad_id(&record.span_id, 8) {
                    out.rejected += 1;
                    if out.messages.len() < 5 {
                        out.messages.push(format!(
                            "log record with invalid trace_id ({} bytes) or span_id ({} bytes): want 16 and 8",
                            record.trace_id.len(),
                            record.span_id.len()
                        ));
                    }
                    continue;
                }
                let time = if record.time_unix_nano != 0 {
                    record.time_unix_nano
                } else if record.observed_time_unix_nano != 0 {
                    record.observed_time_unix_nano
                } else {
                    now_ns as u64
                };
                let time = i64::try_from(time).unwrap_or(i64::MAX);
                let mut doc = Map::new();
                doc.insert(
                    "@timestamp".into(),
                    Value::String(format_timestamp_ms(time)),
                );
                if record.observed_time_unix_nano != 0 {
                    doc.insert(
                        "observed_timestamp".into(),
                        Value::String(format_timestamp_ms(
                            i64::try_from(record.observed_time_unix_nano).unwrap_or(i64::MAX),
                        )),
                    );
                }
                if !record.severity_text.is_empty() {
                    doc.insert(
                        "severity_text".into(),
                        Value::String(record.severity_text.clone()),
                    );
                }
                if record.severity_number != 0 {
                    doc.insert(
                        "severity_number".into(),
                        Value::from(record.severity_number),
                    );
                }
                if let Some(body) = record.body.as_ref().and_then(|b| b.value.as_ref()) {
                    doc.insert("body".into(), any_to_json(body));
                }
                if !record.trace_id.is_empty() {
                    doc.insert("trace_id".into(), Value::String(hex(&record.trace_id)));
                }
                if !record.span_id.is_empty() {
                    doc.insert("span_id".into(), Value::String(hex(&record.span_id)));
                }
                if !record.event_name.is_empty() {
                    doc.insert(
                        "event_name".into(),
                        Value::String(record.event_name.clone()),
                    );
                }
                if !record.attributes.is_empty() {
                    doc.insert(
                        "attributes".into(),
                        Value::Object(attributes_to_json(&record.attributes)),
                    );
                }
                if !resource.is_empty() {
                    let mut r = Map::new();
                    r.insert("attributes".into(), Value::Object(resource.clone()));
                    doc.insert("resource".into(), Value::Object(r));
                }
                if let Some(scope) = scope.as_ref().filter(|s| !s.is_empty()) {
                    doc.insert("scope".into(), Value::Object(scope.clone()));
                }
                let mut log = LogDoc::new(index.to_owned(), None, WriteOp::Create, doc);
                // Nanosecond precision, not what the formatted string keeps.
                log.timestamp_ns = Some(time);
                out.docs.push(log);
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
            .join("../shared/conformance/otlp-json/logs.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}); it comes with ../shared",
                path.display()
            )
        });
        let request: ExportLogsServiceRequest = serde_json::from_str(&text).unwrap();
        let out = translate(&request, "otel-logs", 0);
        assert_eq!(out.rejected, 0);
        assert!(!out.docs.is_empty());
        let doc = &out.docs[0];
        assert_eq!(doc.index, "otel-logs");
        assert!(doc.source.contains_key("@timestamp"));
        assert!(doc.source.contains_key("body"));
        assert!(doc.source["resource"]["attributes"]
            .get("service.name")
            .is_some());
        assert_eq!(doc.source["trace_id"].as_str().map(str::len), Some(32));
    }
}
