//! The log write path shared by the `_bulk`/`_doc` and OTLP receivers:
//! decompress, parse, store, count. Runs on blocking threads.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use serde_json::{json, Value};

use super::es_bulk::{self, BulkItem};
use super::otlp::logs::translate;
use super::IngestError;
use crate::model::log::LogDoc;
use crate::selfmon::SelfMetrics;
use crate::storage::logs::{ItemError, ItemOutcome, LogStore, Written};

pub struct LogsIngest {
    pub store: Arc<LogStore>,
    pub max_body: usize,
    pub max_bulk_documents: usize,
    pub otlp_index: String,
    metrics: Arc<SelfMetrics>,
    /// Per-request OTLP translation limits.
    budget: crate::ingest::otlp::budget::Budget,
}

/// The outcome of an OTLP export.
#[derive(Debug, Default)]
pub struct LogsSummary {
    pub accepted: u64,
    pub rejected: u64,
    pub messages: Vec<String>,
}

impl LogsSummary {
    pub fn error_message(&self) -> String {
        let mut message = format!(
            "{} log record(s) rejected, {} accepted",
            self.rejected, self.accepted
        );
        for reason in &self.messages {
            message.push_str("; ");
            message.push_str(reason);
        }
        message
    }
}

impl LogsIngest {
    /// Apply per-request OTLP limits (the default has none).
    pub fn with_budget(mut self, budget: crate::ingest::otlp::budget::Budget) -> Self {
        self.budget = budget;
        self
    }

    pub fn new(
        store: Arc<LogStore>,
        max_body: usize,
        max_bulk_documents: usize,
        otlp_index: String,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        LogsIngest {
            store,
            max_body,
            max_bulk_documents,
            otlp_index,
            metrics,
            budget: Default::default(),
        }
    }

    /// `_bulk`: the Elasticsearch response body (always HTTP 200 unless the
    /// request itself is malformed) and whether any item failed. The body is
    /// written directly: it has one item per document, so building a JSON
    /// tree for it would cost more than parsing the request.
    pub fn bulk(
        &self,
        body: &[u8],
        default_index: Option<&str>,
        now_ms: i64,
    ) -> Result<(String, bool), es_bulk::BulkError> {
        let started = std::time::Instant::now();
        let items = es_bulk::parse(body, default_index, self.max_bulk_documents)?;
        let mut docs = Vec::new();
        let mut slots = Vec::with_capacity(items.len());
        for item in items {
            match item {
                BulkItem::Doc(doc) => {
                    slots.push(None);
                    docs.push(doc);
                }
                failed => slots.push(Some(failed)),
            }
        }
        let outcomes = self
            .store_docs(docs, now_ms, ELASTICSEARCH)
            .map_err(|err| es_bulk::BulkError {
                kind: "exception",
                reason: err.to_string(),
            })?;
        let mut outcomes = outcomes.into_iter();
        let mut errors = false;
        let mut out = String::with_capacity(slots.len() * 200 + 64);
        for slot in slots {
            if !out.is_empty() {
                out.push(',');
            }
            match slot {
                None => {
                    if let Some(outcome) = outcomes.next() {
                        errors |= outcome.result.is_err();
                        write_item(&mut out, &outcome);
                    }
                }
                Some(BulkItem::Failed {
                    action,
                    index,
                    id,
                    status,
                    kind,
                    reason,
                }) => {
                    errors = true;
                    self.metrics.log_records(ELASTICSEARCH, 0, 1);
                    out.push_str(
                        &json!({ action: {
                            "_index": index,
                            "_id": id,
                            "status": status,
                            "error": {"type": kind, "reason": reason},
                        }})
                        .to_string(),
                    );
                }
                Some(BulkItem::Doc(_)) => {}
            }
        }
        let body = format!(
            "{{\"took\":{},\"errors\":{errors},\"items\":[{out}]}}",
            started.elapsed().as_millis()
        );
        Ok((body, errors))
    }

