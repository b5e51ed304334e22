//! Typed configuration: the embedded default, a user file, `OXEYE_…` environment
//! overrides and command-line flags, merged in that order and validated.
//!
//! The embedded default (`config/oxeye.toml`) lists every key, so it doubles as
//! the schema: a key that is not in it is an error, reported with its location.

mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml_edit::{DocumentMut, Item};

pub use units::ByteSize;

/// The default configuration, compiled into the binary.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/oxeye.toml");

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "OXEYE_";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub wal: WalConfig,
    pub limits: LimitsConfig,
    pub query: QueryConfig,
    pub cache: CacheConfig,
    pub sql: SqlConfig,
    pub logs: LogsConfig,
    pub traces: TracesConfig,
    pub auth: AuthConfig,
    pub rules: RulesConfig,
    pub alerting: AlertingConfig,
    pub recommendations: RecommendationsConfig,
    pub dashboards: DashboardsConfig,
    pub otlp: OtlpConfig,
    pub forward: ForwardConfig,
    pub log: LogConfig,
    /// The directory of the configuration file (rule globs are relative to
    /// it); the working directory without one.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// `[rules]`: recording and alerting rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    pub files: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub query_offset: Duration,
    #[serde(with = "humantime_serde")]
    pub outage_tolerance: Duration,
    #[serde(with = "humantime_serde")]
    pub for_grace_period: Duration,
    #[serde(with = "humantime_serde")]
    pub resend_delay: Duration,
    /// `name=value` pairs.
    pub external_labels: Vec<String>,
    pub external_url: String,
}

impl RulesConfig {
    /// `external_labels` as a map (invalid entries are refused by validation).
    pub fn external_labels(&self) -> std::collections::BTreeMap<String, String> {
        self.external_labels
            .iter()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }
}

/// `[otlp]`: how OTLP metrics become series.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    pub promote_resource_attributes: Vec<String>,
}

/// `[recommendations]`: Kubernetes right-sizing (see `src/recommend`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsConfig {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    pub strategy: String,
    pub cluster: String,
    pub cpu_percentile: f64,
    pub cpu_request_percentile: f64,
    pub cpu_limit_percentile: f64,
    pub memory_buffer_percentage: f64,
    pub points_required: u64,
    pub allow_hpa: bool,
    pub use_oomkill_data: bool,
    pub oom_memory_buffer_percentage: f64,
    pub hpa_target_utilization_percentage: f64,
    pub hpa_min_daily_variation: f64,
    pub backtest_train_fraction: f64,
    pub max_pods: usize,
    pub max_steps: usize,
    pub max_points_per_workload: u64,
    #[serde(with = "humantime_serde")]
    pub db_slow_query: Duration,
    pub n_plus_one_min_count: usize,
    #[serde(with = "humantime_serde")]
    pub n_plus_one_min_total: Duration,
    pub db_max_spans: usize,
    pub db_max_templates: usize,
    pub cache_max_stale_share: f64,
    pub cache_entry_bytes: u64,
    pub cache_min_reads: usize,
    pub cache_exact_reads: usize,
    pub cpu_usage_metric: String,
    pub cpu_usage_is_counter: bool,
    pub memory_usage_metric: String,
    pub namespace_label: String,
    pub pod_label: String,
    pub container_label: String,
}

impl RecommendationsConfig {
    pub fn cache_options(&self) -> crate::recommend::cache::CacheOptions {
        crate::recommend::cache::CacheOptions {
            max_spans: self.db_max_spans,
            exact_limit: self.cache_exact_reads.max(1000),
            max_stale: self.cache_max_stale_share,
            entry_bytes: self.cache_entry_bytes as f64,
            min_reads: self.cache_min_reads.max(2),
        }
    }

    pub fn db_options(&self) -> crate::recommend::database::DbOptions {
        crate::recommend::database::DbOptions {
            slow_query_ms: self.db_slow_query.as_secs_f64() * 1000.0,
            n_plus_one_min_count: self.n_plus_one_min_count.max(2),
            n_plus_one_min_total_ms: self.n_plus_one_min_total.as_secs_f64() * 1000.0,
            max_spans: self.db_max_spans,
            max_templates: self.db_max_templates,
        }
    }

