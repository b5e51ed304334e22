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
    /// How far past now a span may end (`limits.creation_grace_period`).
    accept_ahead_ms: i64,
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

    /// Reject spans ending later than now + `ahead_ms` (the default accepts any).
    pub fn with_grace(mut self, ahead_ms: i64) -> Self {
        self.accept_ahead_ms = ahead_ms;
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
            accept_ahead_ms: i64::MAX,
        }
    }

    /// Spans that ended before the retention window or end later than
    /// now + `limits.creation_grace_period` are rejected with a reason.
    fn check_times(&self, translated: &mut crate::ingest::otlp::traces::Translated, now_ms: i64) {
        let ns = |ms: i64| ms.saturating_mul(1_000_000);
        let oldest = ns(now_ms.saturating_sub(self.store.options.retention_ms));
        let newest = ns(now_ms.saturating_add(self.accept_ahead_ms));
        let before = translated.spans.len();
        let mut first_problem = None;
        translated.spans.retain(|span| {
            let problem = if span.end_ns < oldest {
                Some("ended before the retention window (traces.retention)")
            } else if span.end_ns > newest {
                Some("ends too far in the future (limits.creation_grace_period)")
            } else {
                None
            };
            if let (Some(problem), None) = (problem, &first_problem) {
                first_problem = Some(format!(
                    "span {} {problem}",
                    crate::model::span::hex(&span.span_id)
                ));
            }
            problem.is_none()
        });
        let dropped = before - translated.spans.len();
        if dropped > 0 {
            translated.rejected += dropped as u64;
            if let Some(message) = first_problem {
                translated.messages.push(if dropped > 1 {
                    format!("{message} (and {} more)", dropped - 1)
                } else {
                    message
                });
            }
        }
    }

    pub fn otlp(
        &self,
        source: &'static str,
        request: ExportTraceServiceRequest,
        now_ms: i64,
    ) -> Result<TracesSummary, IngestError> {
        self.budget.check_traces(&request)?;
        let mut translated = translate(request);
        self.check_times(&mut translated, now_ms);
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
