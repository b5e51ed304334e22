//! Spans and log records to an OTLP receiver (Jaeger ≥ 1.35, Tempo, an
//! OpenTelemetry Collector), over HTTP (`POST {url}/v1/traces` and
//! `{url}/v1/logs`, `application/x-protobuf`) or gRPC (`protocol = "grpc"`,
//! the collector services' `Export`), at most `max_items_per_send` items a
//! request. gRPC answers are retried as the OTLP specification says:
//! `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, `ABORTED`,
//! `CANCELLED`, `OUT_OF_RANGE` and `DATA_LOSS` (and timeouts) with backoff,
//! anything else is refused for good and counted. Spans are rebuilt from the trace store's WAL with every field
//! OTLP has (resource, scope, attributes, events, links, status, trace
//! state, flags); spans that share a resource travel under one
//! `ResourceSpans`. Log records are rebuilt from their stored documents (the
//! shape `ingest::otlp::logs` writes: body, severity, ids, attributes,
//! resource attributes, scope); records that came from `_bulk` go with
//! their whole source as a map body. `services` (regexes on `service.name`)
//! choose what goes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, ResourceSpans, ScopeSpans, Span as OtlpSpan, Status,
};
use prost::Message;
use regex::Regex;
use serde_json::Value;
use tokio::sync::watch;

use super::http::{HttpSender, Sent};
use super::{Delivery, DestinationStats, Sink};
use crate::config::OtlpDestination;
use crate::model::span::{AttrValue, Attributes, Span};
use crate::storage::logs::ForwardDoc;

/// JSON nesting turned back into OTLP values at most; deeper is sent as text.
const MAX_DEPTH: usize = 32;

pub struct OtlpSink {
    traces: bool,
    services: Vec<Regex>,
    per_send: usize,
    transport: Transport,
    stats: Arc<DestinationStats>,
}

enum Transport {
    Http(Box<HttpSender>),
    Grpc(GrpcSender),
}

/// OTLP/gRPC with the HTTP sender's retry rules.
struct GrpcSender {
    channel: tonic::transport::Channel,
    metadata: Vec<(
        tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
        tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    )>,
    send: crate::config::SendConfig,
    stats: Arc<DestinationStats>,
    shutdown: watch::Receiver<bool>,
}

/// Export requests of either signal.
enum Export {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl GrpcSender {
    fn retryable(code: tonic::Code) -> bool {
        matches!(
            code,
            tonic::Code::Unavailable
                | tonic::Code::ResourceExhausted
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
                | tonic::Code::Cancelled
                | tonic::Code::OutOfRange
                | tonic::Code::DataLoss
        )
    }

    async fn export(&self, export: &Export, bytes: usize) -> Sent {
        use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
        let mut backoff = self.send.min_backoff;
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return Sent::Stopped;
            }
            let call = async {
                match export {
                    Export::Traces(request) => {
                        let mut request = tonic::Request::new(request.clone());
                        self.add_metadata(request.metadata_mut());
                        TraceServiceClient::new(self.channel.clone())
                            .export(request)
                            .await
                            .map(|r| r.into_inner().encode_to_vec())
                    }
                    Export::Logs(request) => {
                        let mut request = tonic::Request::new(request.clone());
                        self.add_metadata(request.metadata_mut());
                        LogsServiceClient::new(self.channel.clone())
                            .export(request)
                            .await
                            .map(|r| r.into_inner().encode_to_vec())
                    }
                }
            };
            match tokio::time::timeout(self.send.timeout, call).await {
                Ok(Ok(answer)) => {
                    self.stats.request(bytes, "success");
                    return Sent::Ok(Bytes::from(answer));
                }
                Ok(Err(status)) if !Self::retryable(status.code()) => {
                    self.stats.request(bytes, "rejected");
                    self.stats.error(format!("gRPC export refused: {status}"));
                    return Sent::Rejected(
                        hyper::http::StatusCode::BAD_REQUEST,
                        status.message().to_owned(),
                    );
                }
                Ok(Err(status)) => self
                    .stats
                    .error(format!("gRPC export failed: {status}; retrying")),
                Err(_) => self.stats.error(format!(
                    "gRPC export: no answer within {:?}; retrying",
                    self.send.timeout
                )),
            }
            self.stats.request(bytes, "retried");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return Sent::Stopped,
            }
            backoff = (backoff * 2).min(self.send.max_backoff);
        }
    }

    fn add_metadata(&self, map: &mut tonic::metadata::MetadataMap) {
        for (k, v) in &self.metadata {
            map.insert(k.clone(), v.clone());
        }
    }
}