    pub fn options(&self) -> crate::recommend::Options {
        use crate::recommend::{Names, Options, Settings};
        Options {
            names: Names {
                cpu_usage: self.cpu_usage_metric.clone(),
                cpu_is_counter: self.cpu_usage_is_counter,
                memory_usage: self.memory_usage_metric.clone(),
                namespace_label: self.namespace_label.clone(),
                pod_label: self.pod_label.clone(),
                container_label: self.container_label.clone(),
            },
            settings: Settings {
                cpu_percentile: self.cpu_percentile,
                cpu_request_percentile: self.cpu_request_percentile,
                cpu_limit_percentile: self.cpu_limit_percentile,
                memory_buffer_percentage: self.memory_buffer_percentage,
                points_required: self.points_required,
                allow_hpa: self.allow_hpa,
                use_oomkill_data: self.use_oomkill_data,
                oom_memory_buffer_percentage: self.oom_memory_buffer_percentage,
            },
            cluster: self.cluster.clone(),
            hpa_target_utilization: self.hpa_target_utilization_percentage / 100.0,
            hpa_min_variation: self.hpa_min_daily_variation,
            max_pods: self.max_pods,
            max_steps: self.max_steps,
            max_points_per_workload: self.max_points_per_workload,
            timeout: None,
            backtest_train_fraction: self.backtest_train_fraction,
        }
    }
}

/// `[alerting]`: where alerts go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    pub alertmanagers: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub queue_capacity: usize,
}

/// `[forward]`: where accepted data is sent on (see `src/forward`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    pub max_backlog: ByteSize,
    pub on_backlog: String,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    pub remote_write: Vec<RemoteWriteDestination>,
    pub otlp: Vec<OtlpDestination>,
    pub elasticsearch: Vec<ElasticsearchDestination>,
}

impl ForwardConfig {
    fn check(&self, check: &mut impl FnMut(bool, &str, &str)) {
        let mut names = std::collections::HashSet::new();
        let all = self
            .remote_write
            .iter()
            .map(|d| ("forward.remote_write", &d.name, &d.url, d.send()))
            .chain(
                self.otlp
                    .iter()
                    .map(|d| ("forward.otlp", &d.name, &d.url, d.send())),
            )
            .chain(
                self.elasticsearch
                    .iter()
                    .map(|d| ("forward.elasticsearch", &d.name, &d.url, d.send())),
            );
        for (section, name, url, send) in all {
            check(
                !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                &format!("{section}.name"),
                "must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -",
            );
            check(
                names.insert(name.clone()),
                &format!("{section}.name"),
                &format!("\"{name}\" is used by more than one destination"),
            );
            check(
                url.starts_with("http://"),
                &format!("{section}.url"),
                "must be an http:// URL (TLS to receivers is not supported yet)",
            );
            check(
                !send.timeout.is_zero()
                    && !send.min_backoff.is_zero()
                    && send.min_backoff <= send.max_backoff,
                &format!("{section}.timeout"),
                "timeout and min_backoff must be greater than zero, and min_backoff at most max_backoff",
            );
            check(
                send.headers.iter().all(|(k, v)| {
                    hyper::http::HeaderName::from_bytes(k.as_bytes()).is_ok()
                        && hyper::http::HeaderValue::from_str(v).is_ok()
                }),
                &format!("{section}.headers"),
                "each header must be a valid HTTP header name and value",
            );
        }
        check(
            self.on_backlog == "drop" || self.on_backlog == "block",
            "forward.on_backlog",
            "must be \"drop\" or \"block\"",
        );
        for d in &self.remote_write {
            check(
                (1..=256).contains(&d.shards) && (1..=100_000).contains(&d.max_samples_per_send),
                "forward.remote_write.shards",
                "shards must be 1 to 256 and max_samples_per_send 1 to 100000",
            );
            for (i, relabel) in d.write_relabel_configs.iter().enumerate() {
                if let Err(problem) = relabel.compile() {
                    check(
                        false,
                        "forward.remote_write.write_relabel_configs",
                        &format!("{}[{i}]: {problem}", d.name),
                    );
                }
            }
        }
        for d in &self.otlp {
            check(
                d.protocol == "http/protobuf" || d.protocol == "grpc",
                "forward.otlp.protocol",
                "must be \"http/protobuf\" or \"grpc\"",
            );
            check(
                !d.signals.is_empty() && d.signals.iter().all(|s| s == "traces" || s == "logs"),
                "forward.otlp.signals",
                "must list \"traces\" and/or \"logs\"",
            );
            check(
                d.services.iter().all(|s| regex::Regex::new(s).is_ok()),
                "forward.otlp.services",
                "each entry must be a valid regular expression",
            );
            check(
                (1..=100_000).contains(&d.max_items_per_send),
                "forward.otlp.max_items_per_send",
                "must be 1 to 100000",
            );
        }
        for d in &self.elasticsearch {
            check(
                (1..=100_000).contains(&d.max_docs_per_send) && !d.indices.is_empty(),
                "forward.elasticsearch.max_docs_per_send",
                "must be 1 to 100000, with at least one index pattern",
            );
        }
    }
}

