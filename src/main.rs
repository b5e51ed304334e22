//! The `oxeye` command: a thin shell around [`oxeye::start`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oxeye::config::{Config, ConfigSources, DEFAULT_CONFIG};

/// jemalloc instead of glibc's malloc: under a steady mixed load glibc's
/// per-thread arenas held twice the live heap and grew by ~3 GiB/h (issue
/// 10); jemalloc's background threads return freed pages on a decay timer.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "oxeye",
    version,
    about = "Self-hosted, all-in-one observability server: metrics, traces and logs in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Check a configuration file and report every problem with its location.
    CheckConfig {
        /// The TOML file to check (merged over the embedded default).
        file: PathBuf,
    },
    /// Check Prometheus rule files as `promtool check rules` does, without
    /// a server: every problem with its file, group and rule.
    CheckRules {
        /// Rule files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Ask a running server for recommendations.
    Recommend {
        #[command(subcommand)]
        what: Recommend,
    },
    /// Generate load over every ingest protocol (remote_write, OTLP
    /// metrics/traces/logs over gRPC and HTTP, Elasticsearch _bulk) and
    /// report what was acknowledged, latency and the server's CPU.
    Loadgen(LoadgenArgs),
    /// Run a SQL statement on a running server (POST /api/v1/sql) and
    /// print the answer: tables samples, series, metadata, metrics.<name>,
    /// spans, logs and the shipped views.
    Sql {
        /// The statement, e.g. "SELECT service, count(*) FROM spans GROUP BY service".
        query: String,
        #[command(flatten)]
        server: oxeye::recommend::cli::Server,
    },
    /// Saved dashboards on a running server: import Grafana's dashboard
    /// JSON files, export one, list them.
    Dashboards {
        #[command(subcommand)]
        what: Dashboards,
    },
    /// Print the argon2 hash of a password for `[[auth.users]] password_hash`
    /// (read from standard input, one line).
    HashPassword,
    /// Print the SHA-256 of a token for `[[auth.tokens]] token_sha256`
    /// (read from standard input, one line).
    HashToken,
}

#[derive(Subcommand)]
enum Dashboards {
    /// Save dashboard JSON files (as Grafana exports them) under their uid,
    /// replacing what is there (the old version stays in the history).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        server: oxeye::recommend::cli::Server,
    },
    /// Write a saved dashboard's JSON to FILE ("-" for standard output).
    Export {
        uid: String,
        #[arg(default_value = "-")]
        file: PathBuf,
        #[command(flatten)]
        server: oxeye::recommend::cli::Server,
    },
    /// List the saved dashboards whose title, uid or tags contain QUERY.
    List {
        #[arg(default_value = "")]
        query: String,
        #[command(flatten)]
        server: oxeye::recommend::cli::Server,
    },
}

#[derive(Subcommand)]
enum Recommend {
    /// Kubernetes requests, limits and autoscaling per workload container
    /// (KRR's JSON shape with --format json).
    Workloads {
        #[command(flatten)]
        server: oxeye::recommend::cli::Server,
        #[arg(long, short)]
        namespace: Option<String>,
        /// Only this workload (Deployment, StatefulSet, … name).
        #[arg(long, short)]
        workload: Option<String>,
        /// simple (KRR), simple_limit or vpa.
        #[arg(long, short)]
        strategy: Option<String>,
        /// History to look at, e.g. 14d (the server's default otherwise).
        #[arg(long)]
        window: Option<String>,
        /// Resolution, e.g. 75s.
        #[arg(long)]
        step: Option<String>,
        /// End of the window (RFC 3339 or Unix seconds); now by default.
        #[arg(long)]
        time: Option<String>,
    },
    /// Slow queries, N+1 queries and HTTP calls, query templates and index
    /// candidates from the stored database and HTTP client spans.
    Database(SpanArgs),
    /// Cache opportunities (hit-ratio curves, TTL advice) from database
    /// reads, and existing Redis caches' hit ratios, from the stored spans.
    Cache(SpanArgs),
}

#[derive(clap::Args)]
struct SpanArgs {
    #[command(flatten)]
    server: oxeye::recommend::cli::Server,
    /// Only this service's calls.
    #[arg(long)]
    service: Option<String>,
    /// Start of the range (RFC 3339 or Unix seconds); end - 1h by default.
    #[arg(long)]
    start: Option<String>,
    /// End of the range; now by default.
    #[arg(long)]
    end: Option<String>,
}

