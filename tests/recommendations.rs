//! Kubernetes recommendations against a real server: fixtures written here
//! (cAdvisor and kube-state-metrics series over 8 days, through
//! remote_write), expected numbers computed here from KRR's and VPA's
//! published formulas, and the answers of `/api/v1/recommendations/...`
//! and `oxeye recommend workloads` compared with them.

mod common;

use common::*;
use serde_json::Value;

const MIB: f64 = 1024.0 * 1024.0;
const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;
/// The end of every fixture: a whole minute in November 2023.
const END: i64 = 1_700_006_400_000;
const START: i64 = END - 8 * DAY;

type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Minute timestamps of the fixture window.
fn minutes(from: i64, to: i64) -> impl Iterator<Item = i64> {
    (0..)
        .map(move |k| from + k * MINUTE)
        .take_while(move |t| *t <= to)
}

/// A CPU counter from per-minute core-seconds (integers, so every rate is
/// exact in binary floating point).
fn cpu_counter(from: i64, to: i64, per_minute: impl Fn(i64) -> i64) -> Vec<(i64, f64)> {
    let mut total = 1_000_000i64;
    minutes(from, to)
        .map(|t| {
            total += per_minute(t);
            (t, total as f64)
        })
        .collect()
}

fn gauge(from: i64, to: i64, value: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    minutes(from, to).map(|t| (t, value(t))).collect()
}

fn constant(from: i64, to: i64, v: f64) -> Vec<(i64, f64)> {
    gauge(from, to, |_| v)
}

struct Pod<'a> {
    ns: &'a str,
    pod: &'a str,
    container: &'a str,
    from: i64,
    to: i64,
}

impl Pod<'_> {
    fn cadvisor(&self, cpu: Vec<(i64, f64)>, memory: Vec<(i64, f64)>) -> Vec<Series> {
        let l = |name: &str| {
            labels(&[
                ("__name__", name),
                ("namespace", self.ns),
                ("pod", self.pod),
                ("container", self.container),
                ("job", "kubelet"),
            ])
        };
        vec![
            (l("container_cpu_usage_seconds_total"), cpu),
            (l("container_memory_working_set_bytes"), memory),
        ]
    }

    /// `kube_pod_owner` and the container's requests and limits.
    fn ksm(
        &self,
        owner_kind: &str,
        owner: &str,
        cpu: (f64, f64),
        memory: (f64, f64),
    ) -> Vec<Series> {
        let mut out = vec![(
            labels(&[
                ("__name__", "kube_pod_owner"),
                ("namespace", self.ns),
                ("pod", self.pod),
                ("owner_kind", owner_kind),
                ("owner_name", owner),
                ("owner_is_controller", "true"),
            ]),
            constant(self.from, self.to, 1.0),
        )];
        for (metric, resource, unit, v) in [
            ("kube_pod_container_resource_requests", "cpu", "core", cpu.0),
            ("kube_pod_container_resource_limits", "cpu", "core", cpu.1),
            (
                "kube_pod_container_resource_requests",
                "memory",
                "byte",
                memory.0,
            ),
            (
                "kube_pod_container_resource_limits",
                "memory",
                "byte",
                memory.1,
            ),
        ] {
            if v > 0.0 {
                out.push((
                    labels(&[
                        ("__name__", metric),
                        ("namespace", self.ns),
                        ("pod", self.pod),
                        ("container", self.container),
                        ("resource", resource),
                        ("unit", unit),
                    ]),
                    constant(self.from, self.to, v),
                ));
            }
        }
        out
    }
}

fn replicaset_owner(ns: &str, rs: &str, deployment: &str) -> Series {
    (
        labels(&[
            ("__name__", "kube_replicaset_owner"),
            ("namespace", ns),
            ("replicaset", rs),
            ("owner_kind", "Deployment"),
            ("owner_name", deployment),
        ]),
        constant(START, END, 1.0),
    )
}

fn write(base: &str, series: &[Series]) {
    // A few series per request keeps bodies well under the size limit.
    for chunk in series.chunks(8) {
        let borrowed: Vec<TestSeries> = chunk
            .iter()
            .map(|(l, s)| {
                (
                    l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                    s.clone(),
                )
            })
            .collect();
        let (status, text) = post_remote_write(base, remote_write_body(&borrowed));
        assert_eq!(status, 204, "{text}");
    }
}