/// How one destination sends: shared by every kind.
#[derive(Debug, Clone)]
pub struct SendConfig {
    pub timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub headers: BTreeMap<String, String>,
}

macro_rules! send_config {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn send(&self) -> SendConfig {
                SendConfig {
                    timeout: self.timeout,
                    min_backoff: self.min_backoff,
                    max_backoff: self.max_backoff,
                    headers: self.headers.clone(),
                }
            }
        }
    )*};
}
send_config!(
    RemoteWriteDestination,
    OtlpDestination,
    ElasticsearchDestination
);

fn default_send_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_min_backoff() -> Duration {
    Duration::from_millis(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_shards() -> usize {
    4
}
fn default_per_send() -> usize {
    2000
}
fn default_items_per_send() -> usize {
    1000
}
fn default_true() -> bool {
    true
}
fn default_otlp_protocol() -> String {
    "http/protobuf".into()
}
fn default_signals() -> Vec<String> {
    vec!["traces".into()]
}
fn default_indices() -> Vec<String> {
    vec!["*".into()]
}
fn default_index_template() -> String {
    "{index}".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteDestination {
    pub name: String,
    pub url: String,
    #[serde(default = "default_shards")]
    pub shards: usize,
    #[serde(default = "default_per_send")]
    pub max_samples_per_send: usize,
    #[serde(default = "default_true")]
    pub send_exemplars: bool,
    #[serde(default = "default_true")]
    pub send_metadata: bool,
    #[serde(default)]
    pub write_relabel_configs: Vec<crate::forward::relabel::RelabelConfig>,
    #[serde(with = "humantime_serde", default = "default_send_timeout")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_min_backoff")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpDestination {
    pub name: String,
    pub url: String,
    #[serde(default = "default_otlp_protocol")]
    pub protocol: String,
    #[serde(default = "default_signals")]
    pub signals: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default = "default_items_per_send")]
    pub max_items_per_send: usize,
    #[serde(with = "humantime_serde", default = "default_send_timeout")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_min_backoff")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchDestination {
    pub name: String,
    pub url: String,
    #[serde(default = "default_indices")]
    pub indices: Vec<String>,
    #[serde(default = "default_index_template")]
    pub index: String,
    #[serde(default = "default_items_per_send")]
    pub max_docs_per_send: usize,
    #[serde(with = "humantime_serde", default = "default_send_timeout")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_min_backoff")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[auth]`: who may do what. Empty lists: no credentials asked (allowed
/// only when every listener is on loopback, or with `server.insecure_listen`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub users: Vec<UserConfig>,
    pub tokens: Vec<TokenConfig>,
}

/// A user for HTTP basic auth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// argon2 PHC string (`oxeye hash-password`).
    pub password_hash: String,
    pub roles: Vec<crate::api::auth::Role>,
}

