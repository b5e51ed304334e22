//! Kubernetes recommendations at scale, next to the route KRR takes.
//!
//! Loads WORKLOADS Deployments × 3 pods × DAYS of 1-minute cAdvisor samples
//! (CPU counter and working set per pod, diurnal with per-workload noise)
//! and kube-state-metrics at 5 minutes into the release binary through
//! remote_write, then:
//!
//! 1. asks `GET /api/v1/recommendations/workloads` (strategy simple, the
//!    whole window) once: wall time, server CPU-seconds, server RSS;
//! 2. runs KRR's own queries for every workload through Oxeye's PromQL API,
//!    as KRR 1.8 sends them, one after the other: pod discovery
//!    (`kube_replicaset_owner{…}[32d]`, `last_over_time(kube_pod_owner{…}[32d])`,
//!    `present_over_time(kube_pod_owner{…}[1m])`), then
//!    `quantile_over_time(0.95, max(rate(cpu[75s])) by (…)[14d:75s])`, the
//!    matching `count_over_time`, `max_over_time` of the working set and its
//!    count: seven instant queries per workload; wall time and server
//!    CPU-seconds;
//! 3. checks that both routes found the same CPU percentile and memory peak
//!    for every workload, and prints the ratio.
//!
//! `cargo run --release --example recommend_bench -- [WORKLOADS] [DAYS] [NAMESPACES] [OXEYE_BINARY]`
//! (defaults: 1000 workloads, 14 days, 10 namespaces; `1700 14 1` puts
//! 5,100 pods in one namespace). Loopback only; every loop is bounded.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{cpu_seconds, free_port, peak_rss_mib, rss_mib};

const MINUTE: i64 = 60_000;
const PODS: usize = 3;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1800))
        .no_proxy()
        .build()
        .unwrap()
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod_name(w: usize, p: usize) -> String {
    format!("app{w:04}-5d4f8c7b9-{}", ["aaaaa", "bbbbb", "ccccc"][p])
}

fn namespace(w: usize, namespaces: usize) -> String {
    format!("ns{:02}", w % namespaces)
}

/// Every series of one workload.
fn workload_series(
    w: usize,
    namespaces: usize,
    start: i64,
    end: i64,
) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let ns = namespace(w, namespaces);
    let rs = format!("app{w:04}-5d4f8c7b9");
    let deployment = format!("app{w:04}");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let base = 0.05 + rng.next() * 1.5;
    let peak = 1.0 + rng.next() * 3.0;
    let memory_base = (100.0 + rng.next() * 900.0) * 1048576.0;
    let mut out = Vec::new();
    let ksm_every = 5 * MINUTE;
    for p in 0..PODS {
        let pod = pod_name(w, p);
        let mut counter = 1e6 * rng.next();
        let mut cpu = Vec::new();
        let mut memory = Vec::new();
        let mut t = start;
        while t <= end {
            let hour = (t.rem_euclid(86_400_000) / 3_600_000) as f64;
            let diurnal = 1.0
                + (peak - 1.0) * (0.5 + 0.5 * ((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos());
            let usage = base * diurnal * (0.8 + 0.4 * rng.next());
            counter += usage * 60.0;
            cpu.push((t, counter));
            memory.push((t, (memory_base * (0.9 + 0.2 * rng.next())).round()));
            t += MINUTE;
        }
        let container = |name: &str| {
            labels(&[
                ("__name__", name),
                ("namespace", &ns),
                ("pod", &pod),
                ("container", "app"),
                ("job", "kubelet"),
            ])
        };
        out.push((container("container_cpu_usage_seconds_total"), cpu));
        out.push((container("container_memory_working_set_bytes"), memory));
        let ksm_points = |v: f64| -> Vec<(i64, f64)> {
            (0..)
                .map(|k| start + k * ksm_every)
                .take_while(|t| *t <= end)
                .map(|t| (t, v))
                .collect()
        };
        out.push((
            labels(&[
                ("__name__", "kube_pod_owner"),
                ("namespace", &ns),
                ("pod", &pod),
                ("owner_kind", "ReplicaSet"),
                ("owner_name", &rs),
            ]),
            ksm_points(1.0),
        ));
        for (metric, resource, v) in [
            ("kube_pod_container_resource_requests", "cpu", 2.0),
            (
                "kube_pod_container_resource_requests",
                "memory",
                2048.0 * 1048576.0,
            ),
            (
                "kube_pod_container_resource_limits",
                "memory",
                2048.0 * 1048576.0,
            ),
        ] {
            out.push((
                labels(&[
                    ("__name__", metric),
                    ("namespace", &ns),
                    ("pod", &pod),
                    ("container", "app"),
                    ("resource", resource),
                ]),
                ksm_points(v),
            ));
        }
    }
    out.push((
        labels(&[
            ("__name__", "kube_replicaset_owner"),
            ("namespace", &ns),
            ("replicaset", &rs),
            ("owner_kind", "Deployment"),
            ("owner_name", &deployment),
        ]),
        (0..)
            .map(|k| start + k * ksm_every)
            .take_while(|t| *t <= end)
            .map(|t| (t, 1.0))
            .collect(),
    ));
    out
}

fn load(base: &str, workloads: usize, namespaces: usize, start: i64, end: i64) -> u64 {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let samples = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let http = client();
                loop {
                    let w = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if w >= workloads {
                        break;
                    }
                    let mut raw = Vec::new();
                    for (l, s) in workload_series(w, namespaces, start, end) {
                        let refs: Vec<(&str, &str)> =
                            l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                        samples.fetch_add(s.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        oxeye::ingest::remote_write::encode::timeseries(&mut raw, &refs, &s);
                    }
                    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
                    let response = http
                        .post(format!("{base}/api/v1/write"))
                        .header("Content-Type", "application/x-protobuf")
                        .header("Content-Encoding", "snappy")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body)
                        .send()
                        .unwrap();
                    assert!(
                        response.status().is_success(),
                        "{}",
                        response.text().unwrap_or_default()
                    );
                }
            });
        }
    });
    samples.into_inner()
}