impl OtlpSink {
    pub fn new(
        config: &OtlpDestination,
        traces: bool,
        stats: Arc<DestinationStats>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<OtlpSink, String> {
        let services = config
            .services
            .iter()
            .map(|s| Regex::new(&format!("^(?:{s})$")).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let transport = if config.protocol == "grpc" {
            let channel = tonic::transport::Endpoint::from_shared(config.url.clone())
                .map_err(|e| format!("invalid URL {:?}: {e}", config.url))?
                .connect_timeout(config.timeout)
                .connect_lazy();
            let metadata = config
                .headers
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.to_ascii_lowercase()
                            .parse()
                            .map_err(|_| format!("header {k} is not valid gRPC metadata"))?,
                        v.parse().map_err(|_| {
                            format!("the value of header {k} is not valid gRPC metadata")
                        })?,
                    ))
                })
                .collect::<Result<_, String>>()?;
            Transport::Grpc(GrpcSender {
                channel,
                metadata,
                send: config.send(),
                stats: stats.clone(),
                shutdown,
            })
        } else {
            let path = if traces { "/v1/traces" } else { "/v1/logs" };
            let url = HttpSender::with_path(&config.url, path);
            Transport::Http(Box::new(HttpSender::new(
                &url,
                config.send(),
                stats.clone(),
                shutdown,
                1 << 20,
            )?))
        };
        Ok(OtlpSink {
            traces,
            services,
            per_send: config.max_items_per_send.max(1),
            transport,
            stats,
        })
    }

    fn wanted(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|r| r.is_match(service))
    }

    async fn post(
        &self,
        export: Export,
        items: u64,
        newest_ms: i64,
        what: &'static str,
    ) -> Delivery {
        const HEADERS: &[(&str, &str)] = &[("content-type", "application/x-protobuf")];
        let body = match &export {
            Export::Traces(r) => r.encode_to_vec(),
            Export::Logs(r) => r.encode_to_vec(),
        };
        let sent = match &self.transport {
            Transport::Http(sender) => sender.post(Bytes::from(body), HEADERS).await,
            Transport::Grpc(sender) => sender.export(&export, body.len()).await,
        };
        match sent {
            Sent::Ok(answer) => {
                // What the receiver took only partly (`partial_success`).
                let (rejected, message) = match export {
                    Export::Traces(_) => ExportTraceServiceResponse::decode(answer)
                        .ok()
                        .and_then(|r| r.partial_success)
                        .map(|p| (p.rejected_spans, p.error_message)),
                    Export::Logs(_) => ExportLogsServiceResponse::decode(answer)
                        .ok()
                        .and_then(|r| r.partial_success)
                        .map(|p| (p.rejected_log_records, p.error_message)),
                }
                .unwrap_or_default();
                let rejected = u64::try_from(rejected).unwrap_or(0).min(items);
                if rejected > 0 {
                    self.stats.dropped("rejected", rejected);
                    self.stats.error(format!(
                        "the receiver refused {rejected} of {items} {what}: {message}"
                    ));
                }
                self.stats.sent(what, items - rejected);
                self.stats.sent_item(newest_ms);
            }
            Sent::Rejected(_, _) => self.stats.dropped("rejected", items),
            Sent::Stopped => return Delivery::Stopped,
        }
        Delivery::Done
    }

    async fn deliver_spans(&mut self, records: Vec<Vec<u8>>) -> Delivery {
        let mut spans: Vec<Span> = Vec::new();
        let mut filtered = 0;
        for payload in &records {
            match crate::storage::traces::decode_wal_spans(payload) {
                Some(batch) => {
                    for span in batch {
                        if self.wanted(&span.service) {
                            spans.push(span);
                        } else {
                            filtered += 1;
                        }
                    }
                }
                None => self
                    .stats
                    .error("an undecodable trace WAL record was skipped".into()),
            }
        }
        self.stats.dropped("filtered", filtered);
        for chunk in spans.chunks(self.per_send) {
            let newest = chunk
                .iter()
                .map(|s| s.start_ns / 1_000_000)
                .max()
                .unwrap_or(0);
            let export = Export::Traces(spans_request(chunk));
            if let Delivery::Stopped = self.post(export, chunk.len() as u64, newest, "spans").await
            {
                return Delivery::Stopped;
            }
        }
        Delivery::Done
    }

    async fn deliver_logs(&mut self, records: Vec<Vec<u8>>) -> Delivery {
        let mut docs: Vec<ForwardDoc> = Vec::new();
        let mut filtered = 0;
        for payload in &records {
            for doc in crate::storage::logs::decode_wal_docs(payload).unwrap_or_default() {
                let service = serde_json::from_slice::<Value>(&doc.source)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/resource/attributes/service.name")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                if self.wanted(&service) {
                    docs.push(doc);
                } else {
                    filtered += 1;
                }
            }
        }
        self.stats.dropped("filtered", filtered);
        for chunk in docs.chunks(self.per_send) {
            let newest = chunk
                .iter()
                .map(|d| d.timestamp_ns / 1_000_000)
                .max()
                .unwrap_or(0);
            let export = Export::Logs(logs_request(chunk));
            if let Delivery::Stopped = self
                .post(export, chunk.len() as u64, newest, "log_records")
                .await
            {
                return Delivery::Stopped;
            }
        }
        Delivery::Done
    }
}