/// A bearer token (also an Elasticsearch API key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    /// Hex SHA-256 of the token (`oxeye hash-token`).
    pub token_sha256: String,
    pub roles: Vec<crate::api::auth::Role>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub max_head_spans: usize,
    #[serde(with = "humantime_serde")]
    pub block_age: Duration,
    pub span_metrics: bool,
    #[serde(with = "humantime_serde")]
    pub span_metrics_interval: Duration,
    pub span_metrics_buckets_ms: Vec<f64>,
    pub span_metrics_max_series: usize,
    pub max_search_traces: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub partition: Duration,
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    pub writer_memory: ByteSize,
    pub otlp_index: String,
    pub keyword_ignore_above: usize,
    pub max_result_window: usize,
    pub max_buckets: u32,
    pub max_fields_per_index: usize,
    pub max_bulk_documents: usize,
    pub max_query_depth: usize,
    pub max_msearch_searches: usize,
    pub max_tail_subscribers: usize,
    pub max_indices: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    #[serde(with = "humantime_serde")]
    pub lookback_delta: Duration,
    pub max_samples: usize,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_concurrent: usize,
    pub max_expression_depth: usize,
}

/// `[sql]`: SQL over the stores.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    pub max_rows: usize,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_memory: ByteSize,
    pub max_concurrent: usize,
    pub target_partitions: usize,
}

/// `[dashboards]`: saved dashboards (Grafana's JSON) and provisioning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardsConfig {
    /// Save the dashboards shipped with Oxeye at start.
    pub builtin: bool,
    /// A directory of dashboard JSON files saved at start ("" for none;
    /// relative to the configuration file).
    pub provision_dir: String,
    pub max_versions: usize,
    pub max_dashboards: usize,
    pub max_size: ByteSize,
    pub max_panels: usize,
    pub max_variables: usize,
}

impl DashboardsConfig {
    /// `provision_dir` resolved against the configuration file's directory.
    pub fn provision_path(&self, base: &std::path::Path) -> Option<PathBuf> {
        (!self.provision_dir.is_empty()).then(|| base.join(&self.provision_dir))
    }
}

/// `[cache]`: the query results cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub max_freshness: Duration,
    #[serde(with = "humantime_serde")]
    pub split_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    pub max_bytes: ByteSize,
    pub max_entry_bytes: ByteSize,
    pub redis_url: String,
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    pub redis_key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub elasticsearch: SocketAddr,
    pub postgres: SocketAddr,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub insecure_listen: bool,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    /// PEM certificate chain and key; both set: every listener speaks TLS.
    #[serde(default, deserialize_with = "optional_path")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "optional_path")]
    pub tls_key_file: Option<PathBuf>,
}

/// An empty string is no path (TOML has no null).
fn optional_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub block_duration: Duration,
    #[serde(with = "humantime_serde")]
    pub out_of_order_window: Duration,
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync before every acknowledgement (concurrent writers share one fsync).
    Always,
    /// fsync on a timer; a crash may lose the last interval's acknowledged writes.
    Interval,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    pub fsync: FsyncPolicy,
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    pub segment_size: ByteSize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_body_size: ByteSize,
    pub max_series_per_request: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_active_series: usize,
    pub max_exemplars: usize,
    pub max_items_per_request: usize,
    pub max_translated_size: ByteSize,
    #[serde(with = "humantime_serde")]
    pub creation_grace_period: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
}

/// One problem found in a configuration, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `FILE:LINE:COLUMN`, `env OXEYE_…` or `flag --…`.
    pub location: String,
    /// Dotted key path, e.g. `storage.retention` (empty for syntax errors).
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: `{}`: {}", self.location, self.key, self.message)
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} configuration problem{}:",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.0 {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where configuration comes from, in increasing precedence after the default.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    pub file: Option<PathBuf>,
    /// `(name, value)` pairs; only names starting with [`ENV_PREFIX`] are used.
    pub env: Vec<(String, String)>,
    /// Command-line overrides as `(dotted key, TOML value)`.
    pub flags: Vec<(String, toml_edit::Value)>,
}

impl ConfigSources {
    /// Sources from the process environment and an optional file.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        ConfigSources {
            file,
            env: std::env::vars().collect(),
            flags: Vec::new(),
        }
    }
}

impl Config {
    /// The embedded default configuration.
    pub fn default_config() -> Config {
        toml::from_str(DEFAULT_CONFIG).expect("embedded default config is valid")
    }