fn instant(
    http: &reqwest::blocking::Client,
    base: &str,
    query: &str,
    time: i64,
) -> Vec<(String, f64)> {
    let body: Value = http
        .post(format!("{base}/api/v1/query"))
        .form(&[
            ("query", query.to_string()),
            ("time", (time / 1000).to_string()),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["status"], "success", "{query}: {body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["pod"].as_str().unwrap_or("").to_string(),
                // A range-vector query (KRR's ReplicaSet lookup) answers a
                // matrix: take its last value.
                r.get("value")
                    .or_else(|| r["values"].as_array()?.last())
                    .and_then(|v| v[1].as_str()?.parse().ok())
                    .unwrap_or(f64::NAN),
            )
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let workloads: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 20_000);
    let days: i64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(14)
        .clamp(1, 30);
    let namespaces: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10)
        .clamp(1, 1000);
    let binary = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("oxeye")
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("oxeye.log")).unwrap();
    let server = Killed(
        Command::new(&binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(dir.path().join("data"))
            .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
            .args(["--elasticsearch", "127.0.0.1:0"])
            .args(["--postgres", "127.0.0.1:0"])
            .env("OXEYE_STORAGE__RETENTION", "60d")
            .env("OXEYE_RECOMMENDATIONS__MAX_PODS", "100000")
            .env("OXEYE_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start oxeye"),
    );
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{base}/-/ready"))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "oxeye not ready");
        std::thread::sleep(Duration::from_millis(200));
    }

    let end = (support_now_ms() - 2 * MINUTE).div_euclid(MINUTE) * MINUTE;
    let start = end - days * 86_400_000;
    let t = Instant::now();
    let samples = load(&base, workloads, namespaces, start, end);
    println!(
        "loaded {workloads} workloads × {PODS} pods × {days} days: {samples} samples in {:.1} s (server RSS {:.0} MiB)",
        t.elapsed().as_secs_f64(),
        rss_mib(pid)
    );
    let window = format!("{days}d");

    // 1. Oxeye's route.
    let cpu0 = cpu_seconds(pid);
    let t = Instant::now();
    let report: Value = http
        .get(format!(
            "{base}/api/v1/recommendations/workloads?strategy=simple&window={window}&time={}",
            end / 1000
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let fast_wall = t.elapsed().as_secs_f64();
    let fast_cpu = cpu_seconds(pid) - cpu0;
    let scans = report["scans"].as_array().expect("scans");
    assert_eq!(scans.len(), workloads, "{}", report["notes"]);
    println!(
        "recommendations API: {workloads} workloads in {fast_wall:.2} s wall, {fast_cpu:.2} server CPU-s (server's own timing {:.2} s); RSS now {:.0} MiB, peak {:.0} MiB",
        report["duration_seconds"].as_f64().unwrap_or(0.0),
        rss_mib(pid),
        peak_rss_mib(pid)
    );

    // 2. KRR's route: four PromQL queries per workload.
    let mut fast: HashMap<String, (f64, f64)> = HashMap::new();
    for s in scans {
        fast.insert(
            s["object"]["name"].as_str().unwrap().to_string(),
            (
                s["evidence"]["cpu_value"].as_f64().unwrap_or(f64::NAN),
                s["evidence"]["memory_peak"].as_f64().unwrap_or(f64::NAN),
            ),
        );
    }
    let cpu0 = cpu_seconds(pid);
    let t = Instant::now();
    let (mut agree, mut differ) = (0usize, 0usize);
    for w in 0..workloads {
        let ns = namespace(w, namespaces);
        let rs = instant(&http, &base, &format!(
            "kube_replicaset_owner{{owner_name=\"app{w:04}\", owner_kind=\"Deployment\", namespace=\"{ns}\"}}[32d]"
        ), end);
        assert_eq!(rs.len(), 1, "replica set discovery");
        let found = instant(&http, &base, &format!(
            "last_over_time(kube_pod_owner{{owner_name=~\"app{w:04}-5d4f8c7b9\", owner_kind=\"ReplicaSet\", namespace=\"{ns}\"}}[32d])"
        ), end);
        assert_eq!(found.len(), PODS, "pod discovery");
        let _current = instant(&http, &base, &format!(
            "present_over_time(kube_pod_owner{{owner_name=~\"app{w:04}-5d4f8c7b9\", owner_kind=\"ReplicaSet\", namespace=\"{ns}\"}}[1m])"
        ), end);
        let pods: Vec<String> = (0..PODS).map(|p| pod_name(w, p)).collect();
        let sel = format!(
            "namespace=\"{}\", pod=~\"{}\", container=\"app\"",
            namespace(w, namespaces),
            pods.join("|")
        );
        let cpu = instant(&http, &base, &format!(
            "quantile_over_time(0.95, max(rate(container_cpu_usage_seconds_total{{{sel}}}[75s])) by (container, pod, job)[{window}:75s])"
        ), end);
        let _points = instant(&http, &base, &format!(
            "count_over_time(max(container_cpu_usage_seconds_total{{{sel}}}) by (container, pod, job)[{window}:75s])"
        ), end);
        let memory = instant(&http, &base, &format!(
            "max_over_time(max(container_memory_working_set_bytes{{{sel}}}) by (container, pod, job)[{window}:75s])"
        ), end);
        let _memory_points = instant(&http, &base, &format!(
            "count_over_time(max(container_memory_working_set_bytes{{{sel}}}) by (container, pod, job)[{window}:75s])"
        ), end);
        let cpu_max = cpu.iter().map(|(_, v)| *v).fold(f64::NAN, f64::max);
        let memory_max = memory.iter().map(|(_, v)| *v).fold(f64::NAN, f64::max);
        let (fc, fm) = fast[&format!("app{w:04}")];
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
        if close(fc, cpu_max) && close(fm, memory_max) {
            agree += 1;
        } else {
            differ += 1;
            if differ <= 3 {
                println!("  app{w:04}: API cpu {fc} memory {fm}; PromQL cpu {cpu_max} memory {memory_max}");
            }
        }
    }
    let slow_wall = t.elapsed().as_secs_f64();
    let slow_cpu = cpu_seconds(pid) - cpu0;
    println!(
        "KRR's PromQL route: {} queries in {slow_wall:.2} s wall, {slow_cpu:.2} server CPU-s; RSS peak {:.0} MiB",
        workloads * 7,
        peak_rss_mib(pid)
    );
    println!("answers agree for {agree} of {workloads} workloads");
    println!(
        "ratio (PromQL route / recommendations API): {:.1}× wall, {:.1}× server CPU",
        slow_wall / fast_wall,
        slow_cpu / fast_cpu.max(0.01)
    );
    drop(server);
}

fn support_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
