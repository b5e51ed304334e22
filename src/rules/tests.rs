use super::*;
use crate::storage::metrics::matcher::Matcher;
use crate::storage::metrics::StoreOptions;

fn context(store: Arc<MetricsStore>) -> Context {
    let config: Config = toml::from_str(crate::config::DEFAULT_CONFIG).unwrap();
    let metrics = SelfMetrics::new();
    let mut alerting = config.alerting.clone();
    alerting.alertmanagers = vec!["http://127.0.0.1:1".into()];
    Context {
        store,
        logs: None,
        engine: EngineOptions::default(),
        external_labels: BTreeMap::from([("cluster".to_owned(), "eu1".to_owned())]),
        external_url: "http://oxeye".into(),
        outage_tolerance_ms: 3_600_000,
        for_grace_period_ms: 600_000,
        resend_delay_ms: 60_000,
        notifier: Notifier::new(&alerting, BTreeMap::new(), metrics.clone()),
        metrics,
    }
}

fn group(text: &str) -> Group {
    let spec = file::parse(text, std::path::Path::new("t.yml"))
        .unwrap()
        .remove(0);
    Group {
        interval: spec.interval.unwrap_or(Duration::from_secs(60)),
        query_offset: Duration::ZERO,
        state: Mutex::new(GroupState {
            rules: spec.rules.iter().cloned().map(RuleState::new).collect(),
            last_evaluation_ms: None,
            evaluation_seconds: 0.0,
            should_restore: true,
        }),
        spec,
    }
}

fn put(store: &MetricsStore, pairs: &[(&str, &str)], t: i64, v: f64) {
    let seq = write_samples(store, &[(Labels::from_pairs(pairs.iter().copied()), v)], t).unwrap();
    store.sync_to(seq).unwrap();
}

fn series(store: &MetricsStore, name: &str) -> Vec<(String, Vec<(i64, f64)>)> {
    store
        .select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
        .into_iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|s| (s.t, s.v)).collect(),
            )
        })
        .collect()
}

const MIN: i64 = 60_000;

fn open(dir: &std::path::Path) -> Arc<MetricsStore> {
    MetricsStore::open(StoreOptions::new(dir)).unwrap()
}

#[test]
fn recording_rules_write_series_and_stale_markers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ctx = context(store.clone());
    let g = group(
        "groups:\n  - name: r\n    labels: {team: a}\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n        labels: {src: rule}\n",
    );
    let t0 = 1_000 * MIN;
    put(
        &store,
        &[("__name__", "up"), ("job", "a"), ("i", "1")],
        t0,
        1.0,
    );
    put(
        &store,
        &[("__name__", "up"), ("job", "a"), ("i", "2")],
        t0,
        1.0,
    );
    put(
        &store,
        &[("__name__", "up"), ("job", "b"), ("i", "1")],
        t0,
        0.0,
    );
    evaluate_group(&ctx, &g, t0);
    let got = series(&store, "job:up:sum");
    assert_eq!(
        got,
        vec![
            (
                "job:up:sum{job=\"a\", src=\"rule\", team=\"a\"}".to_owned(),
                vec![(t0, 2.0)]
            ),
            (
                "job:up:sum{job=\"b\", src=\"rule\", team=\"a\"}".to_owned(),
                vec![(t0, 0.0)]
            ),
        ]
    );
    // job b disappears: its recorded series gets a stale marker.
    put(
        &store,
        &[("__name__", "up"), ("job", "a"), ("i", "1")],
        t0 + MIN,
        1.0,
    );
    put(
        &store,
        &[("__name__", "up"), ("job", "a"), ("i", "2")],
        t0 + MIN,
        1.0,
    );
    // (b's last sample is older than the lookback only after 5m)
    evaluate_group(&ctx, &g, t0 + 6 * MIN);
    let got = series(&store, "job:up:sum");
    let b = &got[1].1;
    assert_eq!(b.len(), 2);
    assert!(crate::model::is_stale_nan(b[1].1));
    let state = g.state.lock();
    assert_eq!(state.rules[0].health, Health::Ok);
}