    /// Merge the sources over the default and validate, reporting every problem.
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let mut merged: DocumentMut = DEFAULT_CONFIG.parse().expect("default config parses");
        let schema = merged.clone();

        if let Some(path) = &sources.file {
            merge_file(path, &schema, &mut merged, &mut problems);
        }
        for (name, raw) in &sources.env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            let location = format!("environment variable {name}");
            let value = parse_env_value(raw);
            set_checked(&schema, &mut merged, &path, value, &location, &mut problems);
        }
        for (key, value) in &sources.flags {
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            let location = format!("command-line flag for {key}");
            set_checked(
                &schema,
                &mut merged,
                &path,
                value.clone(),
                &location,
                &mut problems,
            );
        }
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        let mut config: Config = match toml::from_str(&merged.to_string()) {
            Ok(config) => config,
            Err(err) => {
                return Err(ConfigErrors(vec![Problem {
                    location: "merged configuration".into(),
                    key: String::new(),
                    message: err.message().to_owned(),
                }]))
            }
        };
        config.dir = match sources.file.as_ref().and_then(|f| f.parent()) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        config.validate().map(|()| config)
    }

    /// Checks that types alone cannot express.
    fn validate(&self) -> Result<(), ConfigErrors> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(Problem {
                    location: "configuration".into(),
                    key: key.into(),
                    message: message.into(),
                });
            }
        };
        check(
            !self.rules.evaluation_interval.is_zero(),
            "rules.evaluation_interval",
            "must be greater than zero",
        );
        check(
            self.rules.external_labels.iter().all(|pair| {
                pair.split_once('=')
                    .is_some_and(|(k, _)| crate::model::is_valid_label_name(k.trim()))
            }),
            "rules.external_labels",
            "each entry must be name=value with a valid label name",
        );
        check(
            self.alerting
                .alertmanagers
                .iter()
                .all(|u| u.starts_with("http://")),
            "alerting.alertmanagers",
            "each entry must be an http:// URL (TLS to Alertmanager is not supported yet)",
        );
        self.forward.check(&mut check);
        let r = &self.recommendations;
        check(
            !r.step.is_zero() && r.step <= r.window,
            "recommendations.step",
            "must be greater than zero and no longer than recommendations.window",
        );
        check(
            crate::recommend::Strategy::parse(&r.strategy).is_some(),
            "recommendations.strategy",
            "must be simple, simple_limit or vpa",
        );
        for (key, value) in [
            ("recommendations.cpu_percentile", r.cpu_percentile),
            (
                "recommendations.cpu_request_percentile",
                r.cpu_request_percentile,
            ),
            (
                "recommendations.cpu_limit_percentile",
                r.cpu_limit_percentile,
            ),
        ] {
            check(value > 0.0 && value <= 100.0, key, "must be in (0, 100]");
        }
        check(
            r.hpa_target_utilization_percentage > 0.0
                && r.hpa_target_utilization_percentage <= 100.0,
            "recommendations.hpa_target_utilization_percentage",
            "must be in (0, 100]",
        );
        check(
            r.backtest_train_fraction > 0.0 && r.backtest_train_fraction < 1.0,
            "recommendations.backtest_train_fraction",
            "must be between 0 and 1",
        );
        check(
            r.memory_buffer_percentage >= 0.0 && r.oom_memory_buffer_percentage >= 0.0,
            "recommendations.memory_buffer_percentage",
            "buffers must not be negative",
        );
        check(
            r.max_pods > 0 && r.max_steps > 0,
            "recommendations.max_pods",
            "max_pods and max_steps must be greater than zero",
        );
        check(
            self.sql.max_rows > 0 && !self.sql.timeout.is_zero() && self.sql.max_concurrent > 0,
            "sql.max_rows",
            "sql.max_rows, sql.timeout and sql.max_concurrent must be greater than zero",
        );
        check(
            self.sql.max_memory.as_usize() >= 1 << 20,
            "sql.max_memory",
            "must be at least 1MiB",
        );
        let c = &self.cache;
        check(
            !c.split_interval.is_zero() && !c.ttl.is_zero() && !c.redis_timeout.is_zero(),
            "cache.split_interval",
            "cache.split_interval, cache.ttl and cache.redis_timeout must be greater than zero",
        );
        check(
            c.redis_url.is_empty()
                || c.redis_url.starts_with("redis://")
                || c.redis_url.starts_with("unix://"),
            "cache.redis_url",
            "must be empty or a redis:// or unix:// URL",
        );
        check(
            self.alerting.queue_capacity > 0,
            "alerting.queue_capacity",
            "must be greater than zero",
        );
        check(
            !self.storage.block_duration.is_zero(),
            "storage.block_duration",
            "must be greater than zero",
        );
        check(
            self.server.tls_cert_file.is_some() == self.server.tls_key_file.is_some(),
            "server.tls_cert_file",
            "server.tls_cert_file and server.tls_key_file go together",
        );
        if let Err(message) = crate::api::auth::Authenticator::from_config(&self.auth) {
            check(false, "auth", &message);
        }
        check(
            self.storage.retention >= self.storage.block_duration,
            "storage.retention",
            "must be at least storage.block_duration",
        );
        check(
            !self.storage.maintenance_interval.is_zero(),
            "storage.maintenance_interval",
            "must be greater than zero",
        );
        check(
            self.wal.segment_size.0 >= 1 << 20,
            "wal.segment_size",
            "must be at least 1MiB",
        );
        check(
            self.wal.fsync != FsyncPolicy::Interval || !self.wal.fsync_interval.is_zero(),
            "wal.fsync_interval",
            "must be greater than zero when wal.fsync = \"interval\"",
        );
        check(
            self.limits.max_body_size.0 >= 1024,
            "limits.max_body_size",
            "must be at least 1KiB",
        );
        for (key, value) in [
            (
                "limits.max_series_per_request",
                self.limits.max_series_per_request,
            ),
            (
                "limits.max_labels_per_series",
                self.limits.max_labels_per_series,
            ),
            (
                "limits.max_label_name_length",
                self.limits.max_label_name_length,
            ),
            (
                "limits.max_label_value_length",
                self.limits.max_label_value_length,
            ),
        ] {
            check(value > 0, key, "must be greater than zero");
        }
        check(
            !self.query.lookback_delta.is_zero(),
            "query.lookback_delta",
            "must be greater than zero",
        );
        check(
            self.query.max_concurrent > 0,
            "query.max_concurrent",
            "must be greater than zero",
        );
        check(
            !self.query.timeout.is_zero(),
            "query.timeout",
            "must be greater than zero",
        );
        check(
            self.logs.partition >= Duration::from_secs(60),
            "logs.partition",
            "must be at least 1m",
        );
        check(
            self.logs.retention >= self.logs.partition,
            "logs.retention",
            "must be at least logs.partition",
        );
        check(
            !self.logs.commit_interval.is_zero(),
            "logs.commit_interval",
            "must be greater than zero",
        );
        check(
            self.logs.writer_memory.0 >= 16 << 20,
            "logs.writer_memory",
            "must be at least 16MiB (tantivy's minimum indexing budget)",
        );
        check(
            crate::model::log::valid_index_name(&self.logs.otlp_index).is_ok(),
            "logs.otlp_index",
            "must be a valid index name (lowercase, no spaces or \\/*?\"<>|,#:)",
        );
        for (key, value) in [
            ("logs.max_result_window", self.logs.max_result_window),
            ("logs.max_buckets", self.logs.max_buckets as usize),
            ("logs.max_bulk_documents", self.logs.max_bulk_documents),
            ("logs.max_fields_per_index", self.logs.max_fields_per_index),
            ("logs.keyword_ignore_above", self.logs.keyword_ignore_above),
            ("logs.max_query_depth", self.logs.max_query_depth),
            (
                "limits.max_items_per_request",
                self.limits.max_items_per_request,
            ),
            ("logs.max_msearch_searches", self.logs.max_msearch_searches),
            ("logs.max_tail_subscribers", self.logs.max_tail_subscribers),
            ("logs.max_indices", self.logs.max_indices),
            (
                "query.max_expression_depth",
                self.query.max_expression_depth,
            ),
        ] {
            check(value > 0, key, "must be greater than zero");
        }
        check(
            self.traces.max_head_spans > 0,
            "traces.max_head_spans",
            "must be greater than zero",
        );
        check(
            !self.traces.block_age.is_zero(),
            "traces.block_age",
            "must be greater than zero",
        );
        check(
            !self.traces.span_metrics_interval.is_zero(),
            "traces.span_metrics_interval",
            "must be greater than zero",
        );
        check(
            self.traces
                .span_metrics_buckets_ms
                .windows(2)
                .all(|w| w[0] < w[1])
                && self
                    .traces
                    .span_metrics_buckets_ms
                    .iter()
                    .all(|b| b.is_finite()),
            "traces.span_metrics_buckets_ms",
            "must be finite and strictly increasing",
        );
        check(
            self.traces.span_metrics_max_series > 0,
            "traces.span_metrics_max_series",
            "must be greater than zero",
        );
        check(
            self.traces.max_search_traces > 0,
            "traces.max_search_traces",
            "must be greater than zero",
        );
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            check(false, "log.level", &format!("invalid filter: {err}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(problems))
        }
    }
}

