//! Kubernetes recommendations against a real server: fixtures written here
//! (cAdvisor and kube-state-metrics series over 8 days, through
//! remote_write), expected numbers computed here from KRR's and VPA's
//! published formulas, and the answers of `/api/v1/recommendations/...`
//! and `oxeye recommend workloads` compared with them.

mod common;

use common::k8s::*;
use common::*;
use serde_json::Value;

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
    let throttled = f(&leaky["evidence"]["cpu_throttled_share"]);
    assert!((throttled - 0.1).abs() < 1e-9, "{throttled}");

    // nightly: found through Job → CronJob; each pod's p95 is 3 cores.
    let nightly = scan(&report, "nightly");
    let patch = nightly["patch"].as_str().unwrap();
    assert!(patch.contains("  jobTemplate:\n"), "{patch}");
    // No HPA for a CronJob.
    assert_eq!(nightly["hpa_advice"]["autoscale"], false);
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
    // Only memory is backtested: CPU has no recommendation.
    assert_eq!(api["backtest"]["cpu_over_request_share"], Value::Null);
    assert_eq!(api["backtest"]["passed"], true, "{:#}", api["backtest"]);
    assert!(
        api["hpa_advice"]["reason"].as_str().unwrap().starts_with(
            "today's HPA (2..3 replicas at 60% CPU) replayed: maxReplicas 3 is too low"
        ),
        "{:#}",
        api["hpa_advice"]
    );
    // It has an HPA: no second one is proposed.
    assert_eq!(api["hpa_manifest"], Value::Null);
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
    assert_eq!(young["backtest"]["tested"], false);
    assert!(young["backtest"]["verdict"]
        .as_str()
        .unwrap()
        .starts_with("not tested"));

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