#[test]
fn alerts_go_pending_firing_resolved_with_for_and_keep_firing_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ctx = context(store.clone());
    let g = group(
        r#"
groups:
  - name: a
    rules:
      - alert: HighErrors
        expr: errors > 5
        for: 2m
        keep_firing_for: 3m
        labels:
          severity: "{{ if gt $value 5.0 }}page{{ else }}ticket{{ end }}"
        annotations:
          summary: "{{ $labels.svc }} has {{ $value }} errors ({{ $externalLabels.cluster }})"
"#,
    );
    let t0 = 2_000 * MIN;
    let at = |i: i64| t0 + i * MIN;
    let state_of = |g: &Group| -> Vec<(String, AlertState)> {
        g.state.lock().rules[0]
            .active
            .values()
            .map(|a| (a.labels["svc"].clone(), a.state))
            .collect()
    };
    put(
        &store,
        &[("__name__", "errors"), ("svc", "api")],
        at(0),
        7.0,
    );
    evaluate_group(&ctx, &g, at(0));
    assert_eq!(state_of(&g), vec![("api".into(), AlertState::Pending)]);
    {
        let s = g.state.lock();
        let alert = s.rules[0].active.values().next().unwrap();
        assert_eq!(alert.labels["severity"], "page");
        assert_eq!(alert.labels["alertname"], "HighErrors");
        assert_eq!(alert.annotations["summary"], "api has 7 errors (eu1)");
    }
    put(
        &store,
        &[("__name__", "errors"), ("svc", "api")],
        at(1),
        12.0,
    );
    evaluate_group(&ctx, &g, at(1));
    assert_eq!(state_of(&g), vec![("api".into(), AlertState::Pending)]);
    put(
        &store,
        &[("__name__", "errors"), ("svc", "api")],
        at(2),
        12.0,
    );
    evaluate_group(&ctx, &g, at(2));
    assert_eq!(state_of(&g), vec![("api".into(), AlertState::Firing)]);
    // Pending → firing was queued for Alertmanager (pending never is).
    assert_eq!(ctx.notifier.queue_length(), 1);
    // The condition clears: keep_firing_for holds it firing for 3m.
    put(
        &store,
        &[("__name__", "errors"), ("svc", "api")],
        at(3),
        1.0,
    );
    evaluate_group(&ctx, &g, at(3));
    assert_eq!(state_of(&g), vec![("api".into(), AlertState::Firing)]);
    put(
        &store,
        &[("__name__", "errors"), ("svc", "api")],
        at(6),
        1.0,
    );
    evaluate_group(&ctx, &g, at(6));
    assert_eq!(state_of(&g), vec![("api".into(), AlertState::Inactive)]);
    {
        let s = g.state.lock();
        let rule = &s.rules[0];
        let alert = rule.active.values().next().unwrap();
        assert_eq!(alert.resolved_at, Some(at(6)));
        let changes: Vec<(AlertState, AlertState)> =
            rule.history.iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(
            changes,
            vec![
                (AlertState::Firing, AlertState::Inactive),
                (AlertState::Pending, AlertState::Firing),
                (AlertState::Inactive, AlertState::Pending),
            ]
        );
    }
    // The resolution is sent too.
    assert_eq!(ctx.notifier.queue_length(), 2);
    // ALERTS and ALERTS_FOR_STATE were written after the first evaluation.
    let alerts = series(&store, "ALERTS");
    assert!(alerts
        .iter()
        .any(|(l, _)| l.contains("alertstate=\"firing\"") && l.contains("svc=\"api\"")));
    let for_state = series(&store, "ALERTS_FOR_STATE");
    assert_eq!(for_state.len(), 1);
    assert_eq!(for_state[0].1[0].1, (at(0) / 1000) as f64);
}

#[test]
fn limit_fails_all_alerts_and_errors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ctx = context(store.clone());
    let g = group(
        "groups:\n  - name: l\n    limit: 1\n    rules:\n      - alert: Many\n        expr: x > 0\n      - record: bad\n        expr: 'label_replace(x, \"a\", \"\", \"b\", \"(\")'\n      - alert: After\n        expr: vector(1)\n",
    );
    let t = 3_000 * MIN;
    put(&store, &[("__name__", "x"), ("i", "1")], t, 1.0);
    put(&store, &[("__name__", "x"), ("i", "2")], t, 1.0);
    evaluate_group(&ctx, &g, t);
    let s = g.state.lock();
    assert_eq!(s.rules[0].health, Health::Err);
    assert_eq!(s.rules[0].last_error, "exceeded limit of 1 with 2 alerts");
    assert!(s.rules[0].active.is_empty());
    assert_eq!(s.rules[1].health, Health::Err);
    assert!(!s.rules[1].last_error.is_empty());
    // Evaluation went on with the next rule.
    assert_eq!(s.rules[2].health, Health::Ok);
    assert_eq!(s.rules[2].state(), AlertState::Firing);
}

