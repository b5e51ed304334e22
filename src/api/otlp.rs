//! OTLP faces: `POST /v1/metrics` and `POST /v1/logs` (protobuf or JSON,
//! gzip) and the gRPC `MetricsService/Export` and `LogsService/Export`.
//! Rejected points and records are reported in `partial_success`, as the
//! OTLP specification asks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::AppState;
use crate::error::Error;
use crate::ingest::logs::{LogsIngest, LogsSummary};
use crate::ingest::otlp::{self, Encoding};
use crate::ingest::pipeline::{MetricsIngest, Source, WriteSummary};
use crate::ingest::traces::{TracesIngest, TracesSummary};
use crate::now_ms;

pub fn http_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/metrics", post(export_metrics))
        .route("/v1/logs", post(export_logs))
        .route("/v1/traces", post(export_traces))
}

#[allow(clippy::result_large_err)] // a ready response, as the handlers return it
/// The request body, or the failure (over `limits.max_body_size`, broken
/// connection) as a `google.rpc.Status` in the request's encoding.
fn body_or_status(
    body: Result<Bytes, BytesRejection>,
    encoding: Encoding,
) -> Result<Bytes, Response> {
    body.map_err(|rejection| {
        let err = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge("request body is larger than limits.max_body_size".into())
        } else {
            Error::BadRequest(format!("reading the request body: {rejection}"))
        };
        error_response(Some(encoding), &err)
    })
}

fn response_for(summary: &WriteSummary) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (summary.samples_rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(summary.samples_rejected).unwrap_or(i64::MAX),
            error_message: summary.error_message(),
        }),
    }
}

/// A failure body: `google.rpc.Status` in the request's encoding.
fn error_response(encoding: Option<Encoding>, err: &Error) -> Response {
    let status = err.http_status();
    let message = err.to_string();
    match encoding {
        Some(Encoding::Protobuf) => {
            let mut body = Vec::new();
            prost::encoding::int32::encode(1, &(err.grpc_code() as i32), &mut body);
            prost::encoding::string::encode(2, &message, &mut body);
            (
                status,
                [(header::CONTENT_TYPE, Encoding::Protobuf.content_type())],
                body,
            )
                .into_response()
        }
        _ => (
            status,
            [(header::CONTENT_TYPE, Encoding::Json.content_type())],
            serde_json::json!({"code": err.grpc_code() as i32, "message": message}).to_string(),
        )
            .into_response(),
    }
}

async fn export_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(why) = state.forwarders.refusing(crate::forward::Signal::Metrics) {
        return super::retry_later(&why);
    }
    let ingest = state.ingest.clone();
    export_http(
        &headers,
        body,
        ingest.max_body,
        move |request: ExportMetricsServiceRequest| {
            ingest
                .otlp(Source::OtlpHttp, &request, now_ms())
                .map(|summary| response_for(&summary))
        },
    )
    .await
}

/// One OTLP/HTTP export: the encoding from `Content-Type`, the body limit,
/// then decompression, decoding and `ingest` on a blocking thread; the
/// answer (or a `google.rpc.Status`) in the request's encoding.
async fn export_http<Req, Resp>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max_body: usize,
    ingest: impl FnOnce(Req) -> Result<Resp, Error> + Send + 'static,
) -> Response
where
    Req: prost::Message + Default + serde::de::DeserializeOwned + Send + 'static,
    Resp: prost::Message + serde::Serialize + Send + 'static,
{
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let encoding = match Encoding::from_content_type(text(header::CONTENT_TYPE)) {
        Ok(encoding) => encoding,
        Err(err) => return error_response(None, &err),
    };
    let body = match body_or_status(body, encoding) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let content_encoding = text(header::CONTENT_ENCODING).map(str::to_owned);
    let result = tokio::task::spawn_blocking(move || {
        let raw = otlp::decompress(content_encoding.as_deref(), &body, max_body)?;
        let request: Req = otlp::decode(encoding, &raw)?;
        ingest(request)
    })
    .await
    .unwrap_or_else(|err| Err(Error::Internal(format!("worker failed: {err}"))));
    match result {
        Ok(response) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoding.content_type())],
            otlp::encode(encoding, &response),
        )
            .into_response(),
        Err(err) => error_response(Some(encoding), &err),
    }
}

fn logs_response(summary: &LogsSummary) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: (summary.rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(summary.rejected).unwrap_or(i64::MAX),
            error_message: summary.error_message(),
        }),
    }
}