/// KRR's rounding (`runner._round_value`).
fn krr_cpu(v: f64) -> f64 {
    ((v * 1000.0).ceil() / 1000.0).max(0.010)
}
fn krr_memory(v: f64) -> f64 {
    ((v / MIB).ceil() * MIB).max(100.0 * MIB)
}

/// VPA's bucket end for a value (`util/histogram_options.go`): bucket
/// `n = ⌊log_1.05(v·0.05/first + 1)⌋`, end = start of `n + 1`.
fn vpa_bucket_end(v: f64, first: f64) -> f64 {
    let n = ((v * 0.05 / first + 1.0).ln() / 1.05f64.ln()).floor() as i32;
    first * (1.05f64.powi(n + 1) - 1.0) / 0.05
}

fn fixtures() -> Vec<Series> {
    let mut all = Vec::new();
    let hour = |t: i64| (t.rem_euclid(DAY)) / (60 * MINUTE);

    // 1. steady: 1 core all the time, two pods (one with a counter reset
    //    and a two-hour gap), working sets 400 and 500 MiB.
    let a = Pod {
        ns: "shop",
        pod: "steady-5d4f8c7b9-aaaaa",
        container: "app",
        from: START,
        to: END,
    };
    all.extend(a.cadvisor(
        cpu_counter(START, END, |_| 60),
        constant(START, END, 400.0 * MIB),
    ));
    all.extend(a.ksm(
        "ReplicaSet",
        "steady-5d4f8c7b9",
        (2.0, 2.0),
        (1024.0 * MIB, 1024.0 * MIB),
    ));
    let b = Pod {
        ns: "shop",
        pod: "steady-5d4f8c7b9-bbbbb",
        container: "app",
        from: START,
        to: END,
    };
    let reset = START + 3 * DAY;
    let gap = (START + 5 * DAY, START + 5 * DAY + 120 * MINUTE);
    let mut cpu_b: Vec<(i64, f64)> = cpu_counter(START, END, |_| 60);
    let at_reset = cpu_b.iter().find(|(t, _)| *t == reset).unwrap().1;
    for s in cpu_b.iter_mut().filter(|(t, _)| *t >= reset) {
        s.1 = s.1 - at_reset + 60.0;
    }
    cpu_b.retain(|(t, _)| *t < gap.0 || *t > gap.1);
    let mut mem_b = constant(START, END, 500.0 * MIB);
    mem_b.retain(|(t, _)| *t < gap.0 || *t > gap.1);
    all.extend(b.cadvisor(cpu_b, mem_b));
    all.extend(b.ksm(
        "ReplicaSet",
        "steady-5d4f8c7b9",
        (2.0, 2.0),
        (1024.0 * MIB, 1024.0 * MIB),
    ));
    all.push(replicaset_owner("shop", "steady-5d4f8c7b9", "steady"));

    // 2. web: diurnal, three pods at 0.2 cores for 18 h and 2 cores from
    //    12:00 to 18:00; working set 200 MiB, 300 MiB in the busy hours.
    for p in [
        "web-7c9d8f6b5-aaaaa",
        "web-7c9d8f6b5-bbbbb",
        "web-7c9d8f6b5-ccccc",
    ] {
        let pod = Pod {
            ns: "shop",
            pod: p,
            container: "web",
            from: START,
            to: END,
        };
        let busy = move |t: i64| (12..18).contains(&hour(t));
        all.extend(pod.cadvisor(
            cpu_counter(START, END, move |t| if busy(t) { 120 } else { 12 }),
            gauge(
                START,
                END,
                move |t| if busy(t) { 300.0 * MIB } else { 200.0 * MIB },
            ),
        ));
        all.extend(pod.ksm(
            "ReplicaSet",
            "web-7c9d8f6b5",
            (1.0, 0.0),
            (512.0 * MIB, 512.0 * MIB),
        ));
    }
    all.push(replicaset_owner("shop", "web-7c9d8f6b5", "web"));
    all.push((
        labels(&[
            ("__name__", "kube_deployment_spec_replicas"),
            ("namespace", "shop"),
            ("deployment", "web"),
        ]),
        constant(START, END, 3.0),
    ));

    // 3. leaky: a memory leak from 100 to 950 MiB every two days, then an
    //    OOM kill (limit 1 GiB) and a restart; 0.1 cores.
    let pod = Pod {
        ns: "shop",
        pod: "leaky-6b5c4d3f2-aaaaa",
        container: "worker",
        from: START,
        to: END,
    };
    let cycle = 2 * DAY;
    all.extend(pod.cadvisor(
        cpu_counter(START, END, |_| 6),
        gauge(START, END, move |t| {
            // Grows for all but the last hour of the cycle, then holds.
            let into = (t - START).rem_euclid(cycle) as f64 / (cycle - 60 * MINUTE) as f64;
            (100.0 + 850.0 * into).min(950.0).round() * MIB
        }),
    ));
    all.extend(pod.ksm(
        "ReplicaSet",
        "leaky-6b5c4d3f2",
        (0.5, 0.0),
        (512.0 * MIB, 1024.0 * MIB),
    ));
    all.push(replicaset_owner("shop", "leaky-6b5c4d3f2", "leaky"));
    all.push((
        labels(&[
            (
                "__name__",
                "kube_pod_container_status_last_terminated_reason",
            ),
            ("namespace", "shop"),
            ("pod", "leaky-6b5c4d3f2-aaaaa"),
            ("container", "worker"),
            ("reason", "OOMKilled"),
        ]),
        constant(START + cycle, END, 1.0),
    ));

    // 4. nightly: a CronJob whose Jobs run 30 minutes every 6 hours at 3
    //    cores, one short-lived pod each.
    let mut run = 0;
    let mut t0 = START + 60 * MINUTE;
    while t0 + 30 * MINUTE <= END {
        let job = format!("nightly-{}", 28_000_000 + run);
        let pod_name = format!("{job}-x{run:04}");
        let pod = Pod {
            ns: "batch",
            pod: &pod_name,
            container: "job",
            from: t0,
            to: t0 + 30 * MINUTE,
        };
        all.extend(pod.cadvisor(
            cpu_counter(t0, t0 + 30 * MINUTE, |_| 180),
            constant(t0, t0 + 30 * MINUTE, 700.0 * MIB),
        ));
        all.extend(pod.ksm("Job", &job, (1.0, 0.0), (256.0 * MIB, 0.0)));
        all.push((
            labels(&[
                ("__name__", "kube_job_owner"),
                ("namespace", "batch"),
                ("job_name", &job),
                ("owner_kind", "CronJob"),
                ("owner_name", "nightly"),
            ]),
            constant(t0, t0 + 30 * MINUTE, 1.0),
        ));
        run += 1;
        t0 += 6 * 60 * MINUTE;
    }

    // 5. api: under an HPA (2..3 replicas at 60 % CPU) that cannot follow
    //    its peak: two pods at 0.3 cores, 2.4 cores from 12:00 to 18:00.
    for p in ["api-59d8c7b6a-aaaaa", "api-59d8c7b6a-bbbbb"] {
        let pod = Pod {
            ns: "shop",
            pod: p,
            container: "api",
            from: START,
            to: END,
        };
        let busy = move |t: i64| (12..18).contains(&hour(t));
        all.extend(pod.cadvisor(
            cpu_counter(START, END, move |t| if busy(t) { 144 } else { 18 }),
            constant(START, END, 250.0 * MIB),
        ));
        all.extend(pod.ksm(
            "ReplicaSet",
            "api-59d8c7b6a",
            (1.0, 0.0),
            (512.0 * MIB, 512.0 * MIB),
        ));
    }
    all.push(replicaset_owner("shop", "api-59d8c7b6a", "api"));
    let hpa = |name: &str, extra: &[(&str, &str)], v: f64| -> Series {
        let mut l = vec![
            ("__name__", name),
            ("namespace", "shop"),
            ("horizontalpodautoscaler", "api"),
        ];
        l.extend_from_slice(extra);
        (labels(&l), constant(START, END, v))
    };
    all.push(hpa(
        "kube_horizontalpodautoscaler_info",
        &[
            ("scaletargetref_kind", "Deployment"),
            ("scaletargetref_name", "api"),
        ],
        1.0,
    ));
    all.push(hpa(
        "kube_horizontalpodautoscaler_spec_min_replicas",
        &[],
        2.0,
    ));
    all.push(hpa(
        "kube_horizontalpodautoscaler_spec_max_replicas",
        &[],
        3.0,
    ));
    all.push(hpa(
        "kube_horizontalpodautoscaler_spec_target_metric",
        &[
            ("metric_name", "cpu"),
            ("metric_target_type", "utilization"),
        ],
        60.0,
    ));

    // 6. young: 30 minutes of history only.
    let pod = Pod {
        ns: "shop",
        pod: "young-5f6d7c8b9-aaaaa",
        container: "app",
        from: END - 30 * MINUTE,
        to: END,
    };
    all.extend(pod.cadvisor(
        cpu_counter(END - 30 * MINUTE, END, |_| 30),
        constant(END - 30 * MINUTE, END, 150.0 * MIB),
    ));
    all.extend(pod.ksm(
        "ReplicaSet",
        "young-5f6d7c8b9",
        (0.5, 0.0),
        (256.0 * MIB, 256.0 * MIB),
    ));
    all.push(replicaset_owner("shop", "young-5f6d7c8b9", "young"));
    all
}

