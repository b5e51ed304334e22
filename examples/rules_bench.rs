//! Rule evaluation next to Prometheus: the same rule file (1,000 recording
//! and 1,000 alerting rules in 10 groups) over the same 10,000 series, sent
//! to both with remote_write, evaluated by both on loopback in the same run.
//!
//! Prints, for each server: CPU-seconds per evaluation cycle (all 2,000
//! rules; from /proc, over the measured cycles only, after the data is
//! loaded), the summed last evaluation time of the groups (each server's
//! own `rule_group_last_duration_seconds`), and whether both recorded the
//! same values (a sample of recorded series compared).
//!
//! Every rule selects about 22 series (one job, instances by prefix); data
//! runs 8 minutes ahead so that both servers see full 5m windows.
//!
//! `cargo run --release --example rules_bench -- [CYCLES] [OXEYE_BINARY]`
//! (defaults: 6 cycles of 10 s, the release `oxeye` beside the example).
//! Needs `prometheus` (2.42, Debian) on PATH. Loopback only; bounded.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{cpu_seconds, free_port};

const JOBS: usize = 10;
const INSTANCES: usize = 500;
const CODES: [&str; 2] = ["200", "500"];
const STEP_MS: i64 = 15_000;
const HISTORY_MS: i64 = 20 * 60_000;
/// Data runs this far past the start, so that every evaluation's 5m window
/// is full on both servers whenever it runs (inside Oxeye's 10m
/// `limits.creation_grace_period`).
const AHEAD_MS: i64 = 8 * 60_000;
const GROUPS: usize = 10;
const RECORDS: usize = 1000;
const ALERTS: usize = 1000;
const INTERVAL_S: u64 = 10;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .no_proxy()
        .build()
        .unwrap()
}

fn rules_file() -> String {
    let mut out = String::from("groups:\n");
    for g in 0..GROUPS {
        out.push_str(&format!("  - name: bench{g}\n    rules:\n"));
        for i in (g..RECORDS).step_by(GROUPS) {
            let job = i % JOBS;
            let prefix = i % 50;
            out.push_str(&format!(
                "      - record: bench:requests:rate5m_{i}\n        expr: sum by (job, code) (rate(bench_requests_total{{job=\"j{job}\", instance=~\"i{prefix}.*\"}}[5m]))\n"
            ));
        }
        for i in (g..ALERTS).step_by(GROUPS) {
            let job = i % JOBS;
            let prefix = (i / JOBS) % 50;
            out.push_str(&format!(
                "      - alert: HighErrors{i}\n        expr: sum by (job, instance) (rate(bench_requests_total{{job=\"j{job}\", code=\"500\", instance=~\"i{prefix}.*\"}}[5m])) > {}\n        for: 5m\n        labels:\n          severity: page\n        annotations:\n          summary: \"{{{{ $labels.instance }}}} errors at {{{{ $value | humanize }}}}/s\"\n",
                0.5 + (i % 7) as f64 * 0.1
            ));
        }
    }
    out
}

/// Remote-write bodies holding every series' history up to `now`.
fn bodies(now: i64) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut raw = Vec::new();
    let mut in_body = 0;
    for job in 0..JOBS {
        for instance in 0..INSTANCES {
            for (c, code) in CODES.iter().enumerate() {
                let (j, i) = (format!("j{job}"), format!("i{instance}"));
                let labels = [
                    ("__name__", "bench_requests_total"),
                    ("job", j.as_str()),
                    ("instance", i.as_str()),
                    ("code", code),
                ];
                let per_step = 1.0 + ((instance * 7 + c * 13) % 17) as f64;
                let samples: Vec<(i64, f64)> = (0..=(HISTORY_MS + AHEAD_MS) / STEP_MS)
                    .map(|k| {
                        let t = now - HISTORY_MS + k * STEP_MS;
                        (t, k as f64 * per_step)
                    })
                    .collect();
                oxeye::ingest::remote_write::encode::timeseries(&mut raw, &labels, &samples);
                in_body += 1;
                if in_body == 200 {
                    bodies.push(snap::raw::Encoder::new().compress_vec(&raw).unwrap());
                    raw.clear();
                    in_body = 0;
                }
            }
        }
    }
    if !raw.is_empty() {
        bodies.push(snap::raw::Encoder::new().compress_vec(&raw).unwrap());
    }
    bodies
}

fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if client()
            .get(url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} not ready");
}