#[test]
fn namespaces_get_quotas_and_nodes_are_bin_packed() {
    let server = TestServer::start();
    write(&server.url(""), &fixtures());
    let get = |path: &str| -> Value {
        let url = server.url(&format!("{path}?time={}&window=7d", END / 1000));
        let response = client().get(&url).send().unwrap();
        assert_eq!(response.status(), 200, "{url}");
        response.json().unwrap()
    };
    let namespaces = get("/api/v1/recommendations/namespaces");
    let shop = namespaces["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == "shop")
        .unwrap();
    // Recommended CPU × replicas: steady 1 × 2, web 2 × 3, leaky 0.1 × 1;
    // without a recommendation today's request: api 1 × its HPA's 3
    // replicas at most, young 0.5 × 1.
    let cpu = 1.0 * 2.0 + 2.0 * 3.0 + 0.1 + 1.0 * 3.0 + 0.5;
    assert!(
        (f(&shop["recommended_requests"]["cpu"]) - cpu).abs() < 1e-9,
        "{shop:#}"
    );
    assert_eq!(shop["containers_without_recommendation"], 2);
    let quota = f(&shop["resource_quota"]["requests.cpu"]);
    assert!(
        (quota - (cpu * 1.2 / 0.1).ceil() * 0.1).abs() < 1e-9,
        "{shop:#}"
    );
    assert_eq!(
        f(&shop["current_resource_quota"]["hard:requests.cpu"]),
        20.0
    );
    assert_eq!(f(&shop["current_limit_range"]["max:cpu"]), 4.0);
    // The median CPU request of steady, web, leaky, api and young is 1 core.
    assert_eq!(f(&shop["limit_range"]["defaultRequest"]["cpu"]), 1.0);

    let nodes = get("/api/v1/recommendations/nodes");
    assert_eq!(nodes["nodes_today"], 3, "{nodes:#}");
    let shape = &nodes["shapes"][0];
    assert_eq!(shape["nodes_today"], 3);
    // Today: 2×2 + 5×1 + 2×0.5 cores pack onto 4-core nodes as 2+2, 1+1+1+1,
    // 1+0.5+0.5: three nodes. Recommended: 3×2 + 4×1 + 0.5 + 0.1: 2+2,
    // 2+1+1, 1+1+0.5+0.1: three nodes.
    assert_eq!(shape["needed_with_todays_requests"], 3, "{nodes:#}");
    assert_eq!(shape["needed_with_recommended_requests"], 3, "{nodes:#}");
    assert_eq!(nodes["pods_packed"], 9);
}

/// The OpenTelemetry Collector's kubeletstats metrics over OTLP: with the
/// k8s resource attributes promoted to labels and the names configured,
/// the same recommendation as from cAdvisor.
#[test]
fn otel_kubeletstats_metrics_work_with_promoted_resource_attributes() {
    let server = TestServer::start_with(&[
        (
            "OXEYE_OTLP__PROMOTE_RESOURCE_ATTRIBUTES",
            r#"["k8s.namespace.name", "k8s.pod.name", "k8s.container.name"]"#,
        ),
        (
            "OXEYE_RECOMMENDATIONS__CPU_USAGE_METRIC",
            "container_cpu_time_seconds_total",
        ),
        (
            "OXEYE_RECOMMENDATIONS__NAMESPACE_LABEL",
            "k8s_namespace_name",
        ),
        ("OXEYE_RECOMMENDATIONS__POD_LABEL", "k8s_pod_name"),
        (
            "OXEYE_RECOMMENDATIONS__CONTAINER_LABEL",
            "k8s_container_name",
        ),
    ]);
    let from = END - 2 * DAY;
    let times: Vec<i64> = minutes(from, END).collect();
    let cpu: Vec<Value> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({
                "timeUnixNano": (t * 1_000_000).to_string(),
                "startTimeUnixNano": (from * 1_000_000).to_string(),
                // 15 core-seconds a minute: 0.25 cores.
                "asDouble": 1000.0 + 15.0 * i as f64,
            })
        })
        .collect();
    let memory: Vec<Value> = times
        .iter()
        .map(|t| serde_json::json!({"timeUnixNano": (t * 1_000_000).to_string(), "asInt": (200.0 * MIB) as i64}))
        .collect();
    let attr = |k: &str, v: &str| serde_json::json!({"key": k, "value": {"stringValue": v}});
    let body = serde_json::json!({"resourceMetrics": [{
        "resource": {"attributes": [
            attr("k8s.namespace.name", "otel"),
            attr("k8s.pod.name", "collector-7d9f8b6c4d-x2k9p"),
            attr("k8s.container.name", "otelcol"),
            attr("k8s.node.name", "node-a"),
        ]},
        "scopeMetrics": [{"scope": {"name": "otelcol/kubeletstatsreceiver"}, "metrics": [
            {"name": "container.cpu.time", "unit": "s", "sum": {
                "aggregationTemporality": 2, "isMonotonic": true, "dataPoints": cpu}},
            {"name": "container.memory.working_set", "unit": "By", "gauge": {"dataPoints": memory}},
        ]}],
    }]});
    let response = client()
        .post(server.url("/v1/metrics"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    // The resource attributes are labels of every series.
    let series = get_json(&server.url("/api/v1/series?match[]=container_cpu_time_seconds_total"));
    assert_eq!(
        series["data"][0]["k8s_pod_name"], "collector-7d9f8b6c4d-x2k9p",
        "{series}"
    );
    assert_eq!(
        series["data"][0]["k8s_node_name"],
        Value::Null,
        "not promoted: {series}"
    );

    let report = recommendations(&server, "&window=1d");
    let scan = scan(&report, "collector");
    assert_eq!(scan["object"]["namespace"], "otel");
    assert_eq!(scan["object"]["container"], "otelcol");
    assert_eq!(f(&value(scan, "/requests/cpu/value")), 0.25);
    assert_eq!(
        f(&value(scan, "/requests/memory/value")),
        krr_memory(200.0 * MIB * 1.15)
    );
}

/// Stored settings that make no sense (an HPA whose minReplicas is above
/// its maxReplicas, a static pod owned by a Node) are answered, not crashed on.
#[test]
fn inconsistent_kube_state_metrics_do_not_break_a_run() {
    let server = TestServer::start();
    let mut series = Vec::new();
    for p in ["odd-5d4f8c7b9-aaaaa", "odd-5d4f8c7b9-bbbbb"] {
        let pod = Pod {
            ns: "x",
            pod: p,
            container: "c",
            from: END - DAY,
            to: END,
        };
        series.extend(pod.cadvisor(
            cpu_counter(
                END - DAY,
                END,
                |t| if (t / MINUTE) % 60 < 30 { 60 } else { 6 },
            ),
            constant(END - DAY, END, 100.0 * MIB),
        ));
        series.extend(pod.ksm(
            "ReplicaSet",
            "odd-5d4f8c7b9",
            (1.0, 0.0),
            (128.0 * MIB, 0.0),
        ));
    }
    series.push(replicaset_owner("x", "odd-5d4f8c7b9", "odd"));
    let hpa = |name: &str, extra: &[(&str, &str)], v: f64| -> Series {
        let mut l = vec![
            ("__name__", name),
            ("namespace", "x"),
            ("horizontalpodautoscaler", "odd"),
        ];
        l.extend_from_slice(extra);
        (labels(&l), constant(END - DAY, END, v))
    };
    series.push(hpa(
        "kube_horizontalpodautoscaler_info",
        &[
            ("scaletargetref_kind", "Deployment"),
            ("scaletargetref_name", "odd"),
        ],
        1.0,
    ));
    series.push(hpa(
        "kube_horizontalpodautoscaler_spec_min_replicas",
        &[],
        5.0,
    ));
    series.push(hpa(
        "kube_horizontalpodautoscaler_spec_max_replicas",
        &[],
        0.0,
    ));
    series.push(hpa(
        "kube_horizontalpodautoscaler_spec_target_metric",
        &[
            ("metric_name", "cpu"),
            ("metric_target_type", "utilization"),
        ],
        0.0,
    ));
    let static_pod = Pod {
        ns: "kube-system",
        pod: "etcd-node-a",
        container: "etcd",
        from: END - DAY,
        to: END,
    };
    series.extend(static_pod.cadvisor(
        cpu_counter(END - DAY, END, |_| 12),
        constant(END - DAY, END, 300.0 * MIB),
    ));
    series.extend(static_pod.ksm("Node", "node-a", (0.1, 0.0), (100.0 * MIB, 0.0)));
    write(&server.url(""), &series);
    for strategy in ["simple", "simple_limit", "vpa"] {
        let report = recommendations(&server, &format!("&window=1d&strategy={strategy}"));
        let odd = scan(&report, "odd");
        assert_eq!(odd["object"]["hpa"]["min_replicas"], 5.0);
        // The HPA's settings are unusable: nothing is replayed.
        assert!(
            odd["hpa_advice"].get("current_hpa_replay").is_none(),
            "{:#}",
            odd["hpa_advice"]
        );
        let etcd = scan(&report, "etcd-node-a");
        assert_eq!(etcd["object"]["kind"], "Pod");
        assert_eq!(etcd["patch"], Value::Null, "a bare pod cannot be patched");
    }
    for path in ["namespaces", "nodes"] {
        let url = server.url(&format!(
            "/api/v1/recommendations/{path}?time={}&window=1d",
            END / 1000
        ));
        assert_eq!(client().get(&url).send().unwrap().status(), 200, "{path}");
    }
}