async fn export_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(why) = state.forwarders.refusing(crate::forward::Signal::Logs) {
        return super::retry_later(&why);
    }
    let ingest = state.logs.clone();
    export_http(
        &headers,
        body,
        ingest.max_body,
        move |request: ExportLogsServiceRequest| {
            ingest
                .otlp(Source::OtlpHttp.as_str(), &request, now_ms())
                .map(|summary| logs_response(&summary))
        },
    )
    .await
}

/// The gRPC logs service.
pub struct LogsGrpc {
    ingest: Arc<LogsIngest>,
    forwarders: Arc<crate::forward::Forwarders>,
}

impl LogsGrpc {
    pub fn server(
        ingest: Arc<LogsIngest>,
        forwarders: Arc<crate::forward::Forwarders>,
        max_message: usize,
    ) -> LogsServiceServer<LogsGrpc> {
        LogsServiceServer::new(LogsGrpc { ingest, forwarders })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message)
    }
}

#[tonic::async_trait]
impl LogsService for LogsGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        if let Some(why) = self.forwarders.refusing(crate::forward::Signal::Logs) {
            return Err(tonic::Status::unavailable(why));
        }
        let ingest = self.ingest.clone();
        let request = request.into_inner();
        let summary = tokio::task::spawn_blocking(move || {
            ingest.otlp(Source::OtlpGrpc.as_str(), &request, now_ms())
        })
        .await
        .map_err(|err| tonic::Status::internal(format!("worker failed: {err}")))?
        .map_err(|err| err.to_status())?;
        Ok(tonic::Response::new(logs_response(&summary)))
    }
}

fn traces_response(summary: &TracesSummary) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (summary.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(summary.rejected).unwrap_or(i64::MAX),
            error_message: summary.error_message(),
        }),
    }
}

async fn export_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(why) = state.forwarders.refusing(crate::forward::Signal::Traces) {
        return super::retry_later(&why);
    }
    let ingest = state.traces.clone();
    export_http(
        &headers,
        body,
        ingest.max_body,
        move |request: ExportTraceServiceRequest| {
            ingest
                .otlp(Source::OtlpHttp.as_str(), request, now_ms())
                .map(|summary| traces_response(&summary))
        },
    )
    .await
}

/// The gRPC trace service.
pub struct TracesGrpc {
    ingest: Arc<TracesIngest>,
    forwarders: Arc<crate::forward::Forwarders>,
}

impl TracesGrpc {
    pub fn server(
        ingest: Arc<TracesIngest>,
        forwarders: Arc<crate::forward::Forwarders>,
        max_message: usize,
    ) -> TraceServiceServer<TracesGrpc> {
        TraceServiceServer::new(TracesGrpc { ingest, forwarders })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message)
    }
}

#[tonic::async_trait]
impl TraceService for TracesGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if let Some(why) = self.forwarders.refusing(crate::forward::Signal::Traces) {
            return Err(tonic::Status::unavailable(why));
        }
        let ingest = self.ingest.clone();
        let request = request.into_inner();
        let summary = tokio::task::spawn_blocking(move || {
            ingest.otlp(Source::OtlpGrpc.as_str(), request, now_ms())
        })
        .await
        .map_err(|err| tonic::Status::internal(format!("worker failed: {err}")))?
        .map_err(|err| err.to_status())?;
        Ok(tonic::Response::new(traces_response(&summary)))
    }
}

/// The gRPC metrics service.
pub struct MetricsGrpc {
    ingest: Arc<MetricsIngest>,
    forwarders: Arc<crate::forward::Forwarders>,
}

impl MetricsGrpc {
    pub fn server(
        ingest: Arc<MetricsIngest>,
        forwarders: Arc<crate::forward::Forwarders>,
        max_message: usize,
    ) -> MetricsServiceServer<MetricsGrpc> {
        MetricsServiceServer::new(MetricsGrpc { ingest, forwarders })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message)
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if let Some(why) = self.forwarders.refusing(crate::forward::Signal::Metrics) {
            return Err(tonic::Status::unavailable(why));
        }
        let ingest = self.ingest.clone();
        let request = request.into_inner();
        let summary =
            tokio::task::spawn_blocking(move || ingest.otlp(Source::OtlpGrpc, &request, now_ms()))
                .await
                .map_err(|err| tonic::Status::internal(format!("worker failed: {err}")))?
                .map_err(|err| err.to_status())?;
        Ok(tonic::Response::new(response_for(&summary)))
    }
}
