//! Samples, exemplars and metadata to a Prometheus remote_write receiver
//! (protocol 1.0: snappy-compressed `prometheus.WriteRequest`).
//!
//! A round's samples are split into `shards` by series id, so one series'
//! samples always travel in one shard, in order; each shard sends its
//! requests (at most `max_samples_per_send` samples and exemplars each) one
//! after another, and the shards run concurrently, as Prometheus' queue
//! manager does. Series labels come from the WAL's series records, or from
//! the store for series created before the destination's cursor; both go
//! through `write_relabel_configs` once per series. Exemplars the store
//! carries into a new WAL segment at a head cut are not sent twice.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tokio::sync::watch;

use super::http::{HttpSender, Sent};
use super::relabel::{self, Relabel};
use super::{Delivery, DestinationStats, Sink};
use crate::config::RemoteWriteDestination;
use crate::model::prompb;
use crate::model::Labels;
use crate::storage::metrics::wal_record::{self, Record};
use crate::storage::metrics::MetricsStore;

/// What the sink knows of a series.
#[derive(Clone)]
enum Target {
    Send(Arc<Vec<prompb::Label>>),
    /// Dropped by `write_relabel_configs`.
    Relabeled,
    /// Forgotten by the store (retention) before it was forwarded.
    Unknown,
}

pub struct RemoteWriteSink {
    store: Arc<MetricsStore>,
    relabel: Vec<Relabel>,
    targets: HashMap<u32, Target>,
    /// Newest exemplar timestamp sent per series.
    last_exemplar: HashMap<u32, i64>,
    sender: Arc<HttpSender>,
    shards: usize,
    per_send: usize,
    send_exemplars: bool,
    send_metadata: bool,
    stats: Arc<DestinationStats>,
}

/// A series' labels, samples and exemplars in one round.
type ShardSeries = (
    Arc<Vec<prompb::Label>>,
    Vec<prompb::Sample>,
    Vec<prompb::Exemplar>,
);

/// One shard's share of a round, in WAL order.
#[derive(Default)]
struct Shard {
    index: HashMap<u32, usize>,
    series: Vec<ShardSeries>,
}

