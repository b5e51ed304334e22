//! Where entries live: in this process (moka: bounded by bytes, TinyLFU
//! admission) or in Redis, shared by every Oxeye pointed at it. Entries are
//! opaque compressed bytes here. Backends never fail a query: an error or
//! a timeout is a miss, counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::ConnectionManager;

use super::metrics::CacheMetrics;

pub enum Backend {
    InProcess(moka::sync::Cache<String, Arc<Vec<u8>>>),
    Redis(Box<RedisBackend>),
}

impl Backend {
    pub fn in_process(max_bytes: u64, ttl: Duration, metrics: CacheMetrics) -> Backend {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, value: &Arc<Vec<u8>>| {
                u32::try_from(key.len() + value.len() + 64).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .eviction_listener(move |_key, _value, cause| {
                if cause.was_evicted() {
                    metrics.evicted("memory");
                }
            })
            .build();
        Backend::InProcess(cache)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::InProcess(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// The entries under `keys`, in order. Called on a blocking thread.
    pub fn get(&self, keys: &[String]) -> Vec<Option<Arc<Vec<u8>>>> {
        match self {
            Backend::InProcess(cache) => keys.iter().map(|k| cache.get(k)).collect(),
            Backend::Redis(redis) => redis.get(keys),
        }
    }

    /// Keep entries (Redis: in the background, not waited for).
    pub fn put(&self, entries: Vec<(String, Vec<u8>)>) {
        match self {
            Backend::InProcess(cache) => {
                for (key, value) in entries {
                    cache.insert(key, Arc::new(value));
                }
            }
            Backend::Redis(redis) => redis.put(entries),
        }
    }

    /// Entries and their bytes (the in-process cache; Redis keeps its own).
    pub fn usage(&self) -> Option<(u64, u64)> {
        match self {
            Backend::InProcess(cache) => {
                cache.run_pending_tasks();
                Some((cache.entry_count(), cache.weighted_size()))
            }
            Backend::Redis(_) => None,
        }
    }
}

/// A Redis connection (multiplexed: concurrent commands are pipelined on
/// it), opened on first use and again after it broke, at most once per
/// second; every command bounded by `timeout`.
pub struct RedisBackend {
    client: redis::Client,
    timeout: Duration,
    ttl_seconds: u64,
    runtime: tokio::runtime::Handle,
    connection: Mutex<(Option<ConnectionManager>, Option<Instant>)>,
    metrics: CacheMetrics,
}

impl RedisBackend {
    pub fn new(
        url: &str,
        timeout: Duration,
        ttl: Duration,
        runtime: tokio::runtime::Handle,
        metrics: CacheMetrics,
    ) -> Result<RedisBackend, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("cache.redis_url {url:?}: {e}"))?;
        Ok(RedisBackend {
            client,
            timeout,
            ttl_seconds: ttl.as_secs().max(1),
            runtime,
            connection: Mutex::new((None, None)),
            metrics,
        })
    }

    /// Host and port (no credentials), for the Status page.
    pub fn address(&self) -> String {
        match &self.client.get_connection_info().addr {
            redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            other => other.to_string(),
        }
    }

    fn connection(&self) -> Option<ConnectionManager> {
        let mut guard = self.connection.lock();
        if let Some(c) = &guard.0 {
            return Some(c.clone());
        }
        if guard
            .1
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        guard.1 = Some(Instant::now());
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let client = self.client.clone();
        let timeout = self.timeout;
        // Connect on the runtime (the manager's reconnect task lives there),
        // waiting from this blocking thread.
        let connect = self.runtime.spawn(async move {
            tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config)).await
        });
        match self.runtime.block_on(connect) {
            Ok(Ok(Ok(c))) => {
                guard.0 = Some(c.clone());
                Some(c)
            }
            Ok(Ok(Err(err))) => {
                self.metrics.error("redis", "connect");
                tracing::warn!(error = %err, "results cache: cannot connect to Redis");
                None
            }
            _ => {
                self.metrics.error("redis", "timeout");
                None
            }
        }
    }

    fn broken(&self, err: &redis::RedisError) {
        if err.is_connection_dropped() || err.is_io_error() || err.is_connection_refusal() {
            self.connection.lock().0 = None;
        }
    }

    fn get(&self, keys: &[String]) -> Vec<Option<Arc<Vec<u8>>>> {
        let none = || vec![None; keys.len()];
        if keys.is_empty() {
            return Vec::new();
        }
        let Some(mut connection) = self.connection() else {
            return none();
        };
        let started = Instant::now();
        let keys_owned = keys.to_vec();
        let timeout = self.timeout;
        let request = self.runtime.spawn(async move {
            let mut cmd = redis::cmd("MGET");
            for k in &keys_owned {
                cmd.arg(k);
            }
            tokio::time::timeout(
                timeout,
                cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut connection),
            )
            .await
        });
        let outcome = self.runtime.block_on(request);
        self.metrics
            .observe("redis", "get", started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(Ok(values))) if values.len() == keys.len() => {
                values.into_iter().map(|v| v.map(Arc::new)).collect()
            }
            Ok(Ok(Ok(_))) => {
                self.metrics.error("redis", "reply");
                none()
            }
            Ok(Ok(Err(err))) => {
                self.metrics.error("redis", "command");
                self.broken(&err);
                none()
            }
            _ => {
                self.metrics.error("redis", "timeout");
                none()
            }
        }
    }

    fn put(&self, entries: Vec<(String, Vec<u8>)>) {
        if entries.is_empty() {
            return;
        }
        let Some(mut connection) = self.connection() else {
            return;
        };
        let (timeout, ttl, metrics) = (self.timeout, self.ttl_seconds, self.metrics.clone());
        self.runtime.spawn(async move {
            let started = Instant::now();
            let mut pipe = redis::pipe();
            for (key, value) in &entries {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value.as_slice())
                    .arg("EX")
                    .arg(ttl)
                    .ignore();
            }
            let outcome =
                tokio::time::timeout(timeout, pipe.query_async::<()>(&mut connection)).await;
            metrics.observe("redis", "set", started.elapsed().as_secs_f64());
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(_)) => metrics.error("redis", "command"),
                Err(_) => metrics.error("redis", "timeout"),
            }
        });
    }
}