impl Sink for OtlpSink {
    async fn deliver(&mut self, records: Vec<Vec<u8>>) -> Delivery {
        if self.traces {
            self.deliver_spans(records).await
        } else {
            self.deliver_logs(records).await
        }
    }
}

fn key_value(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

fn any(value: any_value::Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

fn attr_value(value: &AttrValue) -> AnyValue {
    match value {
        AttrValue::Str(s) => any(any_value::Value::StringValue(s.clone())),
        AttrValue::Bool(b) => any(any_value::Value::BoolValue(*b)),
        AttrValue::Int(i) => any(any_value::Value::IntValue(*i)),
        AttrValue::Double(d) => any(any_value::Value::DoubleValue(*d)),
        AttrValue::Bytes(b) => any(any_value::Value::BytesValue(b.clone())),
        AttrValue::Json(text) => match serde_json::from_str::<Value>(text) {
            Ok(json) => json_value(&json, 0),
            Err(_) => any(any_value::Value::StringValue(text.clone())),
        },
    }
}

fn attributes(list: &Attributes) -> Vec<KeyValue> {
    list.iter()
        .map(|(k, v)| key_value(k, attr_value(v)))
        .collect()
}

/// A JSON value as an OTLP value: objects become key-value lists, arrays
/// arrays; integers stay integers.
fn json_value(value: &Value, depth: usize) -> AnyValue {
    if depth >= MAX_DEPTH {
        return any(any_value::Value::StringValue(value.to_string()));
    }
    match value {
        Value::Null => AnyValue { value: None },
        Value::Bool(b) => any(any_value::Value::BoolValue(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => any(any_value::Value::IntValue(i)),
            None => any(any_value::Value::DoubleValue(
                n.as_f64().unwrap_or(f64::NAN),
            )),
        },
        Value::String(s) => any(any_value::Value::StringValue(s.clone())),
        Value::Array(items) => any(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(|v| json_value(v, depth + 1)).collect(),
        })),
        Value::Object(map) => any(any_value::Value::KvlistValue(KeyValueList {
            values: map
                .iter()
                .map(|(k, v)| key_value(k, json_value(v, depth + 1)))
                .collect(),
        })),
    }
}

fn json_attributes(value: Option<&Value>) -> Vec<KeyValue> {
    match value {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| key_value(k, json_value(v, 1)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Spans grouped by resource (shared `Arc`) and scope, in arrival order.
pub fn spans_request(spans: &[Span]) -> ExportTraceServiceRequest {
    let mut resources: Vec<ResourceSpans> = Vec::new();
    let mut by_resource: HashMap<*const Attributes, usize> = HashMap::new();
    for s in spans {
        let at = *by_resource
            .entry(Arc::as_ptr(&s.resource))
            .or_insert_with(|| {
                resources.push(ResourceSpans {
                    resource: Some(Resource {
                        attributes: attributes(&s.resource),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                resources.len() - 1
            });
        let scopes = &mut resources[at].scope_spans;
        let scope = match scopes.iter().position(|sc| {
            sc.scope
                .as_ref()
                .is_some_and(|i| i.name == s.scope_name && i.version == s.scope_version)
        }) {
            Some(i) => i,
            None => {
                scopes.push(ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: s.scope_name.clone(),
                        version: s.scope_version.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                scopes.len() - 1
            }
        };
        scopes[scope].spans.push(OtlpSpan {
            trace_id: s.trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            trace_state: s.trace_state.clone(),
            parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: s.flags,
            name: s.name.clone(),
            kind: i32::from(s.kind),
            start_time_unix_nano: u64::try_from(s.start_ns).unwrap_or(0),
            end_time_unix_nano: u64::try_from(s.end_ns).unwrap_or(0),
            attributes: attributes(&s.attributes),
            events: s
                .events
                .iter()
                .map(|e| span::Event {
                    time_unix_nano: u64::try_from(e.time_ns).unwrap_or(0),
                    name: e.name.clone(),
                    attributes: attributes(&e.attributes),
                    ..Default::default()
                })
                .collect(),
            links: s
                .links
                .iter()
                .map(|l| span::Link {
                    trace_id: l.trace_id.to_vec(),
                    span_id: l.span_id.to_vec(),
                    trace_state: l.trace_state.clone(),
                    attributes: attributes(&l.attributes),
                    ..Default::default()
                })
                .collect(),
            status: (s.status_code != 0 || !s.status_message.is_empty()).then(|| Status {
                code: i32::from(s.status_code),
                message: s.status_message.clone(),
            }),
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: resources,
    }
}

/// `len` bytes from hex text; empty for anything else (the text comes from
/// stored documents, i.e. from clients: it may be any string).
fn unhex(text: &str, len: usize) -> Vec<u8> {
    let bytes = text.as_bytes();
    if bytes.len() != len * 2 {
        return Vec::new();
    }
    let digit = |b: u8| (b as char).to_digit(16);
    bytes
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_default()
}

/// Log documents as OTLP log records, grouped by resource attributes.
pub fn logs_request(docs: &[ForwardDoc]) -> ExportLogsServiceRequest {
    let mut resources: Vec<ResourceLogs> = Vec::new();
    let mut by_resource: HashMap<String, usize> = HashMap::new();
    for doc in docs {
        let source: Value = serde_json::from_slice(&doc.source).unwrap_or(Value::Null);
        let resource = source.pointer("/resource/attributes");
        let key = resource.map(Value::to_string).unwrap_or_default();
        let at = *by_resource.entry(key).or_insert_with(|| {
            resources.push(ResourceLogs {
                resource: Some(Resource {
                    attributes: json_attributes(resource),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs::default()],
                ..Default::default()
            });
            resources.len() - 1
        });
        let text = |name: &str| source.get(name).and_then(Value::as_str).unwrap_or("");
        // A document from OTLP has its body; one from `_bulk` goes whole.
        let otel_shaped = source.get("body").is_some() || source.get("severity_text").is_some();
        let body = if otel_shaped {
            source.get("body").map(|b| json_value(b, 1))
        } else {
            let mut whole = source.clone();
            if let Value::Object(map) = &mut whole {
                map.remove("resource");
            }
            Some(json_value(&whole, 1))
        };
        let ts = u64::try_from(doc.timestamp_ns).unwrap_or(0);
        resources[at].scope_logs[0].log_records.push(LogRecord {
            time_unix_nano: ts,
            observed_time_unix_nano: ts,
            severity_number: source
                .get("severity_number")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0),
            severity_text: text("severity_text").to_owned(),
            body,
            attributes: if otel_shaped {
                json_attributes(source.get("attributes"))
            } else {
                Vec::new()
            },
            trace_id: unhex(text("trace_id"), 16),
            span_id: unhex(text("span_id"), 8),
            event_name: text("event_name").to_owned(),
            ..Default::default()
        });
    }
    ExportLogsServiceRequest {
        resource_logs: resources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_turns_back_into_otlp_values_and_depth_is_bounded() {
        let v: Value = serde_json::from_str(r#"{"a":[1,2.5,"x"],"b":{"c":true}}"#).unwrap();
        let AnyValue {
            value: Some(any_value::Value::KvlistValue(list)),
        } = json_value(&v, 0)
        else {
            panic!("a map");
        };
        assert_eq!(list.values.len(), 2);
        let mut deep = Value::from(1);
        for _ in 0..100 {
            deep = Value::Array(vec![deep]);
        }
        // Bounded: at MAX_DEPTH the rest is text.
        let mut value = json_value(&deep, 0);
        let mut depth = 0;
        while let Some(any_value::Value::ArrayValue(a)) = value.value {
            value = a.values.into_iter().next().unwrap();
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert!(matches!(
            value.value,
            Some(any_value::Value::StringValue(_))
        ));
    }

    #[test]
    fn ids_from_documents_are_hex_or_nothing() {
        assert_eq!(unhex("0102030405060708", 8), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(unhex("0A0b", 2), vec![10, 11]);
        // 16 bytes of UTF-8 that are not 16 characters: no panic, no id.
        assert_eq!(unhex("éééééééé", 8), Vec::<u8>::new());
        assert_eq!(unhex("zz", 1), Vec::<u8>::new());
        assert_eq!(unhex("+1", 1), Vec::<u8>::new());
        assert_eq!(unhex("012", 1), Vec::<u8>::new());
    }

    #[test]
    fn log_documents_keep_their_otel_fields() {
        let doc = ForwardDoc {
            index: "logs-otel".into(),
            id: "1".into(),
            timestamp_ns: 1_700_000_000_000_000_000,
            source: br#"{"@timestamp":"2023-11-14T22:13:20Z","severity_text":"ERROR","severity_number":17,"body":"boom","trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708","attributes":{"k":"v"},"resource":{"attributes":{"service.name":"api"}}}"#.to_vec(),
        };
        let request = logs_request(&[doc]);
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.severity_text, "ERROR");
        assert_eq!(record.severity_number, 17);
        assert_eq!(record.trace_id.len(), 16);
        assert_eq!(record.span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(record.attributes[0].key, "k");
        let resource = request.resource_logs[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
    }
}