impl RemoteWriteSink {
    pub fn new(
        config: &RemoteWriteDestination,
        store: Arc<MetricsStore>,
        stats: Arc<DestinationStats>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<RemoteWriteSink, String> {
        let sender = HttpSender::new(&config.url, config.send(), stats.clone(), shutdown, 1 << 20)?;
        Ok(RemoteWriteSink {
            store,
            relabel: relabel::compile_all(&config.write_relabel_configs)?,
            targets: HashMap::new(),
            last_exemplar: HashMap::new(),
            sender: Arc::new(sender),
            shards: config.shards.max(1),
            per_send: config.max_samples_per_send.max(1),
            send_exemplars: config.send_exemplars,
            send_metadata: config.send_metadata,
            stats,
        })
    }

    fn target_of(&self, labels: &Labels) -> Target {
        match relabel::process(labels, &self.relabel) {
            Some(kept) => Target::Send(Arc::new(prompb::labels_of(&kept))),
            None => Target::Relabeled,
        }
    }

    fn target(&mut self, id: u32) -> Target {
        if let Some(target) = self.targets.get(&id) {
            return target.clone();
        }
        let target = match self.store.series_labels(id) {
            Some(labels) => self.target_of(&labels),
            None => Target::Unknown,
        };
        self.targets.insert(id, target.clone());
        target
    }

    /// Sort a round's records into shards; returns the metadata to send.
    fn split(&mut self, records: &[Vec<u8>], shards: &mut [Shard]) -> Vec<prompb::MetricMetadata> {
        let mut metadata = Vec::new();
        let n = shards.len();
        let (mut relabeled, mut unknown) = (0u64, 0u64);
        for payload in records {
            match wal_record::decode(payload) {
                Some(Record::Series(series)) => {
                    for (id, labels) in series {
                        let target = self.target_of(&labels);
                        self.targets.insert(id, target);
                    }
                }
                Some(Record::Samples(samples)) => {
                    for (id, sample) in samples {
                        let labels = match self.target(id) {
                            Target::Send(labels) => labels,
                            Target::Relabeled => {
                                relabeled += 1;
                                continue;
                            }
                            Target::Unknown => {
                                unknown += 1;
                                continue;
                            }
                        };
                        let shard = &mut shards[id as usize % n];
                        let at = *shard.index.entry(id).or_insert_with(|| {
                            shard.series.push((labels, Vec::new(), Vec::new()));
                            shard.series.len() - 1
                        });
                        shard.series[at].1.push(prompb::Sample {
                            value: sample.v,
                            timestamp: sample.t,
                        });
                    }
                }
                Some(Record::Exemplars(items)) if self.send_exemplars => {
                    for (id, exemplar) in items {
                        let last = self.last_exemplar.entry(id).or_insert(i64::MIN);
                        if exemplar.t <= *last {
                            continue;
                        }
                        *last = exemplar.t;
                        let Target::Send(labels) = self.target(id) else {
                            continue;
                        };
                        let shard = &mut shards[id as usize % n];
                        let at = *shard.index.entry(id).or_insert_with(|| {
                            shard.series.push((labels, Vec::new(), Vec::new()));
                            shard.series.len() - 1
                        });
                        shard.series[at].2.push(prompb::Exemplar {
                            labels: prompb::labels_of(&exemplar.labels),
                            value: exemplar.v,
                            timestamp: exemplar.t,
                        });
                    }
                }
                Some(Record::Exemplars(_)) => {}
                Some(Record::Metadata(m)) if self.send_metadata => {
                    metadata.push(prompb::MetricMetadata {
                        // Codes 0 to 7.
                        r#type: m.metric_type.to_remote_write() as i32,
                        metric_family_name: m.metric_family,
                        help: m.help,
                        unit: m.unit,
                    });
                }
                Some(Record::Metadata(_)) => {}
                None => self
                    .stats
                    .error("an undecodable metrics WAL record was skipped".into()),
            }
        }
        self.stats.dropped("relabel", relabeled);
        self.stats.dropped("unknown_series", unknown);
        metadata
    }
}

/// Cut a shard into requests of at most `per_send` samples and exemplars,
/// keeping each series' samples in order.
fn requests(shard: Shard, per_send: usize) -> Vec<prompb::WriteRequest> {
    let mut out = Vec::new();
    let mut current = prompb::WriteRequest::default();
    let mut room = per_send;
    for (labels, samples, exemplars) in shard.series {
        let mut samples = samples.as_slice();
        let mut exemplars = exemplars.as_slice();
        while !samples.is_empty() || !exemplars.is_empty() {
            if room == 0 {
                out.push(std::mem::take(&mut current));
                room = per_send;
            }
            let take_s = samples.len().min(room);
            let take_e = exemplars.len().min(room - take_s);
            current.timeseries.push(prompb::TimeSeries {
                labels: labels.as_ref().clone(),
                samples: samples[..take_s].to_vec(),
                exemplars: exemplars[..take_e].to_vec(),
            });
            samples = &samples[take_s..];
            exemplars = &exemplars[take_e..];
            room -= take_s + take_e;
        }
    }
    if !current.timeseries.is_empty() {
        out.push(current);
    }
    out
}

const HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "snappy"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

/// Send a shard's requests in order; what a receiver refuses is counted.
async fn send_shard(
    sender: Arc<HttpSender>,
    stats: Arc<DestinationStats>,
    requests: Vec<prompb::WriteRequest>,
) -> Delivery {
    for request in requests {
        let samples: u64 = request
            .timeseries
            .iter()
            .map(|s| s.samples.len() as u64)
            .sum();
        let exemplars: u64 = request
            .timeseries
            .iter()
            .map(|s| s.exemplars.len() as u64)
            .sum();
        let newest = request
            .timeseries
            .iter()
            .flat_map(|s| s.samples.iter().map(|x| x.timestamp))
            .max();
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap_or_default();
        match sender.post(Bytes::from(body), HEADERS).await {
            Sent::Ok(_) => {
                stats.sent("samples", samples);
                stats.sent("exemplars", exemplars);
                stats.sent("metadata", request.metadata.len() as u64);
                if let Some(t) = newest {
                    stats.sent_item(t);
                }
            }
            Sent::Rejected(_, _) => {
                stats.dropped(
                    "rejected",
                    samples + exemplars + request.metadata.len() as u64,
                );
            }
            Sent::Stopped => return Delivery::Stopped,
        }
    }
    Delivery::Done
}

impl Sink for RemoteWriteSink {
    async fn deliver(&mut self, records: Vec<Vec<u8>>) -> Delivery {
        let mut shards: Vec<Shard> = (0..self.shards).map(|_| Shard::default()).collect();
        let metadata = self.split(&records, &mut shards);
        drop(records);
        let mut per_shard: Vec<Vec<prompb::WriteRequest>> = shards
            .into_iter()
            .map(|shard| requests(shard, self.per_send))
            .collect();
        if !metadata.is_empty() {
            for chunk in metadata.chunks(self.per_send) {
                per_shard[0].push(prompb::WriteRequest {
                    timeseries: Vec::new(),
                    metadata: chunk.to_vec(),
                });
            }
        }
        // Concurrent within this task, so that giving a round up (see
        // `forward::drive`) cancels every shard's sends.
        let sends = per_shard
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(|r| send_shard(self.sender.clone(), self.stats.clone(), r));
        let mut outcome = Delivery::Done;
        for delivered in futures_util::future::join_all(sends).await {
            if let Delivery::Stopped = delivered {
                outcome = Delivery::Stopped;
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_respect_the_size_and_keep_series_order() {
        let labels = Arc::new(vec![prompb::Label {
            name: "__name__".into(),
            value: "m".into(),
        }]);
        let mut shard = Shard::default();
        for s in 0..3u32 {
            let samples = (0..5)
                .map(|t| prompb::Sample {
                    value: f64::from(s),
                    timestamp: t,
                })
                .collect();
            shard.series.push((labels.clone(), samples, Vec::new()));
        }
        let out = requests(shard, 4);
        let sizes: Vec<usize> = out
            .iter()
            .map(|r| r.timeseries.iter().map(|t| t.samples.len()).sum())
            .collect();
        assert_eq!(sizes, vec![4, 4, 4, 3]);
        let all: Vec<(f64, i64)> = out
            .iter()
            .flat_map(|r| r.timeseries.iter())
            .flat_map(|t| t.samples.iter().map(|s| (s.value, s.timestamp)))
            .collect();
        let expected: Vec<(f64, i64)> = (0..3)
            .flat_map(|s| (0..5).map(move |t| (f64::from(s), t)))
            .collect();
        assert_eq!(all, expected);
    }
}