fn scan<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["object"]["name"] == name)
        .unwrap_or_else(|| panic!("no scan for {name}: {report:#}"))
}

fn value(scan: &Value, path: &str) -> Value {
    scan["recommended"]
        .pointer(path)
        .cloned()
        .unwrap_or(Value::Null)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn recommendations(server: &TestServer, query: &str) -> Value {
    let url = server.url(&format!(
        "/api/v1/recommendations/workloads?time={}&window=7d{query}",
        END / 1000
    ));
    let response = client().get(&url).send().unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().unwrap()
}

#[test]
fn krr_simple_vpa_hpa_and_backtests_match_the_formulas() {
    let server = TestServer::start();
    write(&server.url(""), &fixtures());

    // ---- simple ----
    let report = recommendations(&server, "&strategy=simple");
    assert_eq!(report["strategy"]["name"], "simple");
    assert_eq!(report["resources"], serde_json::json!(["cpu", "memory"]));

    // steady: p95 of a constant 1-core rate is 1 core; memory is the larger
    // pod's 500 MiB plus 15 %. The counter reset and the gap change nothing.
    let steady = scan(&report, "steady");
    assert_eq!(steady["object"]["kind"], "Deployment");
    assert_eq!(steady["object"]["namespace"], "shop");
    assert_eq!(steady["object"]["container"], "app");
    assert_eq!(steady["object"]["pods"].as_array().unwrap().len(), 2);
    assert_eq!(f(&steady["object"]["allocations"]["requests"]["cpu"]), 2.0);
    assert_eq!(f(&value(steady, "/requests/cpu/value")), krr_cpu(1.0));
    assert_eq!(value(steady, "/limits/cpu/value"), Value::Null);
    let memory = krr_memory(500.0 * MIB * (1.0 + 15.0 / 100.0));
    assert_eq!(f(&value(steady, "/requests/memory/value")), memory);
    assert_eq!(f(&value(steady, "/limits/memory/value")), memory);
    // KRR severities: 1 core less is CRITICAL; 1024 → 575 MiB is WARNING;
    // a CPU limit that should go is WARNING.
    assert_eq!(value(steady, "/requests/cpu/severity"), "CRITICAL");
    assert_eq!(value(steady, "/requests/memory/severity"), "WARNING");
    assert_eq!(value(steady, "/limits/cpu/severity"), "WARNING");
    assert_eq!(steady["severity"], "CRITICAL");
    assert_eq!(
        steady["backtest"]["passed"], true,
        "{:#}",
        steady["backtest"]
    );
    // Saving: (2 - 1) cores and (1024 - 575) MiB for two replicas.
    assert_eq!(f(&steady["saving"]["cpu_cores"]), 2.0);
    assert_eq!(
        f(&steady["saving"]["memory_bytes"]),
        2.0 * (1024.0 * MIB - memory)
    );
    // Test part is the last 30 % of 7 days; two pods saving a core each.
    let saved = f(&steady["backtest"]["cpu_core_hours_saved"]);
    assert!((saved - 2.0 * 0.3 * 7.0 * 24.0).abs() < 3.0, "{saved}");
    assert!(
        steady["hpa_advice"]["autoscale"] == false,
        "{:#}",
        steady["hpa_advice"]
    );
    let patch = steady["patch"].as_str().unwrap();
    assert!(patch.contains("- name: app"), "{patch}");
    assert!(patch.contains("cpu: 1\n"), "{patch}");
    assert!(patch.contains("memory: 575Mi"), "{patch}");
    assert!(patch.contains("cpu: null"), "{patch}");

    // web: the busy plateau is a quarter of the day, so p95 is 2 cores;
    // HPA advised between ⌈0.6/(2·0.7)⌉ = 1 and ⌈6·1.2/(2·0.7)⌉ = 6.
    let web = scan(&report, "web");
    assert_eq!(f(&value(web, "/requests/cpu/value")), 2.0);
    assert_eq!(
        f(&value(web, "/requests/memory/value")),
        krr_memory(300.0 * MIB * (1.0 + 15.0 / 100.0))
    );
    let advice = &web["hpa_advice"];
    assert_eq!(advice["autoscale"], true, "{advice:#}");
    assert_eq!(advice["min_replicas"], 1);
    assert_eq!(advice["max_replicas"], 6);
    assert!(
        (f(&advice["daily_variation"]) - 10.0).abs() < 1e-9,
        "{advice:#}"
    );
    let manifest = web["hpa_manifest"].as_str().unwrap();
    assert!(manifest.contains("kind: HorizontalPodAutoscaler"));
    assert!(manifest.contains("averageUtilization: 70"));
    // Only the first busy interval of a day finds too few replicas.
    let overloaded = f(&advice["advised_hpa_replay"]["overloaded_share"]);
    assert!(overloaded > 0.0 && overloaded < 0.01, "{advice:#}");

    // leaky: OOM-killed at a 1 GiB limit: max(950 MiB × 1.15, 1 GiB × 1.25).
    let leaky = scan(&report, "leaky");
    let expected = krr_memory((950.0 * MIB * 1.15).max(1024.0 * MIB * 1.25));
    assert_eq!(f(&value(leaky, "/requests/memory/value")), expected);
    assert_eq!(value(leaky, "/info/memory"), "OOMKill detected");
    assert!(leaky["evidence"]["oom_kills"].as_u64().unwrap() >= 1);
    assert_eq!(f(&value(leaky, "/requests/cpu/value")), krr_cpu(0.1));

    // nightly: found through Job → CronJob; each pod's p95 is 3 cores.
    let nightly = scan(&report, "nightly");
    assert_eq!(nightly["object"]["kind"], "CronJob");
    assert_eq!(nightly["object"]["namespace"], "batch");
    assert_eq!(f(&value(nightly, "/requests/cpu/value")), 3.0);
    assert_eq!(
        f(&value(nightly, "/requests/memory/value")),
        krr_memory(700.0 * MIB * 1.15)
    );

    // api: KRR leaves CPU to the HPA; the replay shows the HPA capped at 3
    // replicas while demand needs 4.8 / 0.6 = 8.
    let api = scan(&report, "api");
    assert_eq!(value(api, "/requests/cpu/value"), "?");
    assert_eq!(value(api, "/requests/cpu/severity"), "UNKNOWN");
    assert_eq!(value(api, "/info/cpu"), "HPA detected");
    assert_eq!(api["object"]["hpa"]["max_replicas"], 3.0);
    assert_eq!(
        api["object"]["hpa"]["target_cpu_utilization_percentage"],
        60.0
    );
    let replay = &api["hpa_advice"]["current_hpa_replay"];
    assert_eq!(replay["peak_replicas"], 3, "{replay:#}");
    let overloaded = f(&replay["overloaded_share"]);
    assert!(overloaded > 0.2 && overloaded < 0.26, "{replay:#}");
    assert!(
        replay["verdict"]
            .as_str()
            .unwrap()
            .starts_with("maxReplicas 3 is too low"),
        "{replay:#}"
    );

    // young: 30 minutes are 24 points, fewer than KRR's 100.
    let young = scan(&report, "young");
    assert_eq!(value(young, "/requests/cpu/value"), "?");
    assert_eq!(value(young, "/info/cpu"), "Not enough data");
    assert_eq!(value(young, "/info/memory"), "Not enough data");

    // ---- simple_limit: p66 and p96 of the pooled rates ----
    let report = recommendations(
        &server,
        "&strategy=simple_limit&namespace=shop&workload=web",
    );
    assert_eq!(report["scans"].as_array().unwrap().len(), 1);
    let web = scan(&report, "web");
    assert_eq!(f(&value(web, "/requests/cpu/value")), krr_cpu(0.2));
    assert_eq!(f(&value(web, "/limits/cpu/value")), 2.0);
    // The backtest replays the limit: usage above p96 is rare.
    let throttled = f(&web["backtest"]["cpu_throttled_share"]);
    assert!(throttled < 0.04, "{:#}", web["backtest"]);

    // ---- vpa ----
    let report = recommendations(&server, "&strategy=vpa&namespace=shop&workload=steady");
    let steady = scan(&report, "steady");
    // Target: the end of 1 core's bucket, in millicores, plus 15 %.
    let base = (vpa_bucket_end(1.0, 0.01) * 1000.0).trunc();
    let target = (base + (base * 0.15).trunc()) / 1000.0;
    assert_eq!(f(&value(steady, "/requests/cpu/value")), krr_cpu(target));
    let vpa = &steady["evidence"]["vpa"];
    assert_eq!(f(&vpa["cpu"]["target"]), target, "{vpa:#}");
    // Memory: p90 of daily peaks (400 and 500 MiB) is 500 MiB's bucket.
    let base = vpa_bucket_end(500.0 * MIB, 1e7).trunc();
    let memory_target = base + (base * 0.15).trunc();
    assert_eq!(f(&vpa["memory"]["target"]), memory_target, "{vpa:#}");
    // A week of samples at 1.25 min from two pods: confidence is the
    // history (just under 7 days), the upper bound p95·1.15·(1 + 1/c).
    let c = f(&vpa["confidence"]);
    assert!(c > 6.9 && c <= 7.0, "{vpa:#}");
    let upper = f(&vpa["cpu"]["upper_bound"]);
    let expected_upper = ((base_cpu_p95() * (1.0 + 1.0 / c)).trunc()) / 1000.0;
    assert_eq!(upper, expected_upper, "{vpa:#}");
}

/// VPA's margin-applied p95 of the steady workload's CPU in millicores.
fn base_cpu_p95() -> f64 {
    let base = (vpa_bucket_end(1.0, 0.01) * 1000.0).trunc();
    base + (base * 0.15).trunc()
}

/// The same statistics through PromQL, with the query text KRR sends: the
/// fast path and the query engine agree.
#[test]
fn cpu_and_memory_equal_krr_promql_queries() {
    let server = TestServer::start();
    let all = fixtures();
    let web: Vec<Series> = all
        .into_iter()
        .filter(|(l, _)| {
            l.iter().any(|(k, v)| {
                (k == "pod" || k == "replicaset" || k == "deployment") && v.starts_with("web")
            })
        })
        .collect();
    write(&server.url(""), &web);
    let report = recommendations(&server, "&strategy=simple&workload=web");
    let scan = scan(&report, "web");
    let pods = "web-7c9d8f6b5-aaaaa|web-7c9d8f6b5-bbbbb|web-7c9d8f6b5-ccccc";
    let sel = format!("namespace=\"shop\", pod=~\"{pods}\", container=\"web\"");
    let query = |q: &str| -> Vec<f64> {
        let url = server.url("/api/v1/query");
        let body: Value = client()
            .post(url)
            .form(&[("query", q.to_string()), ("time", (END / 1000).to_string())])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(body["status"], "success", "{q}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let cpu = query(&format!(
        "quantile_over_time(0.95, max(rate(container_cpu_usage_seconds_total{{{sel}}}[75s])) by (container, pod, job)[7d:75s])"
    ));
    assert_eq!(cpu.len(), 3);
    let cpu_max = cpu.iter().copied().fold(f64::NAN, f64::max);
    assert_eq!(f(&scan["evidence"]["cpu_value"]), cpu_max);
    let points: f64 = query(&format!(
        "count_over_time(max(container_cpu_usage_seconds_total{{{sel}}}) by (container, pod, job)[7d:75s])"
    ))
    .iter()
    .sum();
    assert_eq!(scan["evidence"]["cpu_points"].as_f64().unwrap(), points);
    let memory = query(&format!(
        "max_over_time(max(container_memory_working_set_bytes{{{sel}}}) by (container, pod, job)[7d:75s])"
    ));
    let memory_max = memory.iter().copied().fold(f64::NAN, f64::max);
    assert_eq!(f(&scan["evidence"]["memory_peak"]), memory_max);
}

#[test]
fn without_kube_state_metrics_workloads_come_from_pod_names() {
    let server = TestServer::start();
    let pod = Pod {
        ns: "edge",
        pod: "solo-6f7d8c9b5d-abcde",
        container: "app",
        from: START,
        to: END,
    };
    write(
        &server.url(""),
        &pod.cadvisor(
            cpu_counter(START, END, |_| 30),
            constant(START, END, 128.0 * MIB),
        ),
    );
    let report = recommendations(&server, "");
    let solo = scan(&report, "solo");
    assert_eq!(solo["object"]["kind"], "Deployment");
    assert_eq!(solo["object"]["warnings"][0], "WorkloadInferredFromPodName");
    assert_eq!(
        solo["object"]["allocations"]["requests"]["cpu"],
        Value::Null
    );
    assert_eq!(f(&value(solo, "/requests/cpu/value")), 0.5);
    // No request today: KRR calls a new value a WARNING.
    assert_eq!(value(solo, "/requests/cpu/severity"), "WARNING");
    let notes = report["notes"].as_array().unwrap();
    assert!(
        notes[0].as_str().unwrap().contains("kube-state-metrics"),
        "{notes:?}"
    );
}

#[test]
fn bad_requests_get_clear_errors_and_limits_hold() {
    let server = TestServer::start_with(&[("OXEYE_RECOMMENDATIONS__MAX_PODS", "1")]);
    let base = server.url("/api/v1/recommendations/workloads");
    for (query, needle) in [
        ("strategy=magic", "strategy"),
        ("window=-3d", "window"),
        ("step=0s", "step"),
        ("window=1h&step=2h", "step no longer than the window"),
        ("time=yesterday", "time"),
    ] {
        let response = client().get(format!("{base}?{query}")).send().unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    // 1 second steps over 14 days: too many steps.
    let response = client()
        .get(format!("{base}?step=1s&window=14d"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 422);
    // Two pods against max_pods = 1.
    let mut series = Vec::new();
    for p in ["a-5d4f8c7b9-aaaaa", "a-5d4f8c7b9-bbbbb"] {
        let pod = Pod {
            ns: "n",
            pod: p,
            container: "c",
            from: END - DAY,
            to: END,
        };
        series.extend(pod.cadvisor(
            cpu_counter(END - DAY, END, |_| 6),
            constant(END - DAY, END, MIB),
        ));
    }
    write(&server.url(""), &series);
    let response = client()
        .get(format!("{base}?time={}&window=1d", END / 1000))
        .send()
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("max_pods"),
        "{body}"
    );
    // The server still answers.
    assert_eq!(
        client()
            .get(server.url("/-/ready"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn the_command_line_prints_krr_json_table_csv_and_yaml() {
    let server = TestServer::start();
    let steady: Vec<Series> = fixtures()
        .into_iter()
        .filter(|(l, _)| l.iter().any(|(_, v)| v.starts_with("steady")))
        .collect();
    write(&server.url(""), &steady);
    let run = |format: &str| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxeye"))
            .args([
                "recommend",
                "workloads",
                "--url",
                &server.url(""),
                "--namespace",
                "shop",
            ])
            .args([
                "--window",
                "7d",
                "--time",
                &(END / 1000).to_string(),
                "--format",
                format,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&run("json")).unwrap();
    // KRR's JSON shape, read the way KRR's consumers read it.
    let scan = &json["scans"][0];
    for key in [
        "cluster",
        "name",
        "container",
        "pods",
        "hpa",
        "namespace",
        "kind",
        "allocations",
    ] {
        assert!(
            scan["object"].get(key).is_some(),
            "object.{key} missing: {scan:#}"
        );
    }
    assert_eq!(scan["recommended"]["requests"]["cpu"]["value"], 1.0);
    assert_eq!(
        scan["recommended"]["requests"]["cpu"]["severity"],
        "CRITICAL"
    );
    assert!(json["score"].is_i64());
    assert_eq!(json["strategy"]["name"], "simple");

    let table = run("table");
    let line = table.lines().find(|l| l.contains("steady")).unwrap();
    assert!(line.contains("2 -> 1"), "{table}");
    assert!(line.contains("1Gi -> 575Mi"), "{table}");
    assert!(line.contains("CRITICAL"), "{table}");

    let csv = run("csv");
    assert!(
        csv.starts_with("Namespace,Kind,Name,Container,Pods,"),
        "{csv}"
    );
    assert!(
        csv.contains("shop,Deployment,steady,app,2,2 -> 1,2 -> unset,"),
        "{csv}"
    );

    let yaml = run("yaml");
    assert!(yaml.contains("scans:"), "{yaml}");

    // A server that is not there: a clear error and a failing exit status.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args([
            "recommend",
            "workloads",
            "--url",
            &format!("http://127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("oxeye recommend workloads"));
}
