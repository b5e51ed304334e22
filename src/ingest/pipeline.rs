//! The metrics write path shared by every receiver: decode, validate, store,
//! count. Runs on a blocking thread (it decompresses, hashes and fsyncs).

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use super::otlp::metrics::{translate, DeltaState};
use super::{remote_write, IngestError, LabelCheck};
use crate::selfmon::SelfMetrics;
use crate::storage::metrics::MetricsStore;

/// Where a write came from, for the self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    RemoteWrite,
    OtlpGrpc,
    OtlpHttp,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::RemoteWrite => "remote_write",
            Source::OtlpGrpc => "otlp_grpc",
            Source::OtlpHttp => "otlp_http",
        }
    }
}

/// What happened to a write.
#[derive(Debug, Default, Clone)]
pub struct WriteSummary {
    pub samples_accepted: u64,
    pub samples_rejected: u64,
    /// The first few reasons, each naming the series or sample.
    pub messages: Vec<String>,
}

impl WriteSummary {
    pub fn error_message(&self) -> String {
        let mut message = format!(
            "{} sample(s) rejected, {} accepted",
            self.samples_rejected, self.samples_accepted
        );
        for reason in &self.messages {
            message.push_str("; ");
            message.push_str(reason);
        }
        message
    }
}

pub struct MetricsIngest {
    pub store: Arc<MetricsStore>,
    pub check: LabelCheck,
    /// Largest decompressed body accepted.
    pub max_body: usize,
    deltas: DeltaState,
    metrics: Arc<SelfMetrics>,
    /// Per-request OTLP translation limits.
    budget: crate::ingest::otlp::budget::Budget,
    /// OTLP resource attributes copied onto every series of the resource.
    promote: Vec<String>,
}

impl MetricsIngest {
    /// OTLP resource attributes to promote to series labels.
    pub fn with_promoted_resource_attributes(mut self, promote: Vec<String>) -> Self {
        self.promote = promote;
        self
    }

    /// Apply per-request OTLP limits (the default has none).
    pub fn with_budget(mut self, budget: crate::ingest::otlp::budget::Budget) -> Self {
        self.budget = budget;
        self
    }

    pub fn new(
        store: Arc<MetricsStore>,
        check: LabelCheck,
        max_body: usize,
        metrics: Arc<SelfMetrics>,
    ) -> MetricsIngest {
        MetricsIngest {
            store,
            check,
            max_body,
            deltas: DeltaState::default(),
            metrics,
            budget: Default::default(),
            promote: Vec::new(),
        }
    }

    /// A snappy-compressed remote_write 1.0 body.
    pub fn remote_write(&self, compressed: &[u8]) -> Result<WriteSummary, IngestError> {
        let result = self.remote_write_inner(compressed);
        self.count_request(Source::RemoteWrite, &result);
        result
    }

    fn remote_write_inner(&self, compressed: &[u8]) -> Result<WriteSummary, IngestError> {
        let body = remote_write::decompress(compressed, self.max_body)?;
        let decoded = remote_write::decode(&body, &self.check)?;
        let writes = decoded.writes();
        let outcome = self.store.append(&writes, &decoded.metadata)?;
        let mut summary = WriteSummary {
            samples_accepted: outcome.samples_accepted,
            samples_rejected: outcome.rejected_total() + decoded.invalid_samples,
            messages: decoded.invalid.clone(),
        };
        summary.messages.extend(outcome.messages.iter().cloned());
        self.count_samples(
            Source::RemoteWrite,
            &summary,
            &outcome,
            decoded.invalid_samples,
        );
        Ok(summary)
    }

    /// An OTLP metrics export (already decoded from protobuf or JSON).
    pub fn otlp(
        &self,
        source: Source,
        request: &ExportMetricsServiceRequest,
        now_ms: i64,
    ) -> Result<WriteSummary, IngestError> {
        let result = self.otlp_inner(source, request, now_ms);
        self.count_request(source, &result);
        result
    }

    fn otlp_inner(
        &self,
        source: Source,
        request: &ExportMetricsServiceRequest,
        now_ms: i64,
    ) -> Result<WriteSummary, IngestError> {
        self.budget.check_metrics(request)?;
        let mut translated = translate(request, &self.check, &self.deltas, &self.promote, now_ms);
        if translated.series_count() > self.check.max_series_per_request {
            return Err(IngestError::BadRequest(format!(
                "request has {} series, more than {} (limits.max_series_per_request)",
                translated.series_count(),
                self.check.max_series_per_request
            )));
        }
        translated.sort_samples();
        let refs = translated.label_refs();
        let writes = translated.writes(&refs);
        let outcome = self.store.append(&writes, &translated.metadata)?;
        let mut summary = WriteSummary {
            samples_accepted: outcome.samples_accepted,
            samples_rejected: outcome.rejected_total() + translated.rejected_points,
            messages: translated.messages.clone(),
        };
        summary.messages.extend(outcome.messages.iter().cloned());
        self.count_samples(source, &summary, &outcome, translated.rejected_points);
        Ok(summary)
    }

    fn count_samples(
        &self,
        source: Source,
        summary: &WriteSummary,
        outcome: &crate::storage::metrics::AppendOutcome,
        invalid: u64,
    ) {
        self.metrics
            .samples_ingested(source.as_str(), summary.samples_accepted);
        if invalid > 0 {
            self.metrics
                .samples_rejected(source.as_str(), "invalid", invalid);
        }
        for (reason, count) in &outcome.rejected {
            self.metrics
                .samples_rejected(source.as_str(), reason.as_str(), *count);
        }
    }

    fn count_request(&self, source: Source, result: &Result<WriteSummary, IngestError>) {
        let outcome = match result {
            Ok(summary) if summary.samples_rejected == 0 => "ok",
            Ok(_) => "partial",
            Err(err) => {
                self.metrics
                    .record_ingest_error(source.as_str(), &err.to_string());
                match err {
                    IngestError::BadRequest(_) => "bad_request",
                    IngestError::PayloadTooLarge(_) => "too_large",
                    IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
                    _ => "error",
                }
            }
        };
        self.metrics.ingest_request(source.as_str(), outcome);
        if let Ok(summary) = result {
            if summary.samples_rejected > 0 {
                self.metrics
                    .record_ingest_error(source.as_str(), &summary.error_message());
            }
        }
    }
}