/// Parse an environment value as a TOML value (`30`, `true`, `"x"`), else a string.
fn parse_env_value(raw: &str) -> toml_edit::Value {
    match raw.parse::<toml_edit::Value>() {
        Ok(value) if !matches!(value, toml_edit::Value::InlineTable(_)) => value,
        _ => toml_edit::Value::from(raw),
    }
}

/// Merge a user file into `merged`, recording unknown keys and bad values with
/// their line and column.
fn merge_file(path: &Path, schema: &DocumentMut, merged: &mut DocumentMut, out: &mut Vec<Problem>) {
    let display = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            out.push(Problem {
                location: display,
                key: String::new(),
                message: format!("cannot read file: {err}"),
            });
            return;
        }
    };
    let doc = match toml_edit::Document::parse(text.as_str()) {
        Ok(doc) => doc,
        Err(err) => {
            let at = err
                .span()
                .map(|span| line_col(&text, span.start))
                .unwrap_or((1, 1));
            out.push(Problem {
                location: format!("{display}:{}:{}", at.0, at.1),
                key: String::new(),
                message: format!("syntax error: {}", err.message()),
            });
            return;
        }
    };
    let mut leaves = Vec::new();
    collect_leaves(doc.as_table(), &mut Vec::new(), &mut leaves);
    for (path, span_start, item) in leaves {
        let (line, col) = line_col(&text, span_start);
        let location = format!("{display}:{line}:{col}");
        match item.as_value() {
            Some(value) => set_checked(schema, merged, &path, value.clone(), &location, out),
            None => out.push(Problem {
                location,
                key: path.join("."),
                message: "expected a value".into(),
            }),
        }
    }
}

