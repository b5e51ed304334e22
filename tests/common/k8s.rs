//! Kubernetes fixtures for the recommendation tests: cAdvisor and
//! kube-state-metrics series of known shape over 8 days of November 2023,
//! written through remote_write.

use super::{post_remote_write, remote_write_body, TestSeries};

pub const MIB: f64 = 1024.0 * 1024.0;
pub const MINUTE: i64 = 60_000;
pub const DAY: i64 = 24 * 60 * MINUTE;
/// The end of every fixture: a whole minute in November 2023.
pub const END: i64 = 1_700_006_400_000;
pub const START: i64 = END - 8 * DAY;

pub type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

pub fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Minute timestamps of the fixture window.
pub fn minutes(from: i64, to: i64) -> impl Iterator<Item = i64> {
    (0..)
        .map(move |k| from + k * MINUTE)
        .take_while(move |t| *t <= to)
}

/// A CPU counter from per-minute core-seconds (integers, so every rate is
/// exact in binary floating point).
pub fn cpu_counter(from: i64, to: i64, per_minute: impl Fn(i64) -> i64) -> Vec<(i64, f64)> {
    let mut total = 1_000_000i64;
    minutes(from, to)
        .map(|t| {
            total += per_minute(t);
            (t, total as f64)
        })
        .collect()
}

pub fn gauge(from: i64, to: i64, value: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    minutes(from, to).map(|t| (t, value(t))).collect()
}

pub fn constant(from: i64, to: i64, v: f64) -> Vec<(i64, f64)> {
    gauge(from, to, |_| v)
}

pub struct Pod<'a> {
    pub ns: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub from: i64,
    pub to: i64,
}

impl Pod<'_> {
    pub fn cadvisor(&self, cpu: Vec<(i64, f64)>, memory: Vec<(i64, f64)>) -> Vec<Series> {
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
    pub fn ksm(
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

pub fn replicaset_owner(ns: &str, rs: &str, deployment: &str) -> Series {
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

pub fn write(base: &str, series: &[Series]) {
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

pub fn fixtures() -> Vec<Series> {
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
    // CFS: 600 periods a minute, 60 of them throttled (10 %), with a
    // counter reset on day 4.
    for (metric, per_minute) in [
        ("container_cpu_cfs_periods_total", 600.0),
        ("container_cpu_cfs_throttled_periods_total", 60.0),
    ] {
        let reset = START + 4 * DAY;
        all.push((
            labels(&[
                ("__name__", metric),
                ("namespace", "shop"),
                ("pod", "leaky-6b5c4d3f2-aaaaa"),
                ("container", "worker"),
            ]),
            gauge(START, END, move |t| {
                let since = if t >= reset {
                    t - reset + MINUTE
                } else {
                    t - START + MINUTE
                };
                (since / MINUTE) as f64 * per_minute
            }),
        ));
    }
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
        // OOMKilled from day 2; the container ends otherwise on day 5.
        gauge(START + cycle, END, |t| {
            if t < START + 5 * DAY {
                1.0
            } else {
                0.0
            }
        }),
    ));
    // The memory limit was 1 GiB while it was OOM-killed and was lowered
    // to 900 MiB on day 5: KRR's OOM term takes the limit while the reason
    // said OOMKilled, not today's.
    for (labels, samples) in all.iter_mut() {
        let is = |k: &str, v: &str| labels.iter().any(|(a, b)| a == k && b == v);
        if is("__name__", "kube_pod_container_resource_limits")
            && is("pod", "leaky-6b5c4d3f2-aaaaa")
            && is("resource", "memory")
        {
            for (t, v) in samples.iter_mut() {
                if *t >= START + 5 * DAY {
                    *v = 900.0 * MIB;
                }
            }
        }
    }

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

    // Three nodes of 4 cores and 16 GiB; a quota and a limit range in shop.
    for node in ["node-a", "node-b", "node-c"] {
        for (resource, v) in [("cpu", 4.0), ("memory", 16.0 * 1024.0 * MIB)] {
            all.push((
                labels(&[
                    ("__name__", "kube_node_status_allocatable"),
                    ("node", node),
                    ("resource", resource),
                ]),
                constant(START, END, v),
            ));
        }
    }
    all.push((
        labels(&[
            ("__name__", "kube_resourcequota"),
            ("namespace", "shop"),
            ("resourcequota", "shop-quota"),
            ("resource", "requests.cpu"),
            ("type", "hard"),
        ]),
        constant(START, END, 20.0),
    ));
    all.push((
        labels(&[
            ("__name__", "kube_limitrange"),
            ("namespace", "shop"),
            ("limitrange", "shop-limits"),
            ("resource", "cpu"),
            ("type", "Container"),
            ("constraint", "max"),
        ]),
        constant(START, END, 4.0),
    ));
    all
}
