//! Recording and alerting rules, evaluated as Prometheus' rules manager
//! evaluates them, with alerts delivered to Alertmanager.
//!
//! - `file.rs`: rule files (Prometheus' format and checks).
//! - `template.rs`: the Go-template subset of labels and annotations.
//! - `notifier.rs`: the bounded queue to Alertmanager (API v2).
//! - here: groups, each evaluated on its own task at aligned timestamps
//!   (Prometheus' `EvalTimestamp`: the interval, offset by a hash of the
//!   group's file and name), its rules in order on a blocking thread.
//!   Recording rules write their series into the metrics store (with stale
//!   markers for series that stop); alerting rules keep Prometheus' state
//!   machine (inactive → pending → firing → resolved, `for`,
//!   `keep_firing_for`), write `ALERTS` and `ALERTS_FOR_STATE`, and restore
//!   `for` state after a restart from `ALERTS_FOR_STATE`.

pub mod file;
pub mod logsource;
pub mod notifier;
pub mod template;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Config;
use crate::model::{Labels, Sample, STALE_NAN_BITS};
use crate::query::promql::{self, EngineOptions, Value};
use crate::selfmon::SelfMetrics;
use crate::storage::metrics::{MetricsStore, SeriesWrite};

use self::file::{GroupSpec, RuleKind, RuleSpec};
use self::notifier::{AmAlert, Notifier};
use self::template::{AlertData, QueryFn, Template};

/// How long a resolved alert is kept (and re-sent as resolved), as
/// Prometheus' `resolvedRetention`.
const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// State changes remembered per rule for the dashboard.
const HISTORY: usize = 50;

/// Parse a rule expression with the same depth guard as queries.
pub fn parse_expr(expr: &str) -> Result<promql_parser::parser::Expr, String> {
    promql::check_depth(expr, promql::max_expression_depth()).map_err(|e| e.to_string())?;
    promql::with_stack(|| promql::parse(expr)).map_err(|e| e.to_string())
}

