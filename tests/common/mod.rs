//! Helpers shared by the black-box tests: a real server on 127.0.0.1:0 with
//! its own data directory, and small clients.
#![allow(dead_code)]

pub mod k8s;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxeye::config::{Config, ConfigSources};

/// Metrics retention for tests that write fixed (2023) timestamps.
pub const FIXED_TIME_RETENTION: &str = "36500d";

/// An in-process server; shut down (and its data kept until drop) on drop.
pub struct TestServer {
    pub http: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub elasticsearch: SocketAddr,
    pub postgres: SocketAddr,
    pub dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<oxeye::RunningServer>,
}

/// Loopback config with every port 0 and the given extra `(key, value)` overrides.
pub fn config(data: &Path, overrides: &[(&str, &str)]) -> Config {
    let mut env: Vec<(String, String)> = vec![
        ("OXEYE_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        ("OXEYE_SERVER__OTLP_GRPC".into(), "127.0.0.1:0".into()),
        ("OXEYE_SERVER__OTLP_HTTP".into(), "127.0.0.1:0".into()),
        ("OXEYE_SERVER__ELASTICSEARCH".into(), "127.0.0.1:0".into()),
        ("OXEYE_SERVER__POSTGRES".into(), "127.0.0.1:0".into()),
        ("OXEYE_STORAGE__DATA_DIR".into(), data.display().to_string()),
        // Many tests write fixed timestamps from November 2023: keep them
        // inside the metrics retention window (samples older than it are
        // rejected).
        (
            "OXEYE_STORAGE__RETENTION".into(),
            FIXED_TIME_RETENTION.into(),
        ),
    ];
    for (key, value) in overrides {
        env.push((key.to_string(), value.to_string()));
    }
    Config::load(&ConfigSources {
        file: None,
        env,
        flags: vec![],
    })
    .expect("test config is valid")
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    pub fn start_with(overrides: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, overrides)
    }

    pub fn start_in(dir: tempfile::TempDir, overrides: &[(&str, &str)]) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = config(dir.path(), overrides);
        let server = runtime
            .block_on(oxeye::start(config))
            .expect("server starts");
        TestServer {
            http: server.http_addr,
            otlp_grpc: server.otlp_grpc_addr,
            otlp_http: server.otlp_http_addr,
            elasticsearch: server.elasticsearch_addr,
            postgres: server.postgres_addr,
            dir,
            runtime: Some(runtime),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Shut down gracefully and hand back the data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    fn shutdown(&mut self) {
        if let (Some(runtime), Some(server)) = (self.runtime.take(), self.server.take()) {
            runtime.block_on(server.shutdown()).expect("clean shutdown");
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap()
}

/// One series for [`remote_write_body`]: labels and `(t, v)` samples.
pub type TestSeries<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

/// A snappy-compressed remote_write body with one TimeSeries per entry.
pub fn remote_write_body(series: &[TestSeries<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (labels, samples) in series {
        oxeye::ingest::remote_write::encode::timeseries(&mut body, labels, samples);
    }
    snap::raw::Encoder::new().compress_vec(&body).unwrap()
}

pub fn post_remote_write(base: &str, body: Vec<u8>) -> (u16, String) {
    let response = client()
        .post(format!("{base}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().unwrap())
}

pub fn get_json(url: &str) -> serde_json::Value {
    let response = client().get(url).send().unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {status}: {e}: {text}"))
}

/// Raw samples of every series matching `selector`, from `/api/v1/export`.
pub fn export(base: &str, selector: &str) -> Vec<(serde_json::Value, Vec<(i64, f64)>)> {
    let response = client()
        .get(format!("{base}/api/v1/export"))
        .query(&[("match[]", selector)])
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{:?}", response.status());
    response
        .text()
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let values = v["values"].as_array().unwrap();
            let timestamps = v["timestamps"].as_array().unwrap();
            let samples = timestamps
                .iter()
                .zip(values)
                .map(|(t, v)| {
                    (
                        t.as_i64().unwrap(),
                        v.as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect();
            (v["metric"].clone(), samples)
        })
        .collect()
}

/// Poll `check` every 200ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A child process killed on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's redis-server on a free loopback port, without persistence,
/// killed on drop.
pub fn start_redis(dir: &Path) -> (ChildGuard, u16) {
    let port = free_port();
    (start_redis_on(dir, port), port)
}

/// [`start_redis`] on a given port (to restart one).
pub fn start_redis_on(dir: &Path, port: u16) -> ChildGuard {
    let guard = ChildGuard(
        Command::new(require_program("redis-server"))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "redis-server did not start");
    guard
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The python interpreter the test scripts run with.
pub fn python() -> String {
    std::env::var("OXEYE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Run a test script from tests/python with the given environment; panics with its output on failure.
pub fn run_python(script: &str, env: &[(&str, String)]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let checked = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/checked.py");
    let output = Command::new(python())
        .arg(&checked)
        .arg(&path)
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .env("NO_PROXY", "127.0.0.1,localhost")
        // `assert` statements are the scripts' checks: never optimise them away.
        .env_remove("PYTHONOPTIMIZE")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}); run scripts/test to install the Python clients\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // Every assert statement of the script ran (checked.py counts them).
    let report = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("OXEYE_CHECKS "))
        .unwrap_or_else(|| panic!("{script}: no check report from checked.py\nstderr:\n{stderr}"));
    assert!(
        report.ends_with("unrun=-"),
        "{script}: assert statements that never ran: {report}"
    );
    eprintln!("{script}: {report}");
    stdout
}

/// Require a program on PATH (installed by scripts/test).
pub fn require_program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| panic!("{name} is not installed; run scripts/test, which installs it"))
}

/// Data-segment limit (RLIMIT_DATA, which covers anonymous mappings) for
/// [`spawn_binary`] servers, in KiB: an allocation bomb aborts the server
/// instead of swapping, and the test sees the process gone.
pub const DATA_LIMIT_KIB: u64 = 3 * 1024 * 1024;
/// Resident memory a [`BinaryServer`] may have after any one request.
pub const MAX_RSS_KIB: u64 = 1024 * 1024;

/// The real binary as a child process under `ulimit -d`, killed on drop.
pub struct BinaryServer {
    pub guard: ChildGuard,
    pub base: String,
    pub es: String,
    pub log: PathBuf,
}

pub fn spawn_binary(data: &Path) -> BinaryServer {
    spawn_binary_with(data, &[])
}

pub fn spawn_binary_with(data: &Path, env: &[(&str, &str)]) -> BinaryServer {
    let port = free_port();
    let es_port = free_port();
    let log = data.with_extension("log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new("sh");
    // The test's own settings (OXEYE_SCREENSHOTS, …) are not the server's:
    // every OXEYE_* variable would be read as configuration.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OXEYE_") {
            command.env_remove(key);
        }
    }
    let child = command
        .arg("-c")
        .arg(format!("ulimit -d {DATA_LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_oxeye"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(data)
        .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
        .args(["--elasticsearch", &format!("127.0.0.1:{es_port}")])
        .args(["--postgres", "127.0.0.1:0"])
        .env("OXEYE_LOGS__COMMIT_INTERVAL", "200ms")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut server = BinaryServer {
        guard: ChildGuard(child),
        base: format!("http://127.0.0.1:{port}"),
        es: format!("http://127.0.0.1:{es_port}"),
        log,
    };
    let ready = wait_for(Duration::from_secs(60), || {
        server.assert_running("start-up");
        client()
            .get(format!("{}/-/ready", server.base))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    });
    assert!(ready.is_some(), "oxeye not ready");
    server
}

impl BinaryServer {
    pub fn assert_running(&mut self, after: &str) {
        if let Ok(Some(status)) = self.guard.0.try_wait() {
            panic!(
                "oxeye died after {after} ({status}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.guard.0.id()))
            .expect("server process status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// After a request: alive, healthy, bounded memory.
    pub fn check_alive(&mut self, what: &str) {
        self.assert_running(what);
        let health = client().get(format!("{}/-/healthy", self.base)).send();
        assert!(
            health.is_ok_and(|r| r.status().is_success()),
            "not healthy after {what}"
        );
        let rss = self.rss_kib();
        assert!(
            rss < MAX_RSS_KIB,
            "RSS {rss} KiB after {what} (limit {MAX_RSS_KIB})"
        );
    }
}

/// The real node_exporter scraped by the real Prometheus (Debian's), both on
/// free loopback ports, until dropped.
pub struct NodeAndPrometheus {
    pub node_port: u16,
    pub prom_port: u16,
    /// Prometheus' stderr.
    pub log: PathBuf,
    _node: ChildGuard,
    _prom: ChildGuard,
}

impl NodeAndPrometheus {
    /// `config(node_port, prom_port)` is Prometheus' YAML configuration.
    pub fn start(work: &Path, config: impl FnOnce(u16, u16) -> String) -> NodeAndPrometheus {
        let prometheus = require_program("prometheus");
        let node_exporter = require_program("prometheus-node-exporter");
        let node_port = free_port();
        let node = ChildGuard(
            Command::new(node_exporter)
                .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let prom_port = free_port();
        let config_path = work.join("prometheus.yml");
        std::fs::write(&config_path, config(node_port, prom_port)).unwrap();
        let log = work.join("prometheus.log");
        let prom = ChildGuard(
            Command::new(prometheus)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    work.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        NodeAndPrometheus {
            node_port,
            prom_port,
            log,
            _node: node,
            _prom: prom,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