impl SpanArgs {
    fn params(
        self,
    ) -> (
        oxeye::recommend::cli::Server,
        Vec<(&'static str, Option<String>)>,
    ) {
        let params = vec![
            ("service", self.service),
            ("start", self.start),
            ("end", self.end),
        ];
        (self.server, params)
    }
}

#[derive(clap::Args)]
struct LoadgenArgs {
    /// Oxeye's HTTP base URL (remote_write, OTLP/HTTP, its /metrics).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    url: String,
    /// OTLP/HTTP base URL (the --url by default).
    #[arg(long)]
    otlp_http: Option<String>,
    /// OTLP/gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    otlp_grpc: String,
    /// Elasticsearch-compatible base URL.
    #[arg(long, default_value = "http://127.0.0.1:9200")]
    elasticsearch: String,
    /// Protocols, comma-separated: remote_write, otlp-grpc-metrics,
    /// otlp-http-metrics, otlp-grpc-traces, otlp-http-traces,
    /// otlp-grpc-logs, otlp-http-logs, es-bulk, or the groups all,
    /// metrics, traces, logs.
    #[arg(long, default_value = "remote_write")]
    protocol: String,
    /// Items (samples, spans, records) per second per protocol; 0 sends
    /// as fast as the server answers.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// How long to run (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Stop after this many items per protocol.
    #[arg(long)]
    items: Option<u64>,
    /// Items per request.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// Active series (cardinality) of the metric protocols.
    #[arg(long, default_value_t = 10_000)]
    series: u64,
    /// Services the spans and log records come from.
    #[arg(long, default_value_t = 10)]
    services: u64,
    /// Share of the series replaced every --churn-interval (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    churn_interval: std::time::Duration,
    /// Write metric history instead: samples from this long ago up to now,
    /// one per series every --interval (e.g. --backfill 24h --interval 15s),
    /// one request at a time (in order per series).
    #[arg(long, value_parser = humantime::parse_duration)]
    backfill: Option<std::time::Duration>,
    /// remote_write the series of this Prometheus text exposition (a saved
    /// /metrics page, e.g. node_exporter's) instead of generated ones.
    #[arg(long)]
    series_from: Option<PathBuf>,
    /// Labels added to --series-from series, as a scraper adds them:
    /// name=value pairs, comma-separated (e.g. job=node,instance=host:9100).
    #[arg(long, default_value = "")]
    series_labels: String,
    /// Sample interval of --backfill.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    interval: std::time::Duration,
    /// Requests in flight per protocol.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Marks every item of the run (`run` label/attribute); random by default.
    #[arg(long)]
    run_id: Option<String>,
    /// Index of the `_bulk` records.
    #[arg(long, default_value = "loadgen")]
    index: String,
    /// Bearer token for a server with `[auth]`.
    #[arg(long, env = "OXEYE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// table (default) or json.
    #[arg(long, default_value = "table")]
    format: String,
    /// No progress line on standard error.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Configuration file, merged over the embedded default.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address of the HTTP listener (every HTTP API and the UI).
    #[arg(long)]
    listen: Option<String>,
    /// Data directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address of the OTLP/gRPC listener.
    #[arg(long)]
    otlp_grpc: Option<String>,
    /// Address of the OTLP/HTTP listener.
    #[arg(long)]
    otlp_http: Option<String>,
    /// Address of the Elasticsearch-compatible listener.
    #[arg(long)]
    elasticsearch: Option<String>,
    /// Address of the PostgreSQL wire protocol listener (SQL).
    #[arg(long)]
    postgres: Option<String>,
    /// Allow listeners beyond loopback without credentials.
    #[arg(long)]
    insecure_listen: bool,
}

impl ServeArgs {
    fn sources(&self) -> ConfigSources {
        let mut sources = ConfigSources::from_process(self.config.clone());
        let mut flag = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                sources
                    .flags
                    .push((key.to_owned(), toml_edit::Value::from(value)));
            }
        };
        flag("server.listen", self.listen.clone());
        flag("server.otlp_grpc", self.otlp_grpc.clone());
        flag("server.otlp_http", self.otlp_http.clone());
        flag("server.elasticsearch", self.elasticsearch.clone());
        flag("server.postgres", self.postgres.clone());
        flag(
            "storage.data_dir",
            self.data.as_ref().map(|d| d.display().to_string()),
        );
        if self.insecure_listen {
            sources.flags.push((
                "server.insecure_listen".into(),
                toml_edit::Value::from(true),
            ));
        }
        sources
    }
}