#[test]
fn for_state_is_restored_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let text = "groups:\n  - name: r\n    rules:\n      - alert: Slow\n        expr: up == 0\n        for: 30m\n";
    let t0 = 4_000 * MIN;
    {
        let ctx = context(store.clone());
        let g = group(text);
        for i in 0..=10 {
            put(&store, &[("__name__", "up"), ("i", "1")], t0 + i * MIN, 0.0);
            evaluate_group(&ctx, &g, t0 + i * MIN);
        }
        assert_eq!(g.state.lock().rules[0].state(), AlertState::Pending);
    }
    // Down for 5 minutes; a new manager starts with fresh state.
    let ctx = context(store.clone());
    let g = group(text);
    let t1 = t0 + 15 * MIN;
    put(&store, &[("__name__", "up"), ("i", "1")], t1, 0.0);
    evaluate_group(&ctx, &g, t1);
    let active_at = g.state.lock().rules[0]
        .active
        .values()
        .next()
        .unwrap()
        .active_at;
    // Pending for 10m before going down; the 5m outage is added.
    assert_eq!(active_at, t0 + 5 * MIN);
    // 30m after the restored start it fires (not 30m after the restart).
    for i in 1..=20 {
        put(&store, &[("__name__", "up"), ("i", "1")], t1 + i * MIN, 0.0);
        evaluate_group(&ctx, &g, t1 + i * MIN);
    }
    assert_eq!(g.state.lock().rules[0].state(), AlertState::Firing);
}

#[test]
fn eval_timestamps_are_aligned_and_stable() {
    let g = group("groups:\n  - name: x\n    interval: 15s\n    rules: []\n");
    let a = g.eval_timestamp(1_000_000_000);
    let b = g.eval_timestamp(1_000_000_000 + 7_000);
    assert!(a <= 1_000_000_000 && 1_000_000_000 - a < 15_000);
    assert!(b == a || b == a + 15_000);
    assert_eq!((g.eval_timestamp(a + 15_000 * 10) - a) % 15_000, 0);
}

#[test]
fn alert_values_are_formatted_as_prometheus_does() {
    assert_eq!(format_value_e(1.0), "1e+00");
    assert_eq!(format_value_e(0.25), "2.5e-01");
    assert_eq!(format_value_e(12345.0), "1.2345e+04");
}

#[test]
fn a_full_notification_queue_drops_the_oldest_and_counts_them() {
    let config: Config = toml::from_str(crate::config::DEFAULT_CONFIG).unwrap();
    let mut alerting = config.alerting.clone();
    alerting.alertmanagers = vec!["http://127.0.0.1:1".into()];
    alerting.queue_capacity = 2;
    let metrics = SelfMetrics::new();
    let notifier = Notifier::new(
        &alerting,
        BTreeMap::from([("cluster".to_owned(), "eu1".to_owned())]),
        metrics.clone(),
    );
    let alert = |name: &str| AmAlert {
        labels: BTreeMap::from([("alertname".to_owned(), name.to_owned())]),
        annotations: BTreeMap::new(),
        starts_at_ms: 0,
        ends_at_ms: 1,
        generator_url: String::new(),
    };
    notifier.send(vec![
        alert("a"),
        alert("b"),
        alert("c"),
        alert("d"),
        alert("e"),
    ]);
    assert_eq!(notifier.queue_length(), 2);
    let exposition = metrics.render_text_for_tests();
    assert!(
        exposition.contains("oxeye_notifications_dropped_total 3"),
        "{exposition}"
    );
    assert!(exposition.contains("oxeye_notifications_queue_length 2"));
    // Times as Alertmanager reads them.
    let body = notifier::encode(&[alert("x")]);
    assert_eq!(body[0]["endsAt"], "1970-01-01T00:00:00.001Z");
}
