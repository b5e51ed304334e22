//! The trace write path shared by the OTLP receivers: translate, store,
//! feed the span metrics, count. Runs on blocking threads.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::otlp::traces::translate;
use super::spanmetrics::SpanMetrics;
use super::IngestError;
use crate::selfmon::SelfMetrics;
use crate::storage::traces::TraceStore;

pub struct TracesIngest {
    pub store: Arc<TraceStore>,
    pub span_metrics: Option<Arc<SpanMetrics>>,
    pub max_body: usize,
    metrics: Arc<SelfMetrics>,
    /// Per-request OTLP translation limits.
    budget: crate::ingest::otlp::budget::Budget,
}

/// The outcome of an OTLP export.
#[derive(Debug, Default)]
pub struct TracesSummary {
    pub accepted: u64,
    pub rejected: u64,
    pub messages: Vec<String>,
}

impl TracesSummary {
    pub fn error_message(&self) -> String {
        let mut message = format!(
            "{} span(s) rejected, {} accepted",
            self.rejected, self.accepted
        );
        for reason in &self.messages {
            message.push_str("; ");
            message.push_str(reason);
        }
        message
    }
}

impl TracesIngest {
    /// Apply per-request OTLP limits (the default has none).
    pub fn with_budget(mut self, budget: crate::ingest::otlp::budget::Budget) -> Self {
        self.budget = budget;
        self
    }

    pub fn new(
        store: Arc<TraceStore>,
        span_metrics: Option<Arc<SpanMetrics>>,
        max_body: usize,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        TracesIngest {
            store,
            span_metrics,
            max_body,
            metrics,
            budget: Default::default(),
        }
    }

    pub fn otlp(
        &self,
        source: &'static str,
        request: ExportTraceServiceRequest,
        now_ms: i64,
    ) -> Result<TracesSummary, IngestError> {
        self.budget.check_traces(&request)?;
        let translated = translate(request);
        let summary = TracesSummary {
            accepted: translated.spans.len() as u64,
            rejected: translated.rejected,
            messages: translated.messages,
        };
        if let Some(span_metrics) = &self.span_metrics {
            let dropped = span_metrics.observe(&translated.spans);
            self.metrics.span_metrics_dropped(dropped);
        }
        if let Err(err) = self.store.append(translated.spans, now_ms) {
            self.metrics.ingest_request(source, "error");
            self.metrics.record_ingest_error(source, &err.to_string());
            return Err(IngestError::Internal(format!("storing spans: {err}")));
        }
        self.store.cut_if_full();
        self.metrics
            .spans(source, summary.accepted, summary.rejected);
        self.metrics.ingest_request(
            source,
            if summary.rejected > 0 {
                "partial"
            } else {
                "ok"
            },
        );
        if summary.rejected > 0 {
            self.metrics
                .record_ingest_error(source, &summary.error_message());
        }
        Ok(summary)
    }
}