fn loadgen(args: LoadgenArgs) -> ExitCode {
    let fail = |err: String| {
        eprintln!("oxeye loadgen: {err}");
        ExitCode::FAILURE
    };
    let protocols = match oxeye::loadgen::Protocol::parse_list(&args.protocol) {
        Ok(p) => p,
        Err(err) => return fail(err),
    };
    if args.format != "table" && args.format != "json" {
        return fail(format!("--format {:?}: table or json", args.format));
    }
    let run_id = args.run_id.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("run-{:08x}", nanos ^ std::process::id())
    });
    let template = match &args.series_from {
        None => None,
        Some(path) => {
            let extra: Vec<(String, String)> = args
                .series_labels
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| oxeye::loadgen::exposition::parse(&text, &extra));
            match parsed {
                Ok(series) => Some(std::sync::Arc::new(series)),
                Err(err) => {
                    eprintln!("oxeye loadgen: --series-from {}: {err}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let options = oxeye::loadgen::Options {
        otlp_http: args.otlp_http.unwrap_or_else(|| args.url.clone()),
        url: args.url,
        otlp_grpc: args.otlp_grpc,
        elasticsearch: args.elasticsearch,
        protocols,
        rate: args.rate,
        duration: args.duration,
        items: args.items,
        batch: args.batch,
        series: args.series,
        services: args.services,
        churn: args.churn,
        churn_interval: args.churn_interval,
        backfill: args.backfill,
        interval: args.interval,
        template,
        concurrency: args.concurrency,
        run_id,
        index: args.index,
        token: args.token,
        timeout: args.timeout,
        progress: !args.quiet,
    };
    match oxeye::loadgen::run(options) {
        Ok(report) => {
            if args.format == "json" {
                println!("{report:#}");
            } else {
                print!("{}", oxeye::loadgen::render(&report));
            }
            if oxeye::loadgen::clean(&report) {
                ExitCode::SUCCESS
            } else {
                eprintln!("oxeye loadgen: not every item was acknowledged (see the report)");
                ExitCode::from(2)
            }
        }
        Err(err) => fail(err),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
        Command::CheckConfig { file } => {
            match Config::load(&ConfigSources::from_process(Some(file.clone()))) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprint!("{errors}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckRules { files } => {
            let mut failed = false;
            for file in &files {
                println!("Checking {}", file.display());
                match oxeye::rules::file::load_file(file) {
                    Ok(groups) => {
                        let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
                        for (name, n) in oxeye::rules::file::duplicates(&groups) {
                            println!("  WARNING: rule \"{name}\" is defined {n} times with the same expression and labels");
                        }
                        println!("  SUCCESS: {rules} rules found");
                    }
                    Err(errors) => {
                        failed = true;
                        println!("  FAILED:");
                        for line in &errors.0 {
                            println!("{line}");
                        }
                    }
                }
                println!();
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Recommend { what } => {
            use oxeye::recommend::cli::{self, What};
            let (what, (server, params)) = match what {
                Recommend::Workloads {
                    server,
                    namespace,
                    workload,
                    strategy,
                    window,
                    step,
                    time,
                } => (
                    What::Workloads,
                    (
                        server,
                        vec![
                            ("namespace", namespace),
                            ("workload", workload),
                            ("strategy", strategy),
                            ("window", window),
                            ("step", step),
                            ("time", time),
                        ],
                    ),
                ),
                Recommend::Database(a) => (What::Database, a.params()),
                Recommend::Cache(a) => (What::Cache, a.params()),
            };
            match cli::run(&server, what, &params) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("oxeye recommend {}: {err}", what.name());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sql { query, server } => match oxeye::query::sql::cli::run(&server, &query) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("oxeye sql: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Dashboards { what } => {
            use oxeye::dashboards::cli;
            let result = match what {
                Dashboards::Import { files, server } => cli::import(&server, &files),
                Dashboards::Export { uid, file, server } => cli::export(&server, &uid, &file),
                Dashboards::List { query, server } => cli::list(&server, &query),
            };
            match result {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("oxeye dashboards: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::DefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            ExitCode::SUCCESS
        }
        Command::Loadgen(args) => loadgen(args),
        command @ (Command::HashPassword | Command::HashToken) => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() || line.trim().is_empty() {
                eprintln!("expected the secret on standard input (one line)");
                return ExitCode::FAILURE;
            }
            let secret = line.trim_end_matches(['\r', '\n']);
            if matches!(command, Command::HashToken) {
                println!("{}", oxeye::api::auth::hash_token(secret));
                return ExitCode::SUCCESS;
            }
            match oxeye::api::auth::hash_password(secret) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("cannot hash: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match Config::load(&args.sources()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking threads outlive a rule group's interval, so per-thread
        // caches (compiled regexes) stay warm between evaluations.
        .thread_keep_alive(std::time::Duration::from_secs(300))
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let server = oxeye::start(config).await?;
        // SIGHUP re-reads the rule files (a broken file keeps the old rules).
        #[cfg(unix)]
        {
            let rules = server.state.rules.clone();
            if let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        match rules.reload() {
                            Ok(groups) => tracing::info!(groups, "rule files reloaded"),
                            Err(e) => tracing::error!(error = %e, "rule reload failed; the previous rules keep running"),
                        }
                    }
                });
            }
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "oxeye stopped with an error");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
