//! Log records to an Elasticsearch or OpenSearch `_bulk` endpoint.
//!
//! Each record goes as an `index` action with the id Oxeye gave it (its own
//! or a generated one), so a resend after a crash replaces rather than
//! duplicates. The target index is `index` with `{index}` replaced by the
//! source index; `indices` (patterns with `*`) choose which indices go. A
//! bulk answer is read item by item: items refused with 429 or a 5xx are
//! sent again (with backoff) until taken, other refusals are counted as
//! dropped with their reason logged; a whole-request failure is retried by
//! the HTTP sender.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;

use super::http::{HttpSender, Sent};
use super::{Delivery, DestinationStats, Sink};
use crate::config::ElasticsearchDestination;
use crate::storage::logs::ForwardDoc;

/// Bulk answers read at most (an item's answer is ~200 bytes).
const MAX_ANSWER: usize = 64 << 20;

pub struct ElasticsearchSink {
    indices: Vec<String>,
    template: String,
    per_send: usize,
    min_backoff: Duration,
    max_backoff: Duration,
    sender: HttpSender,
    stats: Arc<DestinationStats>,
    shutdown: watch::Receiver<bool>,
}

/// `*` matches any run of characters; everything else itself.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

impl ElasticsearchSink {
    pub fn new(
        config: &ElasticsearchDestination,
        stats: Arc<DestinationStats>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<ElasticsearchSink, String> {
        let url = HttpSender::with_path(&config.url, "/_bulk");
        let send = config.send();
        Ok(ElasticsearchSink {
            indices: config.indices.clone(),
            template: config.index.clone(),
            per_send: config.max_docs_per_send.max(1),
            min_backoff: send.min_backoff,
            max_backoff: send.max_backoff,
            sender: HttpSender::new(&url, send, stats.clone(), shutdown.clone(), MAX_ANSWER)?,
            stats,
            shutdown,
        })
    }

    fn body(&self, docs: &[&ForwardDoc]) -> Vec<u8> {
        let mut body = Vec::with_capacity(docs.iter().map(|d| d.source.len() + 96).sum());
        for doc in docs {
            let action = serde_json::json!({"index": {
                "_index": self.template.replace("{index}", &doc.index),
                "_id": doc.id,
            }});
            body.extend_from_slice(action.to_string().as_bytes());
            body.push(b'\n');
            body.extend_from_slice(&doc.source);
            body.push(b'\n');
        }
        body
    }

    /// Send `docs` until every one is taken or refused for good.
    async fn send(&self, docs: Vec<&ForwardDoc>) -> Delivery {
        const HEADERS: &[(&str, &str)] = &[("content-type", "application/x-ndjson")];
        let mut pending = docs;
        let mut backoff = self.min_backoff;
        let mut shutdown = self.shutdown.clone();
        while !pending.is_empty() {
            let answer = match self
                .sender
                .post(Bytes::from(self.body(&pending)), HEADERS)
                .await
            {
                Sent::Ok(answer) => answer,
                Sent::Rejected(_, _) => {
                    self.stats.dropped("rejected", pending.len() as u64);
                    return Delivery::Done;
                }
                Sent::Stopped => return Delivery::Stopped,
            };
            let statuses = item_statuses(&answer, pending.len());
            let mut again = Vec::new();
            let (mut taken, mut refused) = (0u64, 0u64);
            let mut newest = 0i64;
            for (doc, status) in pending.into_iter().zip(statuses) {
                match status {
                    Ok(()) => {
                        taken += 1;
                        newest = newest.max(doc.timestamp_ns / 1_000_000);
                    }
                    Err((429 | 500..=599, _)) => again.push(doc),
                    Err((status, reason)) => {
                        refused += 1;
                        self.stats.error(format!(
                            "document {} of index {} refused ({status}): {reason}",
                            doc.id, doc.index
                        ));
                    }
                }
            }
            self.stats.sent("log_records", taken);
            self.stats.sent_item(newest);
            self.stats.dropped("rejected", refused);
            pending = again;
            if !pending.is_empty() {
                self.stats.error(format!(
                    "{} documents answered 429 or 5xx; sending them again in {backoff:?}",
                    pending.len()
                ));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Delivery::Stopped,
                }
                backoff = (backoff * 2).min(self.max_backoff);
            }
        }
        Delivery::Done
    }
}

/// Each item's outcome from a bulk answer; items the answer does not cover
/// (a malformed answer) count as 500, to be sent again.
fn item_statuses(answer: &[u8], count: usize) -> Vec<Result<(), (u16, String)>> {
    let parsed: Option<Vec<Value>> = serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|v| v.get("items").and_then(Value::as_array).cloned());
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let item = parsed
            .as_ref()
            .and_then(|items| items.get(i))
            .and_then(|item| item.as_object())
            .and_then(|o| o.values().next());
        let status = match item {
            Some(item) => {
                let code = item
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(500);
                if (200..300).contains(&code) {
                    Ok(())
                } else {
                    let reason = item
                        .pointer("/error/reason")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                        .to_owned();
                    Err((code, reason))
                }
            }
            None => Err((500, "the bulk answer did not cover this item".into())),
        };
        out.push(status);
    }
    out
}

impl Sink for ElasticsearchSink {
    async fn deliver(&mut self, records: Vec<Vec<u8>>) -> Delivery {
        let docs: Vec<ForwardDoc> = records
            .iter()
            .filter_map(|p| crate::storage::logs::decode_wal_docs(p))
            .flatten()
            .collect();
        drop(records);
        let (wanted, filtered): (Vec<&ForwardDoc>, Vec<&ForwardDoc>) = docs
            .iter()
            .partition(|d| self.indices.iter().any(|p| matches_pattern(p, &d.index)));
        self.stats.dropped("filtered", filtered.len() as u64);
        for chunk in wanted.chunks(self.per_send) {
            if let Delivery::Stopped = self.send(chunk.to_vec()).await {
                return Delivery::Stopped;
            }
        }
        Delivery::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches_pattern("*", "anything"));
        assert!(matches_pattern("logs-*", "logs-app"));
        assert!(!matches_pattern("logs-*", "metrics"));
        assert!(matches_pattern("a*b*c", "axxbyyc"));
        assert!(!matches_pattern("a*b*c", "axxc"));
        assert!(matches_pattern("exact", "exact"));
        assert!(
            !matches_pattern("ab*ba", "aba"),
            "prefix and suffix may not overlap"
        );
    }

    #[test]
    fn bulk_answers_are_read_item_by_item() {
        let answer = br#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429,"error":{"reason":"busy"}}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad field"}}}]}"#;
        let statuses = item_statuses(answer, 4);
        assert_eq!(statuses[0], Ok(()));
        assert_eq!(statuses[1], Err((429, "busy".into())));
        assert_eq!(statuses[2], Err((400, "bad field".into())));
        assert_eq!(
            statuses[3].as_ref().unwrap_err().0,
            500,
            "not covered: sent again"
        );
        assert!(item_statuses(b"garbage", 2).iter().all(|s| s.is_err()));
    }
}