fn load(base: &str, bodies: &[Vec<u8>]) {
    let http = client();
    for body in bodies {
        let response = http
            .post(format!("{base}/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.clone())
            .send()
            .unwrap();
        assert!(
            response.status().is_success(),
            "{base}: {}",
            response.status()
        );
    }
}

fn metric_sum(base: &str, prefix: &str) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn query(base: &str, q: &str) -> Vec<(String, String)> {
    let body: serde_json::Value = client()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut rows: Vec<(String, String)> = body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["metric"].to_string(),
                r["value"][1].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

struct Outcome {
    cpu_per_cycle: f64,
    group_seconds: f64,
    recorded: Vec<(String, String)>,
    alerts: usize,
}

fn measure(name: &str, base: &str, pid: u32, cycles: u64, duration_metric: &str) -> Outcome {
    // Two cycles to settle (first evaluations, restore), then measure.
    std::thread::sleep(Duration::from_secs(2 * INTERVAL_S));
    let cpu0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(cycles * INTERVAL_S));
    let cpu = cpu_seconds(pid) - cpu0;
    let group_seconds = metric_sum(base, duration_metric);
    let recorded = query(base, "bench:requests:rate5m_7");
    let alerts = query(base, "count(ALERTS)")
        .first()
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .unwrap_or(0.0) as usize;
    eprintln!("{name}: measured");
    Outcome {
        cpu_per_cycle: cpu / cycles as f64,
        group_seconds,
        recorded,
        alerts,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cycles: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(6)
        .clamp(1, 60);
    let binary = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("oxeye")
    });
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, rules_file()).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let bodies = bodies(now);
    eprintln!(
        "{} series, {} rules; loading…",
        JOBS * INSTANCES * CODES.len(),
        RECORDS + ALERTS
    );

    // Prometheus 2.42.
    let prom_port = free_port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global: {{scrape_interval: 15s, evaluation_interval: {INTERVAL_S}s}}\nrule_files: [\"{}\"]\nscrape_configs: []\n",
            rules.display()
        ),
    )
    .unwrap();
    let prom = spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn"),
        &dir.path().join("prom.log"),
    );
    let prom_base = format!("http://127.0.0.1:{prom_port}");
    wait_ready(&format!("{prom_base}/-/ready"));
    load(&prom_base, &bodies);
    let prom_out = measure(
        "prometheus",
        &prom_base,
        prom.0.id(),
        cycles,
        "prometheus_rule_group_last_duration_seconds{",
    );
    drop(prom);

    // Oxeye.
    let port = free_port();
    let files = format!("[\"{}\"]", rules.display());
    let oxeye = spawn(
        Command::new(&binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(dir.path().join("oxeye"))
            .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
            .args(["--elasticsearch", "127.0.0.1:0"])
            .args(["--postgres", "127.0.0.1:0"])
            .env("OXEYE_RULES__FILES", files)
            .env("OXEYE_RULES__EVALUATION_INTERVAL", format!("{INTERVAL_S}s"))
            .env("OXEYE_LOG__LEVEL", "warn"),
        &dir.path().join("oxeye.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/-/ready"));
    load(&base, &bodies);
    let ox_out = measure(
        "oxeye",
        &base,
        oxeye.0.id(),
        cycles,
        "oxeye_rule_group_last_duration_seconds{",
    );
    drop(oxeye);

    println!("rules bench: {} rules in {GROUPS} groups every {INTERVAL_S}s over {} series, {cycles} measured cycles", RECORDS + ALERTS, JOBS * INSTANCES * CODES.len());
    println!(
        "{:<12} {:>16} {:>22} {:>10}",
        "server", "CPU-s per cycle", "sum of group eval (s)", "ALERTS"
    );
    for (name, o) in [("prometheus", &prom_out), ("oxeye", &ox_out)] {
        println!(
            "{name:<12} {:>16.3} {:>22.3} {:>10}",
            o.cpu_per_cycle, o.group_seconds, o.alerts
        );
    }
    println!(
        "oxeye/prometheus CPU per cycle: {:.2}x; evaluation time: {:.2}x",
        ox_out.cpu_per_cycle / prom_out.cpu_per_cycle,
        ox_out.group_seconds / prom_out.group_seconds
    );
    let agree = prom_out.recorded.len() == ox_out.recorded.len()
        && prom_out
            .recorded
            .iter()
            .zip(&ox_out.recorded)
            .all(|((lp, vp), (lo, vo))| {
                lp == lo
                    && match (vp.parse::<f64>(), vo.parse::<f64>()) {
                        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                        _ => vp == vo,
                    }
            });
    println!(
        "recorded series bench:requests:rate5m_7: {} vs {} rows, {}",
        prom_out.recorded.len(),
        ox_out.recorded.len(),
        if agree {
            "values agree"
        } else {
            "VALUES DIFFER"
        }
    );
    if !agree {
        println!(
            "prometheus: {:?}\noxeye:      {:?}",
            prom_out.recorded, ox_out.recorded
        );
    }
}

fn spawn(command: &mut Command, log: &Path) -> Killed {
    let log = std::fs::File::create(log).unwrap();
    Killed(
        command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start server"),
    )
}