/// Every non-table item of `table`, with its dotted path and byte offset
/// (inline tables are flattened and take the offset of their key).
fn collect_leaves(
    table: &toml_edit::Table,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, usize, Item)>,
) {
    for (key, item) in table.iter() {
        prefix.push(key.to_owned());
        let offset = table
            .key(key)
            .and_then(|k| k.span())
            .map(|s| s.start)
            .unwrap_or(0);
        match item {
            Item::Table(sub) => collect_leaves(sub, prefix, out),
            // `[[auth.users]]` is the same value as `users = [{…}, …]`.
            Item::ArrayOfTables(tables) => out.push((
                prefix.clone(),
                offset,
                Item::Value(toml_edit::Value::Array(tables.clone().into_array())),
            )),
            Item::Value(toml_edit::Value::InlineTable(inline)) => {
                let mut nested = Vec::new();
                collect_leaves(&inline.clone().into_table(), prefix, &mut nested);
                out.extend(
                    nested
                        .into_iter()
                        .map(|(path, _, item)| (path, offset, item)),
                );
            }
            _ => out.push((prefix.clone(), offset, item.clone())),
        }
        prefix.pop();
    }
}

fn lookup<'a>(table: &'a toml_edit::Table, path: &[String]) -> Option<&'a Item> {
    let (first, rest) = path.split_first()?;
    let item = table.get(first)?;
    if rest.is_empty() {
        Some(item)
    } else {
        lookup(item.as_table()?, rest)
    }
}

