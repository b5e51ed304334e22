//! Delivery of alerts to Alertmanager (API v2, `POST /api/v2/alerts`), as
//! Prometheus' notifier does it: a bounded queue (the oldest alerts are
//! dropped when it is full), batches of at most 64 alerts, every batch to
//! every Alertmanager concurrently, external labels added to alerts that
//! lack them. Evaluation never waits for delivery.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use serde_json::json;

use crate::config::AlertingConfig;
use crate::selfmon::SelfMetrics;

const MAX_BATCH: usize = 64;

/// An alert as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub generator_url: String,
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub struct Notifier {
    queue: Mutex<VecDeque<AmAlert>>,
    wake: tokio::sync::Notify,
    capacity: usize,
    timeout: Duration,
    external_labels: BTreeMap<String, String>,
    /// `…/api/v2/alerts` of every Alertmanager.
    targets: Vec<String>,
    metrics: Arc<SelfMetrics>,
}

impl Notifier {
    pub fn new(
        config: &AlertingConfig,
        external_labels: BTreeMap<String, String>,
        metrics: Arc<SelfMetrics>,
    ) -> Arc<Notifier> {
        Arc::new(Notifier {
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            capacity: config.queue_capacity.max(1),
            timeout: config.timeout,
            external_labels,
            targets: config
                .alertmanagers
                .iter()
                .map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/')))
                .collect(),
            metrics,
        })
    }

    /// Where alerts are sent (`…/api/v2/alerts` of every Alertmanager).
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    pub fn queue_length(&self) -> usize {
        self.queue.lock().len()
    }

    /// Queue alerts; never blocks. With no Alertmanager they are dropped.
    pub fn send(&self, alerts: Vec<AmAlert>) {
        if self.targets.is_empty() {
            return;
        }
        let mut dropped = 0;
        {
            let mut queue = self.queue.lock();
            for mut alert in alerts {
                for (k, v) in &self.external_labels {
                    alert.labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
                queue.push_back(alert);
            }
            while queue.len() > self.capacity {
                queue.pop_front();
                dropped += 1;
            }
            self.metrics.notification_queue(queue.len());
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "alert notification queue full; dropped the oldest alerts"
            );
            self.metrics.notifications_dropped(dropped);
        }
        self.wake.notify_one();
    }

    /// Deliver queued alerts until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let client: Client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http();
        loop {
            let batch: Vec<AmAlert> = {
                let mut queue = self.queue.lock();
                let n = queue.len().min(MAX_BATCH);
                let batch = queue.drain(..n).collect();
                self.metrics.notification_queue(queue.len());
                batch
            };
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let body = Bytes::from(encode(&batch).to_string());
            let urls = &self.targets;
            let sends = urls
                .iter()
                .map(|url| post(&client, url, body.clone(), self.timeout));
            let results = futures_util::future::join_all(sends).await;
            let mut delivered = false;
            for (url, result) in urls.iter().zip(results) {
                self.metrics
                    .notification_sent(url, batch.len(), result.is_err());
                match result {
                    Ok(()) => delivered = true,
                    Err(e) => {
                        tracing::warn!(alertmanager = %url, error = %e, "sending alerts failed")
                    }
                }
            }
            if !delivered {
                self.metrics.notifications_dropped(batch.len());
            }
        }
    }
}

/// The API v2 body: a JSON array of alerts.
pub fn encode(alerts: &[AmAlert]) -> serde_json::Value {
    serde_json::Value::Array(
        alerts
            .iter()
            .map(|a| {
                json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": super::rfc3339(a.starts_at_ms),
                    "endsAt": super::rfc3339(a.ends_at_ms),
                    "generatorURL": a.generator_url,
                })
            })
            .collect(),
    )
}

async fn post(client: &Client, url: &str, body: Bytes, timeout: Duration) -> Result<(), String> {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("Oxeye/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(timeout, async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        // Read (a bounded part of) the answer so the connection is reused.
        let text = http_body_util::Limited::new(response.into_body(), 4096)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Ok::<_, String>((status, text))
    })
    .await
    .map_err(|_| format!("timed out after {timeout:?}"))??;
    if response.0.is_success() {
        Ok(())
    } else {
        Err(format!(
            "bad response status {}: {}",
            response.0,
            response.1.trim()
        ))
    }
}