/// Check a rule expression (see [`parse_expr`]).
pub fn check_expr(expr: &str) -> Result<(), String> {
    parse_expr(expr).map(drop)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// An alert of an alerting rule (times in ms).
#[derive(Debug, Clone)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: i64,
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        match (self.resolved_at, self.last_sent_at) {
            (Some(resolved), Some(sent)) if resolved > sent => true,
            (Some(_), None) => true,
            (_, None) => true,
            (_, Some(sent)) => sent.saturating_add(resend_delay_ms) < ts,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A state change of an alert, for the dashboard's history.
#[derive(Debug, Clone)]
pub struct Transition {
    pub at_ms: i64,
    pub labels: BTreeMap<String, String>,
    pub from: AlertState,
    pub to: AlertState,
    pub value: f64,
}

/// A rule and what its evaluations left.
#[derive(Debug, Clone)]
pub struct RuleState {
    pub spec: RuleSpec,
    pub health: Health,
    pub last_error: String,
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_seconds: f64,
    pub active: BTreeMap<BTreeMap<String, String>, Alert>,
    pub history: VecDeque<Transition>,
    /// Series written by the last evaluation (for stale markers).
    written: HashSet<Labels>,
    /// Whether `ALERTS`/`ALERTS_FOR_STATE` are written (after the restore).
    restored: bool,
}

impl RuleState {
    fn new(spec: RuleSpec) -> RuleState {
        RuleState {
            spec,
            health: Health::Unknown,
            last_error: String::new(),
            last_evaluation_ms: None,
            evaluation_seconds: 0.0,
            active: BTreeMap::new(),
            history: VecDeque::new(),
            written: HashSet::new(),
            restored: false,
        }
    }

    /// The rule's state: the most severe of its alerts.
    pub fn state(&self) -> AlertState {
        let mut state = AlertState::Inactive;
        for alert in self.active.values() {
            match alert.state {
                AlertState::Firing => return AlertState::Firing,
                AlertState::Pending => state = AlertState::Pending,
                AlertState::Inactive => {}
            }
        }
        state
    }

    fn same_rule(&self, other: &RuleSpec) -> bool {
        let a = &self.spec;
        a.name == other.name
            && a.expr == other.expr
            && a.labels == other.labels
            && a.is_alert() == other.is_alert()
    }
}

/// A rule group: its specification and the state of its rules.
#[derive(Debug)]
pub struct Group {
    pub spec: GroupSpec,
    pub interval: Duration,
    pub query_offset: Duration,
    pub state: Mutex<GroupState>,
}

#[derive(Debug, Clone)]
pub struct GroupState {
    pub rules: Vec<RuleState>,
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_seconds: f64,
    /// Whether the `for` state still has to be restored (first evaluation
    /// after start).
    should_restore: bool,
}

impl Group {
    /// Prometheus' `Group.hash`-based offset: the evaluation timestamp at or
    /// before `now_ms`.
    pub fn eval_timestamp(&self, now_ms: i64) -> i64 {
        let interval = i64::try_from(self.interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let key = Labels::from_pairs([
            ("file", self.spec.file.to_string_lossy().into_owned()),
            ("name", self.spec.name.clone()),
        ]);
        let offset = (key.hash() % interval as u64) as i64;
        let adjusted = now_ms.saturating_sub(offset);
        adjusted - adjusted.rem_euclid(interval) + offset
    }
}

/// What evaluation needs from the server.
pub struct Context {
    pub store: Arc<MetricsStore>,
    /// For `oxeye_log_records{…}` selectors (see `logsource.rs`).
    pub logs: Option<Arc<crate::storage::logs::LogStore>>,
    pub engine: EngineOptions,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    pub outage_tolerance_ms: i64,
    pub for_grace_period_ms: i64,
    pub resend_delay_ms: i64,
    pub notifier: Arc<Notifier>,
    pub metrics: Arc<SelfMetrics>,
}

/// All rule groups, their tasks and reloads.
pub struct RuleManager {
    context: Arc<Context>,
    files: Vec<String>,
    base_dir: PathBuf,
    default_interval: Duration,
    default_query_offset: Duration,
    groups: parking_lot::RwLock<Vec<Arc<Group>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub last_reload_error: Mutex<Option<String>>,
}

/// Every rule group in the files of `patterns`, or every problem found.
pub fn load_groups(base: &std::path::Path, patterns: &[String]) -> Result<Vec<GroupSpec>, String> {
    let files = file::expand_globs(base, patterns)?;
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        match file::load_file(&path) {
            Ok(g) => groups.extend(g),
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors.join("\n"))
    }
}

impl RuleManager {
    pub fn new(
        config: &Config,
        store: Arc<MetricsStore>,
        logs: Option<Arc<crate::storage::logs::LogStore>>,
        metrics: Arc<SelfMetrics>,
    ) -> Arc<RuleManager> {
        let rules = &config.rules;
        let external_url = if rules.external_url.is_empty() {
            format!("http://{}", config.server.listen)
        } else {
            rules.external_url.trim_end_matches('/').to_owned()
        };
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let notifier = Notifier::new(&config.alerting, rules.external_labels(), metrics.clone());
        Arc::new(RuleManager {
            context: Arc::new(Context {
                store,
                logs,
                engine: EngineOptions {
                    lookback_ms: ms(config.query.lookback_delta),
                    max_samples: config.query.max_samples,
                    timeout: config.query.timeout,
                    ..EngineOptions::default()
                },
                external_labels: rules.external_labels(),
                external_url,
                outage_tolerance_ms: ms(rules.outage_tolerance),
                for_grace_period_ms: ms(rules.for_grace_period),
                resend_delay_ms: ms(rules.resend_delay),
                notifier,
                metrics,
            }),
            files: rules.files.clone(),
            base_dir: config.dir.clone(),
            default_interval: rules.evaluation_interval,
            default_query_offset: rules.query_offset,
            groups: parking_lot::RwLock::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            last_reload_error: Mutex::new(None),
        })
    }

    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.context.notifier
    }

    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.groups.read().clone()
    }

    /// Re-read the rule files. On any error the running rules stay as they
    /// are and the error is returned (and kept for `/api/v1/status`).
    /// Rules unchanged across the reload keep their state.
    pub fn reload(self: &Arc<Self>) -> Result<usize, String> {
        let specs = match load_groups(&self.base_dir, &self.files) {
            Ok(specs) => specs,
            Err(e) => {
                self.context.metrics.rule_reload(false);
                *self.last_reload_error.lock() = Some(e.clone());
                return Err(e);
            }
        };
        for (name, n) in file::duplicates(&specs) {
            tracing::warn!(rule = %name, count = n, "rule defined more than once with the same expression and labels");
        }
        let old = self.groups();
        let mut groups = Vec::with_capacity(specs.len());
        for spec in specs {
            let previous = old
                .iter()
                .find(|g| g.spec.file == spec.file && g.spec.name == spec.name);
            let mut old_rules: Vec<RuleState> = previous
                .map(|g| g.state.lock().rules.clone())
                .unwrap_or_default();
            let rules = spec
                .rules
                .iter()
                .map(|r| match old_rules.iter().position(|o| o.same_rule(r)) {
                    Some(i) => {
                        let mut kept = old_rules.remove(i);
                        kept.spec = r.clone();
                        kept
                    }
                    None => RuleState::new(r.clone()),
                })
                .collect();
            let should_restore = previous.is_none_or(|g| g.state.lock().should_restore);
            groups.push(Arc::new(Group {
                interval: spec.interval.unwrap_or(self.default_interval),
                query_offset: spec.query_offset.unwrap_or(self.default_query_offset),
                spec,
                state: Mutex::new(GroupState {
                    rules,
                    last_evaluation_ms: None,
                    evaluation_seconds: 0.0,
                    should_restore,
                }),
            }));
        }
        let count = groups.len();
        {
            let mut tasks = self.tasks.lock();
            for task in tasks.drain(..) {
                task.abort();
            }
            for group in &groups {
                let context = self.context.clone();
                let group = group.clone();
                tasks.push(tokio::spawn(run_group(context, group)));
            }
            *self.groups.write() = groups;
        }
        self.context.metrics.rule_reload(true);
        *self.last_reload_error.lock() = None;
        Ok(count)
    }

    /// Stop every group's task.
    pub fn stop(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

async fn run_group(context: Arc<Context>, group: Arc<Group>) {
    let interval = i64::try_from(group.interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let mut next = group
        .eval_timestamp(crate::now_ms())
        .saturating_add(interval);
    loop {
        let now = crate::now_ms();
        if next > now {
            tokio::time::sleep(Duration::from_millis((next - now) as u64)).await;
        }
        // Missed ticks are skipped, as Prometheus does.
        let now = crate::now_ms();
        let missed = (now - next) / interval;
        if missed > 0 {
            context
                .metrics
                .rule_group_missed(&group.spec.name, missed as u64);
            next += missed * interval;
        }
        let ts = next;
        let (c, g) = (context.clone(), group.clone());
        // An evaluation that panics fails alone; the group keeps running.
        let _ =
            tokio::task::spawn_blocking(move || promql::with_stack(|| evaluate_group(&c, &g, ts)))
                .await;
        next = next.saturating_add(interval);
    }
}

/// The query function of templates: an instant query at the rule's time.
struct TemplateQuery<'a> {
    context: &'a Context,
    t: i64,
}

impl QueryFn for TemplateQuery<'_> {
    fn query(&self, expr: &str) -> Result<template::QueryRows, String> {
        Ok(query(self.context, expr, self.t)?
            .into_iter()
            .map(|(labels, v)| (labels.pairs().iter().cloned().collect(), v))
            .collect())
    }
}

/// Evaluate `expr` at `t` over the metrics store and log selectors.
fn query(context: &Context, expr: &str, t: i64) -> Result<Vec<(Labels, f64)>, String> {
    let parsed = parse_expr(expr)?;
    query_parsed(context, &parsed, t)
}

/// [`query`] for an expression parsed once, at load.
fn query_parsed(
    context: &Context,
    expr: &promql_parser::parser::Expr,
    t: i64,
) -> Result<Vec<(Labels, f64)>, String> {
    let source = logsource::RuleSource {
        metrics: &context.store,
        logs: context.logs.as_ref(),
    };
    logsource::take_error();
    let result = promql::instant_query_expr(&source, &context.engine, expr, t);
    if let Some(e) = logsource::take_error() {
        return Err(e);
    }
    vector(result.map_err(|e| e.to_string())?.value)
}

/// An instant result as `(labels, value)` (a scalar is one unlabelled
/// sample), or Prometheus' error for other types.
fn vector(value: Value) -> Result<Vec<(Labels, f64)>, String> {
    match value {
        Value::Vector(series) => Ok(series
            .iter()
            .filter_map(|s| {
                let v = s.values.first().copied().flatten()?;
                Some(((*promql::value::effective_labels(s)).clone(), v))
            })
            .collect()),
        Value::Scalar(values) => Ok(values
            .first()
            .map(|v| vec![(Labels::from_pairs::<&str, &str>([]), *v)])
            .unwrap_or_default()),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

/// Evaluate every rule of `group` at `ts` (ms), write their series and
/// queue their alerts.
pub fn evaluate_group(context: &Context, group: &Group, ts: i64) {
    let started = Instant::now();
    let query_ts = ts.saturating_sub(i64::try_from(group.query_offset.as_millis()).unwrap_or(0));
    let mut state = group.state.lock().clone();
    let mut to_send: Vec<AmAlert> = Vec::new();
    // One WAL fsync per group evaluation, not one per rule.
    let mut last_seq = 0;
    for rule in &mut state.rules {
        let rule_started = Instant::now();
        let result = match &rule.spec.kind {
            RuleKind::Record => record(context, group, rule, query_ts),
            RuleKind::Alert { .. } => alert(context, group, rule, query_ts),
        };
        let samples = match result {
            Ok(samples) => {
                rule.health = Health::Ok;
                rule.last_error.clear();
                samples
            }
            Err(e) => {
                rule.health = Health::Err;
                rule.last_error = e;
                context.metrics.rule_evaluation_failed(&group.spec.name);
                Vec::new()
            }
        };
        // Stale markers for series the rule wrote last time but not now.
        let now_written: HashSet<Labels> = samples.iter().map(|(l, _)| l.clone()).collect();
        let mut writes = samples;
        for gone in rule.written.difference(&now_written) {
            writes.push((gone.clone(), f64::from_bits(STALE_NAN_BITS)));
        }
        rule.written = now_written;
        match write_samples(&context.store, &writes, query_ts) {
            Ok(seq) => last_seq = last_seq.max(seq),
            Err(e) => {
                rule.health = Health::Err;
                rule.last_error = format!("writing results: {e}");
                context.metrics.rule_evaluation_failed(&group.spec.name);
            }
        }
        if rule.spec.is_alert() {
            let interval_ms = i64::try_from(group.interval.as_millis()).unwrap_or(i64::MAX);
            let delta = context.resend_delay_ms.max(interval_ms);
            let generator_url = format!(
                "{}/ui/metrics?query={}",
                context.external_url,
                form_urlencoded::byte_serialize(rule.spec.expr.as_bytes()).collect::<String>()
            );
            for alert in rule.active.values_mut() {
                if alert.needs_sending(query_ts, context.resend_delay_ms) {
                    alert.last_sent_at = Some(query_ts);
                    alert.valid_until = query_ts.saturating_add(delta.saturating_mul(4));
                    to_send.push(AmAlert {
                        labels: alert.labels.clone(),
                        annotations: alert.annotations.clone(),
                        starts_at_ms: alert.fired_at.unwrap_or(alert.active_at),
                        ends_at_ms: alert.resolved_at.unwrap_or(alert.valid_until),
                        generator_url: generator_url.clone(),
                    });
                }
            }
        }
        rule.last_evaluation_ms = Some(ts);
        rule.evaluation_seconds = rule_started.elapsed().as_secs_f64();
    }
    if let Err(e) = context.store.sync_to(last_seq) {
        tracing::error!(group = %group.spec.name, error = %e, "syncing rule results failed");
        context.metrics.rule_evaluation_failed(&group.spec.name);
    }
    if state.should_restore {
        restore_for_state(context, &mut state, query_ts);
        state.should_restore = false;
    }
    state.last_evaluation_ms = Some(ts);
    state.evaluation_seconds = started.elapsed().as_secs_f64();
    context
        .metrics
        .rule_group_evaluated(&group.spec.name, state.evaluation_seconds);
    *group.state.lock() = state;
    if !to_send.is_empty() {
        context.notifier.send(to_send);
    }
}

/// Append a rule's results (readable by the next rule at once); returns
/// the WAL sequence to sync once the group is done.
fn write_samples(store: &MetricsStore, samples: &[(Labels, f64)], t: i64) -> Result<u64, String> {
    if samples.is_empty() {
        return Ok(0);
    }
    let keys: Vec<Vec<u8>> = samples.iter().map(|(l, _)| l.key()).collect();
    let refs: Vec<Vec<crate::model::LabelRef<'_>>> =
        samples.iter().map(|(l, _)| l.iter().collect()).collect();
    let values: Vec<[Sample; 1]> = samples.iter().map(|(_, v)| [Sample { t, v: *v }]).collect();
    let writes: Vec<SeriesWrite<'_>> = keys
        .iter()
        .zip(&refs)
        .zip(&values)
        .map(|((key, labels), samples)| SeriesWrite {
            hash: xxhash_rust::xxh3::xxh3_64(key),
            key,
            labels,
            samples,
            exemplars: &[],
        })
        .collect();
    let (outcome, seq) = store
        .append_unsynced(&writes, &[])
        .map_err(|e| e.to_string())?;
    match outcome.messages.first() {
        Some(first) if outcome.samples_accepted == 0 => Err(first.clone()),
        _ => Ok(seq),
    }
}

/// A recording rule: its series at `ts`.
fn record(
    context: &Context,
    group: &Group,
    rule: &RuleState,
    ts: i64,
) -> Result<Vec<(Labels, f64)>, String> {
    let rows = query_parsed(context, &rule.spec.parsed, ts)?;
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = HashSet::new();
    for (labels, v) in rows {
        let mut map: BTreeMap<String, String> = labels.pairs().iter().cloned().collect();
        map.insert(crate::model::METRIC_NAME.into(), rule.spec.name.clone());
        for (k, v) in group.spec.labels.iter().chain(&rule.spec.labels) {
            if v.is_empty() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
        let labels = Labels::from_pairs(map);
        if !seen.insert(labels.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push((labels, v));
    }
    if group.spec.limit > 0 && out.len() > group.spec.limit {
        return Err(format!(
            "exceeded limit of {} with {} series",
            group.spec.limit,
            out.len()
        ));
    }
    Ok(out)
}

fn expand(template: &str, name: &str, data: &AlertData, query: &dyn QueryFn) -> String {
    match Template::parse(&format!("__alert_{name}"), template).and_then(|t| t.expand(data, query))
    {
        Ok(text) => text,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

/// An alerting rule: Prometheus' `AlertingRule.Eval`. Returns the `ALERTS`
/// and `ALERTS_FOR_STATE` samples.
fn alert(
    context: &Context,
    group: &Group,
    rule: &mut RuleState,
    ts: i64,
) -> Result<Vec<(Labels, f64)>, String> {
    let RuleKind::Alert {
        for_,
        keep_firing_for,
        annotations,
    } = &rule.spec.kind
    else {
        unreachable!("alert() is called for alerting rules");
    };
    let hold_ms = i64::try_from(for_.as_millis()).unwrap_or(i64::MAX);
    let keep_ms = i64::try_from(keep_firing_for.as_millis()).unwrap_or(i64::MAX);
    let rows = query_parsed(context, &rule.spec.parsed, ts)?;
    let query = TemplateQuery { context, t: ts };
    let name = rule.spec.name.clone();
    let mut current: BTreeMap<BTreeMap<String, String>, Alert> = BTreeMap::new();
    for (labels, v) in rows {
        let data = AlertData {
            labels: labels.pairs().iter().cloned().collect(),
            value: v,
            external_labels: context.external_labels.clone(),
            external_url: context.external_url.clone(),
        };
        let mut alert_labels = data.labels.clone();
        alert_labels.remove(crate::model::METRIC_NAME);
        for (k, template) in group.spec.labels.iter().chain(&rule.spec.labels) {
            let value = expand(template, &name, &data, &query);
            if value.is_empty() {
                alert_labels.remove(k);
            } else {
                alert_labels.insert(k.clone(), value);
            }
        }
        alert_labels.insert("alertname".into(), name.clone());
        let expanded: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, t)| (k.clone(), expand(t, &name, &data, &query)))
            .collect();
        if current.contains_key(&alert_labels) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
        current.insert(
            alert_labels.clone(),
            Alert {
                labels: alert_labels,
                annotations: expanded,
                state: AlertState::Pending,
                value: v,
                active_at: ts,
                fired_at: None,
                resolved_at: None,
                last_sent_at: None,
                valid_until: 0,
                keep_firing_since: None,
            },
        );
    }
    let mut transitions = Vec::new();
    for (labels, new) in &current {
        match rule.active.get_mut(labels) {
            Some(existing) if existing.state != AlertState::Inactive => {
                existing.value = new.value;
                existing.annotations = new.annotations.clone();
            }
            _ => {
                transitions.push((
                    labels.clone(),
                    AlertState::Inactive,
                    AlertState::Pending,
                    new.value,
                ));
                rule.active.insert(labels.clone(), new.clone());
            }
        }
    }
    let mut out = Vec::new();
    let mut active_count = 0usize;
    let keys: Vec<BTreeMap<String, String>> = rule.active.keys().cloned().collect();
    for key in keys {
        let alert = rule.active.get_mut(&key).expect("key from the map");
        let before = alert.state;
        if !current.contains_key(&key) {
            let mut keep_firing = false;
            if alert.state == AlertState::Firing && keep_ms > 0 {
                let since = *alert.keep_firing_since.get_or_insert(ts);
                keep_firing = ts.saturating_sub(since) < keep_ms;
            }
            let expired = alert
                .resolved_at
                .is_some_and(|r| ts.saturating_sub(r) > RESOLVED_RETENTION_MS);
            let remove = alert.state == AlertState::Pending || expired;
            if alert.state != AlertState::Inactive && !keep_firing {
                alert.state = AlertState::Inactive;
                alert.resolved_at = Some(ts);
            }
            if before != alert.state {
                transitions.push((alert.labels.clone(), before, alert.state, alert.value));
            }
            if remove {
                rule.active.remove(&key);
            }
            if !keep_firing {
                continue;
            }
        } else {
            alert.keep_firing_since = None;
        }
        let alert = rule.active.get_mut(&key).expect("kept");
        active_count += 1;
        if alert.state == AlertState::Pending && ts.saturating_sub(alert.active_at) >= hold_ms {
            alert.state = AlertState::Firing;
            alert.fired_at = Some(ts);
        }
        if before != alert.state {
            transitions.push((alert.labels.clone(), before, alert.state, alert.value));
        }
        if rule.restored {
            let mut l = alert.labels.clone();
            l.insert(crate::model::METRIC_NAME.into(), "ALERTS".into());
            l.insert("alertstate".into(), alert.state.as_str().into());
            out.push((Labels::from_pairs(l), 1.0));
            let mut l = alert.labels.clone();
            l.insert(crate::model::METRIC_NAME.into(), "ALERTS_FOR_STATE".into());
            out.push((Labels::from_pairs(l), (alert.active_at / 1000) as f64));
        }
    }
    for (labels, from, to, value) in transitions {
        if from == AlertState::Inactive && to == AlertState::Inactive {
            continue;
        }
        rule.history.push_front(Transition {
            at_ms: ts,
            labels,
            from,
            to,
            value,
        });
        rule.history.truncate(HISTORY);
    }
    if group.spec.limit > 0 && active_count > group.spec.limit {
        rule.active.clear();
        return Err(format!(
            "exceeded limit of {} with {} alerts",
            group.spec.limit, active_count
        ));
    }
    Ok(out)
}

/// Prometheus' `RestoreForState`: after a restart, alerts that were pending
/// or firing get back the `ActiveAt` recorded in `ALERTS_FOR_STATE`, moved
/// by the downtime, if Oxeye was down for less than `outage_tolerance`.
fn restore_for_state(context: &Context, state: &mut GroupState, ts: i64) {
    use crate::storage::metrics::matcher::Matcher;
    let mint = ts.saturating_sub(context.outage_tolerance_ms);
    for rule in &mut state.rules {
        let RuleKind::Alert { for_, .. } = &rule.spec.kind else {
            continue;
        };
        let hold = i64::try_from(for_.as_millis()).unwrap_or(i64::MAX);
        if hold < context.for_grace_period_ms {
            rule.restored = true;
            continue;
        }
        for alert in rule.active.values_mut() {
            let mut matchers = vec![Matcher::equal(
                crate::model::METRIC_NAME,
                "ALERTS_FOR_STATE",
            )];
            matchers.extend(
                alert
                    .labels
                    .iter()
                    .map(|(k, v)| Matcher::equal(k.clone(), v.clone())),
            );
            let wanted = alert.labels.len() + 1;
            let found = context
                .store
                .select(&matchers, mint, ts)
                .into_iter()
                .find(|s| s.labels.len() == wanted);
            let Some(last) = found.and_then(|s| s.samples.last().copied()) else {
                continue;
            };
            if crate::model::is_stale_nan(last.v) || !last.v.is_finite() {
                continue;
            }
            let down_at = last.t / 1000 * 1000;
            let mut active_at = (last.v as i64).saturating_mul(1000);
            let remaining = hold - (down_at - active_at);
            if remaining <= 0 {
                // The hold duration had passed before the outage.
            } else if remaining < context.for_grace_period_ms {
                active_at = ts + context.for_grace_period_ms - hold;
            } else {
                active_at += ts - down_at;
            }
            alert.active_at = active_at;
        }
        rule.restored = true;
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as alert values appear in
/// Prometheus' API (`"1e+00"`).
pub fn format_value_e(v: f64) -> String {
    template::go_e(v, None)
}

/// RFC 3339 with nanoseconds, as Go prints times in JSON.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Every group's rules, for tests and the API: `(group, rules)`.
pub fn snapshot(groups: &[Arc<Group>]) -> Vec<(Arc<Group>, GroupState)> {
    groups
        .iter()
        .map(|g| (g.clone(), g.state.lock().clone()))
        .collect()
}

#[cfg(test)]
mod tests;