/// Set `path` to `value` in `merged` if the key exists in the schema and the
/// value deserializes; otherwise record why not.
fn set_checked(
    schema: &DocumentMut,
    merged: &mut DocumentMut,
    path: &[String],
    value: toml_edit::Value,
    location: &str,
    out: &mut Vec<Problem>,
) {
    let key = path.join(".");
    let known = lookup(schema.as_table(), path).is_some_and(|item| item.is_value());
    if !known {
        let section_known = path.len() > 1
            && lookup(schema.as_table(), &path[..path.len() - 1]).is_some_and(Item::is_table);
        let message = if section_known {
            format!("unknown key; known keys in [{}] are {}", path[0], {
                let table = schema[path[0].as_str()].as_table().expect("section");
                table.iter().map(|(k, _)| k).collect::<Vec<_>>().join(", ")
            })
        } else {
            let sections: Vec<&str> = schema.as_table().iter().map(|(k, _)| k).collect();
            format!("unknown key; sections are {}", sections.join(", "))
        };
        out.push(Problem {
            location: location.into(),
            key,
            message,
        });
        return;
    }
    // Try the value alone over the default, so each bad value is reported once.
    let mut trial = schema.clone();
    set_path(&mut trial, path, value.clone());
    match toml::from_str::<Config>(&trial.to_string()) {
        Ok(_) => set_path(merged, path, value),
        Err(err) => out.push(Problem {
            location: location.into(),
            key,
            message: err.message().to_owned(),
        }),
    }
}

fn set_path(doc: &mut DocumentMut, path: &[String], value: toml_edit::Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut table = doc.as_table_mut();
    for part in parents {
        table = table[part.as_str()]
            .as_table_mut()
            .expect("schema checked the parent is a table");
    }
    let decorated = value.decorated(" ", "");
    table[last.as_str()] = Item::Value(decorated);
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oxeye.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&ConfigSources {
            file: Some(path),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: vec![],
        })
    }

    #[test]
    fn embedded_default_is_valid() {
        let config = Config::load(&ConfigSources::default()).unwrap();
        assert_eq!(config.server.otlp_grpc.port(), 4317);
        assert_eq!(config.limits.max_body_size.0, 32 << 20);
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "[storage]\nretention = \"banana\"\nnope = 1\n\n[limits]\nmax_labels_per_series = \"x\"\n[what]\na = 1\n";
        let errors = load_text(text, &[]).unwrap_err().0;
        let lines: Vec<String> = errors.iter().map(|p| p.to_string()).collect();
        assert_eq!(errors.len(), 4, "{lines:#?}");
        assert!(
            lines[0].contains(":2:1: `storage.retention`"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains(":3:1: `storage.nope`: unknown key"));
        assert!(lines[2].contains(":6:1: `limits.max_labels_per_series`"));
        assert!(lines[3].contains(":8:1: `what.a`: unknown key"));
    }

    #[test]
    fn environment_overrides_file() {
        let config = load_text(
            "[storage]\nretention = \"1d\"\n",
            &[
                ("OXEYE_STORAGE__RETENTION", "30d"),
                ("OXEYE_LIMITS__MAX_EXEMPLARS", "7"),
                ("UNRELATED", "1"),
            ],
        )
        .unwrap();
        assert_eq!(config.storage.retention, Duration::from_secs(30 * 86400));
        assert_eq!(config.limits.max_exemplars, 7);
    }

    #[test]
    fn unknown_environment_key_is_an_error() {
        let errors = load_text("", &[("OXEYE_STORAGE__RETENTOIN", "1d")])
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1);
        assert!(errors[0].location.contains("OXEYE_STORAGE__RETENTOIN"));
    }

    #[test]
    fn cross_field_validation() {
        let errors = load_text(
            "[storage]\nretention = \"1h\"\nblock_duration = \"2h\"\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].key, "storage.retention");
    }

    #[test]
    fn shipped_example_configs_parse() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&ConfigSources {
                    file: Some(path.clone()),
                    ..Default::default()
                })
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
}
