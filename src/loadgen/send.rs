//! Sending one batch over one protocol, and what came back: how many items
//! the server acknowledged, and the kind of failure otherwise.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::workload::{Batch, Workload};
use super::Protocol;

/// Answers larger than this are not read (a `_bulk` answer of 10,000 items
/// is about 1.5 MB).
const MAX_ANSWER: usize = 64 << 20;

/// What one request achieved.
#[derive(Debug)]
pub enum Outcome {
    /// Items acknowledged, and items the server said it rejected.
    Answered { acked: u64, rejected: u64 },
    /// Nothing acknowledged: the kind (`http 429`, `grpc Unavailable`,
    /// `transport`, `timeout`).
    Failed(String),
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub struct Sender {
    http: HttpClient,
    /// Base URLs.
    pub url: String,
    pub otlp_http: String,
    pub elasticsearch: String,
    grpc: Option<tonic::transport::Channel>,
    token: Option<String>,
    timeout: Duration,
    pub index: String,
}

impl Sender {
    pub fn new(
        url: String,
        otlp_http: String,
        elasticsearch: String,
        grpc: Option<tonic::transport::Channel>,
        token: Option<String>,
        timeout: Duration,
        index: String,
    ) -> Sender {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(64)
                .build(connector);
        Sender {
            http,
            url,
            otlp_http,
            elasticsearch,
            grpc,
            token,
            timeout,
            index,
        }
    }

    /// Build and send one batch.
    pub async fn send(&self, protocol: Protocol, workload: &Workload, batch: Batch) -> Outcome {
        let work = async {
            match protocol {
                Protocol::RemoteWrite => {
                    let body = workload.remote_write(batch);
                    let (status, _) = self
                        .post(
                            &format!("{}/api/v1/write", self.url),
                            "application/x-protobuf",
                            &[
                                ("content-encoding", "snappy"),
                                ("x-prometheus-remote-write-version", "0.1.0"),
                            ],
                            body,
                        )
                        .await?;
                    Ok(all_or_nothing(status, batch.count))
                }
                Protocol::OtlpHttpMetrics => {
                    let body = workload.otlp_metrics("otlp_http", batch).encode_to_vec();
                    self.otlp_http(
                        "/v1/metrics",
                        body,
                        batch.count,
                        |r: ExportMetricsServiceResponse| {
                            r.partial_success.map_or(0, |p| p.rejected_data_points)
                        },
                    )
                    .await
                }
                Protocol::OtlpHttpTraces => {
                    let body = workload.spans("otlp_http", batch).encode_to_vec();
                    self.otlp_http(
                        "/v1/traces",
                        body,
                        batch.count,
                        |r: ExportTraceServiceResponse| {
                            r.partial_success.map_or(0, |p| p.rejected_spans)
                        },
                    )
                    .await
                }
                Protocol::OtlpHttpLogs => {
                    let body = workload.logs("otlp_http", batch).encode_to_vec();
                    self.otlp_http(
                        "/v1/logs",
                        body,
                        batch.count,
                        |r: ExportLogsServiceResponse| {
                            r.partial_success.map_or(0, |p| p.rejected_log_records)
                        },
                    )
                    .await
                }
                Protocol::OtlpGrpcMetrics => {
                    let mut client = MetricsServiceClient::new(self.channel()?);
                    let request = self.grpc_request(workload.otlp_metrics("otlp_grpc", batch));
                    Ok(match client.export(request).await {
                        Ok(r) => partial(
                            batch.count,
                            r.into_inner()
                                .partial_success
                                .map_or(0, |p| p.rejected_data_points.max(0) as u64),
                        ),
                        Err(status) => grpc_failed(&status),
                    })
                }
                Protocol::OtlpGrpcTraces => {
                    let mut client = TraceServiceClient::new(self.channel()?);
                    let request = self.grpc_request(workload.spans("otlp_grpc", batch));
                    Ok(match client.export(request).await {
                        Ok(r) => partial(
                            batch.count,
                            r.into_inner()
                                .partial_success
                                .map_or(0, |p| p.rejected_spans.max(0) as u64),
                        ),
                        Err(status) => grpc_failed(&status),
                    })
                }
                Protocol::OtlpGrpcLogs => {
                    let mut client = LogsServiceClient::new(self.channel()?);
                    let request = self.grpc_request(workload.logs("otlp_grpc", batch));
                    Ok(match client.export(request).await {
                        Ok(r) => partial(
                            batch.count,
                            r.into_inner()
                                .partial_success
                                .map_or(0, |p| p.rejected_log_records.max(0) as u64),
                        ),
                        Err(status) => grpc_failed(&status),
                    })
                }
                Protocol::EsBulk => {
                    let body = workload.bulk(&self.index, batch);
                    let (status, answer) = self
                        .post(
                            &format!("{}/_bulk", self.elasticsearch),
                            "application/x-ndjson",
                            &[],
                            body,
                        )
                        .await?;
                    if !status.is_success() {
                        return Ok(Outcome::Failed(format!("http {}", status.as_u16())));
                    }
                    Ok(bulk_outcome(&answer, batch.count))
                }
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(kind)) => Outcome::Failed(kind),
            Err(_) => Outcome::Failed("timeout".into()),
        }
    }