    /// One document (`POST /<index>/_doc`, `PUT /<index>/_doc/<id>`).
    pub fn one(&self, doc: LogDoc, now_ms: i64) -> Result<ItemOutcome, IngestError> {
        let mut outcomes = self
            .store_docs(vec![doc], now_ms, ELASTICSEARCH)
            .map_err(|err| IngestError::Internal(err.to_string()))?;
        Ok(outcomes.pop().expect("one outcome per document"))
    }

    /// OTLP logs (gRPC or HTTP).
    pub fn otlp(
        &self,
        source: &'static str,
        request: &ExportLogsServiceRequest,
        now_ms: i64,
    ) -> Result<LogsSummary, IngestError> {
        self.budget.check_logs(request)?;
        let translated = translate(request, &self.otlp_index, now_ms.saturating_mul(1_000_000));
        let mut summary = LogsSummary {
            rejected: translated.rejected,
            messages: translated.messages,
            ..LogsSummary::default()
        };
        self.metrics.log_records(source, 0, translated.rejected);
        let outcomes = self
            .store_docs(translated.docs, now_ms, source)
            .map_err(|err| IngestError::Internal(err.to_string()))?;
        for outcome in outcomes {
            match outcome.result {
                Ok(_) => summary.accepted += 1,
                Err(err) => {
                    summary.rejected += 1;
                    if summary.messages.len() < 5 {
                        summary.messages.push(err.reason);
                    }
                }
            }
        }
        if summary.rejected > 0 {
            self.metrics
                .record_ingest_error(source, &summary.error_message());
        }
        Ok(summary)
    }

    fn store_docs(
        &self,
        docs: Vec<LogDoc>,
        now_ms: i64,
        source: &str,
    ) -> Result<Vec<ItemOutcome>, crate::storage::logs::LogStoreError> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = self.store.append(docs, now_ms)?;
        let rejected = outcomes.iter().filter(|o| o.result.is_err()).count() as u64;
        self.metrics
            .log_records(source, outcomes.len() as u64 - rejected, rejected);
        if let Some(err) = outcomes.iter().find_map(|o| o.result.as_ref().err()) {
            self.metrics.record_ingest_error(source, &err.reason);
        }
        Ok(outcomes)
    }
}

const ELASTICSEARCH: &str = "elasticsearch";

/// Append one successful or failed `_bulk` item to a response being written.
fn write_item(out: &mut String, outcome: &ItemOutcome) {
    use std::fmt::Write;
    let quoted = |s: &str| serde_json::to_string(s).expect("strings serialize");
    match &outcome.result {
        Ok(written) => {
            let (result, status) = match written {
                Written::Created => ("created", 201),
                Written::Updated => ("updated", 200),
            };
            let _ = write!(
                out,
                "{{\"{}\":{{\"_index\":{},\"_id\":{},\"_version\":1,\"result\":\"{result}\",\"_shards\":{{\"total\":1,\"successful\":1,\"failed\":0}},\"_seq_no\":0,\"_primary_term\":1,\"status\":{status}}}}}",
                outcome.op.as_str(),
                quoted(&outcome.index),
                quoted(&outcome.id),
            );
        }
        Err(_) => out.push_str(&item_json(outcome).to_string()),
    }
}

/// One `_bulk` item as Elasticsearch prints it.
pub fn item_json(outcome: &ItemOutcome) -> Value {
    let action = outcome.op.as_str();
    match &outcome.result {
        Ok(written) => {
            let (result, status) = match written {
                Written::Created => ("created", 201),
                Written::Updated => ("updated", 200),
            };
            json!({ action: {
                "_index": outcome.index,
                "_id": outcome.id,
                "_version": 1,
                "result": result,
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": 0,
                "_primary_term": 1,
                "status": status,
            }})
        }
        Err(ItemError {
            status,
            kind,
            reason,
        }) => json!({ action: {
            "_index": outcome.index,
            "_id": outcome.id,
            "status": status,
            "error": {"type": kind, "reason": reason, "index": outcome.index},
        }}),
    }
}