    fn channel(&self) -> Result<tonic::transport::Channel, String> {
        self.grpc
            .clone()
            .ok_or_else(|| "no OTLP/gRPC endpoint".to_string())
    }

    fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            if let Ok(value) = format!("Bearer {token}").parse() {
                request.metadata_mut().insert("authorization", value);
            }
        }
        request
    }

    /// An OTLP/HTTP protobuf export of `items`; `rejected` reads the
    /// partial success of a 2xx answer.
    async fn otlp_http<M: Message + Default>(
        &self,
        path: &str,
        body: Vec<u8>,
        items: u64,
        rejected: impl FnOnce(M) -> i64,
    ) -> Result<Outcome, String> {
        let (status, answer) = self
            .post(
                &format!("{}{path}", self.otlp_http),
                "application/x-protobuf",
                &[],
                body,
            )
            .await?;
        if !status.is_success() {
            return Ok(Outcome::Failed(format!("http {}", status.as_u16())));
        }
        let count = M::decode(answer.as_ref()).map_or(0, rejected);
        Ok(partial(items, count.max(0) as u64))
    }

    /// A GET's body as text when 2xx (at most 64 MiB).
    pub async fn get_text(&self, url: &str) -> Option<String> {
        let mut request = hyper::Request::get(url);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::new())).ok()?;
        let response = tokio::time::timeout(self.timeout, self.http.request(request))
            .await
            .ok()?
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .ok()?
            .to_bytes();
        String::from_utf8(body.to_vec()).ok()
    }

    async fn post(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let mut request = hyper::Request::post(url)
            .header("content-type", content_type)
            .header(
                "user-agent",
                concat!("oxeye-loadgen/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|_| "transport".to_string())?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| "transport".to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

fn all_or_nothing(status: hyper::StatusCode, items: u64) -> Outcome {
    if status.is_success() {
        Outcome::Answered {
            acked: items,
            rejected: 0,
        }
    } else {
        Outcome::Failed(format!("http {}", status.as_u16()))
    }
}

fn partial(items: u64, rejected: u64) -> Outcome {
    let rejected = rejected.min(items);
    Outcome::Answered {
        acked: items - rejected,
        rejected,
    }
}

fn grpc_failed(status: &tonic::Status) -> Outcome {
    Outcome::Failed(format!("grpc {:?}", status.code()))
}

/// A `_bulk` answer: items with a 2xx status are acknowledged.
fn bulk_outcome(answer: &[u8], items: u64) -> Outcome {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(answer) else {
        return Outcome::Failed("bad _bulk answer".into());
    };
    let Some(list) = value["items"].as_array() else {
        return Outcome::Failed("bad _bulk answer".into());
    };
    let acked = list
        .iter()
        .filter(|item| {
            item.as_object()
                .and_then(|o| o.values().next())
                .and_then(|r| r["status"].as_u64())
                .is_some_and(|s| (200..300).contains(&s))
        })
        .count() as u64;
    Outcome::Answered {
        acked,
        rejected: items.saturating_sub(acked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_answers_count_per_item() {
        let answer = br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400,"error":{}}},{"create":{"status":201}}]}"#;
        match bulk_outcome(answer, 3) {
            Outcome::Answered { acked, rejected } => assert_eq!((acked, rejected), (2, 1)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(bulk_outcome(b"nope", 3), Outcome::Failed(_)));
    }
}
