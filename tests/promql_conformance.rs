//! Prometheus' own PromQL test suite (../shared/conformance/promqltest)
//! against Oxeye's engine over the real metrics store.
//!
//! Evals that do not pass yet are listed in `tests/promqltest_known_failures.txt`
//! (`file:line reason`). The runner fails when an unlisted eval fails *or* a
//! listed one passes, so the list only shrinks. `OXEYE_PROMQLTEST_RECORD=1`
//! rewrites the list from the current results.
//!
//! Not replicated from the reference runner: annotation checks (`expect
//! warn/info`). Replicated: the range-mode re-check of instant evals and the
//! `@`-modifier step-invariance re-runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oxeye::config::FsyncPolicy;
use oxeye::model::{LabelRef, Labels, Sample, STALE_NAN_BITS};
use oxeye::query::promql::{self, EngineOptions, EvalError, Value};
use oxeye::storage::metrics::{MetricsStore, SeriesWrite, StoreOptions};

const EPSILON: f64 = 1e-6;

fn suite_dir() -> PathBuf {
    std::env::var_os("OXEYE_PROMQLTEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/promqltest")
        })
}

fn known_failures_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/promqltest_known_failures.txt")
}

struct Store {
    _dir: tempfile::TempDir,
    store: Arc<MetricsStore>,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        // Test data may arrive in any time order and lie far in the past.
        let store = MetricsStore::open(StoreOptions {
            out_of_order_window_ms: i64::MAX / 4,
            retention_ms: i64::MAX / 4,
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_secs(3600),
            ..StoreOptions::new(dir.path())
        })
        .unwrap();
        Store { _dir: dir, store }
    }

    fn load(&self, labels: &Labels, samples: &[Sample]) {
        let refs: Vec<LabelRef<'_>> = labels.iter().collect();
        let outcome = self
            .store
            .append(
                &[SeriesWrite {
                    hash: labels.hash(),
                    key: &labels.key(),
                    labels: &refs,
                    samples,
                    exemplars: &[],
                }],
                &[],
            )
            .unwrap();
        assert_eq!(outcome.rejected_total(), 0, "{:?}", outcome.messages);
    }
}

/// Prometheus durations (`1h30m`, `10s53ms`, `0`), optionally negative.
fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('-') {
        return parse_duration_ms(rest).map(|v| -v);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(text.parse::<i64>().map_err(|e| e.to_string())? * 1000);
    }
    let mut total = 0i64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or(format!("bad duration {text:?}"))?;
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            other => return Err(format!("bad duration unit {other:?} in {text:?}")),
        };
        total += number * unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A quoted string with Go escapes; returns the string and the rest.
fn parse_quoted(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    let Some((_, quote)) = chars.next() else {
        return Err("expected a quoted string".into());
    };
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((out, &text[i + c.len_utf8()..]));
        }
        if c == '\\' && quote != '`' {
            match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err(format!("unterminated string in {text:?}"))
}

/// `metric{a="b"}`, `{__name__="m"}`, `{}` or `metric` → labels.
fn parse_series(text: &str) -> Result<Labels, String> {
    let text = text.trim();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let name_end = text.find('{').unwrap_or(text.len());
    let name = text[..name_end].trim();
    if !name.is_empty() {
        pairs.push(("__name__".into(), name.to_owned()));
    }
    let mut rest = text[name_end..].trim();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                if !after.trim().is_empty() {
                    return Err(format!("trailing text in {text:?}"));
                }
                break;
            }
            if rest.is_empty() {
                return Err(format!("unterminated series {text:?}"));
            }
            let (label, after) = if rest.starts_with('"') {
                parse_quoted(rest)?
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                    .unwrap_or(rest.len());
                (rest[..end].to_owned(), &rest[end..])
            };
            let after = after.trim_start();
            let Some(after) = after.strip_prefix('=') else {
                // `{"metric.name"}`: a quoted metric name alone.
                pairs.push(("__name__".into(), label));
                rest = after.trim_start();
                rest = rest.strip_prefix(',').unwrap_or(rest);
                continue;
            };
            let (value, after) = parse_quoted(after.trim_start())?;
            pairs.push((label, value));
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    Ok(Labels::from_pairs(pairs))
}

/// Split `series values…` at the end of the series descriptor.
fn split_series_line(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut in_quote = false;
    let mut depth = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => in_quote = !in_quote,
            b'{' if !in_quote => depth += 1,
            b'}' if !in_quote => {
                depth -= 1;
                if depth == 0 {
                    return (&line[..=i], line[i + 1..].trim());
                }
            }
            b' ' | b'\t' if !in_quote && depth == 0 => return (&line[..i], line[i..].trim()),
            _ => {}
        }
    }
    (line, "")
}

fn parse_number(text: &str) -> Result<f64, String> {
    let t = text.trim();
    match t {
        "Inf" | "+Inf" | "inf" | "+inf" => return Ok(f64::INFINITY),
        "-Inf" | "-inf" => return Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => return Ok(f64::NAN),
        "stale" => return Ok(f64::from_bits(STALE_NAN_BITS)),
        _ => {}
    }
    let (negative, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let v = i64::from_str_radix(hex, 16).map_err(|e| format!("{t}: {e}"))? as f64;
        return Ok(if negative { -v } else { v });
    }
    t.parse::<f64>()
        .map_err(|e| format!("bad number {t:?}: {e}"))
}

/// Expanding notation: `a`, `_`, `stale`, `axn`, `a+bxn`, `a-bxn`, `_xn`.
fn parse_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    let mut tokens = text.split_whitespace();
    while let Some(token) = tokens.next() {
        if token.starts_with("{{") {
            // A native histogram sample (not stored): its positions stay
            // empty so the float samples around it load at the right times.
            let mut last = token.to_owned();
            while !last.contains("}}") {
                last = tokens.next().ok_or("unterminated histogram")?.to_owned();
            }
            let repeat = last
                .rsplit_once("}}")
                .map(|(_, tail)| tail)
                .and_then(|tail| tail.rsplit_once('x'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .unwrap_or(0);
            out.extend(std::iter::repeat_n(None, repeat + 1));
            continue;
        }
        if token == "_" {
            out.push(None);
            continue;
        }
        // `0x59` is 0 repeated 59 more times (as in the upstream files), so
        // only a token with hex letters is read as a hex number.
        let is_hex = token.trim_start_matches(['-', '+']).starts_with("0x")
            && token[token.find('x').unwrap_or(0) + 1..]
                .chars()
                .any(|c| c.is_ascii_alphabetic());
        if let (false, Some(x)) = (is_hex, token.rfind('x')) {
            let (head, count) = (&token[..x], &token[x + 1..]);
            let count: usize = count
                .parse()
                .map_err(|_| format!("bad repeat in {token:?}"))?;
            if head == "_" {
                out.extend(std::iter::repeat_n(None, count));
                continue;
            }
            let op = head
                .char_indices()
                .skip(1)
                .filter(|(i, c)| {
                    (*c == '+' || *c == '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E')
                })
                .map(|(i, _)| i)
                .last();
            match op {
                Some(i) => {
                    let start = parse_number(&head[..i])?;
                    let step = parse_number(&head[i + 1..])?;
                    let step = if &head[i..=i] == "-" { -step } else { step };
                    for k in 0..=count {
                        out.push(Some(start + step * k as f64));
                    }
                }
                None => {
                    let value = parse_number(head)?;
                    out.extend(std::iter::repeat_n(Some(value), count + 1));
                }
            }
            continue;
        }
        out.push(Some(parse_number(token)?));
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Expected {
    Series(Vec<(Labels, Vec<Option<f64>>)>),
    Scalar(f64),
    String(String),
}

#[derive(Debug)]
struct Eval {
    line: usize,
    query: String,
    /// (start, end, step); instant evals have start == end and step 0.
    range: Option<(i64, i64, i64)>,
    at: i64,
    expect_fail: Option<(Option<String>, Option<String>)>,
    ordered: bool,
    /// `expect range vector from a to b step s`
    range_vector: Option<(i64, i64, i64)>,
    expected: Expected,
    /// The expected output has native histograms.
    expects_native: bool,
}

enum Command {
    Clear,
    /// Series to load, and whether the block has native histograms.
    Load(Vec<(Labels, Vec<Sample>)>, bool),
    Eval(Box<Eval>),
    Invalid(usize, String),
}

fn parse_file(text: &str) -> Vec<Command> {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_owned()
            }
        })
        .collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        if line.is_empty() {
            i += 1;
            continue;
        }
        let lineno = i + 1;
        let word = line.split_whitespace().next().unwrap_or("").to_lowercase();
        let block_end = (i + 1..lines.len())
            .find(|&j| lines[j].is_empty())
            .unwrap_or(lines.len());
        let body = &lines[i + 1..block_end];
        if word == "clear" {
            commands.push(Command::Clear);
            i += 1;
            continue;
        } else if word.starts_with("load") {
            match parse_load(line, body) {
                Ok(load) => {
                    let native = word == "load_with_nhcb" || body.iter().any(|l| l.contains("{{"));
                    commands.push(Command::Load(load, native))
                }
                Err(e) => commands.push(Command::Invalid(lineno, e)),
            }
        } else if word.starts_with("eval") {
            match parse_eval(lineno, line, body) {
                Ok(eval) => commands.push(Command::Eval(Box::new(eval))),
                Err(e) => commands.push(Command::Invalid(lineno, e)),
            }
        } else {
            commands.push(Command::Invalid(
                lineno,
                format!("unknown command {line:?}"),
            ));
        }
        i = block_end;
    }
    commands
}

fn parse_load(header: &str, body: &[String]) -> Result<Vec<(Labels, Vec<Sample>)>, String> {
    let mut words = header.split_whitespace();
    let kind = words.next().unwrap_or("");
    // `load_with_nhcb` also converts classic histograms to native ones; the
    // classic series themselves load as usual (evals on the native form fail).
    if kind != "load" && kind != "load_with_nhcb" {
        return Err(format!("{kind} is not supported"));
    }
    let interval = parse_duration_ms(words.next().ok_or("load without interval")?)?;
    // A series listed twice in one block: the later line's values win.
    let mut merged: Vec<(Labels, BTreeMap<i64, f64>)> = Vec::new();
    for line in body {
        let (series, values) = split_series_line(line);
        if series.ends_with("@st") {
            return Err("start timestamps are not supported".into());
        }
        let labels = parse_series(series)?;
        // Native-histogram series are skipped; evals that need them fail.
        let Ok(values) = parse_values(values) else {
            continue;
        };
        let index = match merged.iter().position(|(l, _)| *l == labels) {
            Some(index) => index,
            None => {
                merged.push((labels, BTreeMap::new()));
                merged.len() - 1
            }
        };
        for (k, v) in values.iter().enumerate() {
            if let Some(v) = v {
                merged[index].1.insert(k as i64 * interval, *v);
            }
        }
    }
    Ok(merged
        .into_iter()
        .map(|(labels, samples)| {
            (
                labels,
                samples.into_iter().map(|(t, v)| Sample { t, v }).collect(),
            )
        })
        .collect())
}

fn parse_eval(lineno: usize, header: &str, body: &[String]) -> Result<Eval, String> {
    let (keyword, rest) = header.split_once(char::is_whitespace).ok_or("empty eval")?;
    let rest = rest.trim();
    let mut eval = Eval {
        line: lineno,
        query: String::new(),
        range: None,
        at: 0,
        expect_fail: None,
        ordered: keyword == "eval_ordered",
        range_vector: None,
        expects_native: body.iter().any(|l| l.contains("{{")),
        expected: Expected::Series(Vec::new()),
    };
    if keyword == "eval_fail" {
        eval.expect_fail = Some((None, None));
    }
    if let Some(r) = rest.strip_prefix("instant") {
        let r = r
            .trim()
            .strip_prefix("at")
            .ok_or("instant eval without at")?
            .trim();
        let (time, query) = r.split_once(char::is_whitespace).ok_or("no query")?;
        eval.at = parse_duration_ms(time)?;
        eval.query = query.trim().to_owned();
    } else if let Some(r) = rest.strip_prefix("range") {
        let r = r
            .trim()
            .strip_prefix("from")
            .ok_or("range without from")?
            .trim();
        let (start, r) = r.split_once(" to ").ok_or("range without to")?;
        let (end, r) = r.trim().split_once(" step ").ok_or("range without step")?;
        let (step, query) = r.trim().split_once(char::is_whitespace).ok_or("no query")?;
        eval.range = Some((
            parse_duration_ms(start)?,
            parse_duration_ms(end)?,
            parse_duration_ms(step)?,
        ));
        eval.query = query.trim().to_owned();
    } else {
        return Err(format!("bad eval {header:?}"));
    }
    let mut series = Vec::new();
    for line in body {
        if eval.expect_fail.is_some() && keyword == "eval_fail" {
            if let Some(msg) = line.strip_prefix("expected_fail_message") {
                eval.expect_fail = Some((Some(msg.trim().to_owned()), None));
                break;
            }
            if let Some(re) = line.strip_prefix("expected_fail_regexp") {
                eval.expect_fail = Some((None, Some(re.trim().to_owned())));
                break;
            }
        }
        if let Some(r) = line.strip_prefix("expect range vector from") {
            let (start, r) = r.trim().split_once(" to ").ok_or("bad expect range")?;
            let (end, step) = r.trim().split_once(" step ").ok_or("bad expect range")?;
            eval.range_vector = Some((
                parse_duration_ms(start)?,
                parse_duration_ms(end)?,
                parse_duration_ms(step)?,
            ));
            continue;
        }
        if let Some(s) = line.strip_prefix("expect string") {
            let s = s.trim();
            eval.expected = Expected::String(
                s[1..s.len() - 1]
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\"),
            );
            continue;
        }
        if line.split_whitespace().next() == Some("expect") {
            let what = line["expect".len()..].trim();
            let (kind, matcher) = match what.split_once(char::is_whitespace) {
                Some((k, m)) => (k, Some(m.trim())),
                None => (what, None),
            };
            match kind {
                "fail" => {
                    let (msg, re) = match matcher {
                        Some(m) if m.starts_with("msg:") => (Some(m[4..].trim().to_owned()), None),
                        Some(m) if m.starts_with("regex:") => {
                            (None, Some(m[6..].trim().to_owned()))
                        }
                        _ => (None, None),
                    };
                    if eval.expect_fail.is_none() {
                        eval.expect_fail = Some((msg, re));
                    }
                }
                "ordered" => eval.ordered = true,
                // Annotations are not produced or checked (see the module docs).
                "warn" | "no_warn" | "info" | "no_info" => {}
                other => return Err(format!("unknown expect {other:?}")),
            }
            continue;
        }
        if let Ok(v) = parse_number(line) {
            if !line.contains(char::is_whitespace) {
                eval.expected = Expected::Scalar(v);
                break;
            }
        }
        let (s, values) = split_series_line(line);
        series.push((parse_series(s)?, parse_values(values)?));
    }
    if !series.is_empty() {
        eval.expected = Expected::Series(series);
    }
    Ok(eval)
}

fn almost_equal(a: f64, b: f64) -> bool {
    let stale = |v: f64| v.to_bits() == STALE_NAN_BITS;
    if stale(a) || stale(b) {
        return stale(a) && stale(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::MIN_POSITIVE;
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || a.abs() + b.abs() < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / (a.abs() + b.abs()).min(f64::MAX) < EPSILON
}

fn fmt_labels(labels: &Labels) -> String {
    labels.to_string()
}

/// Compare a result with the expectation; `Err` describes the difference.
fn compare(eval: &Eval, value: &Value, steps: &[i64]) -> Result<(), String> {
    // A range query's scalar result is a matrix with one label-less series.
    if let (Some(_), Value::Scalar(values)) = (eval.range, value) {
        let series = promql::StepSeries {
            labels: Arc::new(Labels::default()),
            values: values.iter().map(|v| Some(*v)).collect(),
            drop_name: false,
        };
        return compare(eval, &Value::Vector(vec![series]), steps);
    }
    match (&eval.expected, value) {
        (Expected::String(s), Value::String(got)) => (s == got)
            .then_some(())
            .ok_or(format!("expected string {s:?}, got {got:?}")),
        (Expected::Scalar(want), Value::Scalar(got)) => {
            let got = got[0];
            almost_equal(*want, got)
                .then_some(())
                .ok_or(format!("expected scalar {want}, got {got}"))
        }
        (Expected::Series(want), Value::Scalar(got)) => Err(format!(
            "expected {} series, got scalar {:?}",
            want.len(),
            got
        )),
        (Expected::Scalar(want), other) => {
            Err(format!("expected scalar {want}, got {}", other.type_name()))
        }
        (Expected::Series(want), Value::Vector(got)) => {
            if let Some((start, end, step)) = eval.range {
                // Range query: per series, point by point.
                let _ = (start, end);
                let mut wanted: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
                for (labels, values) in want {
                    let points = values
                        .iter()
                        .enumerate()
                        .filter_map(|(k, v)| v.map(|v| (start + k as i64 * step, v)))
                        .collect();
                    wanted.insert(labels.clone(), points);
                }
                let mut seen = 0;
                for series in got {
                    let points: Vec<(i64, f64)> = steps
                        .iter()
                        .zip(&series.values)
                        .filter_map(|(t, v)| v.map(|v| (*t, v)))
                        .collect();
                    if points.is_empty() {
                        continue;
                    }
                    seen += 1;
                    let Some(expected) = wanted.get(&series.labels) else {
                        return Err(format!(
                            "unexpected series {} {:?}",
                            fmt_labels(&series.labels),
                            points
                        ));
                    };
                    if expected.len() != points.len()
                        || expected
                            .iter()
                            .zip(&points)
                            .any(|(a, b)| a.0 != b.0 || !almost_equal(a.1, b.1))
                    {
                        return Err(format!(
                            "series {}: expected {:?}, got {:?}",
                            fmt_labels(&series.labels),
                            expected,
                            points
                        ));
                    }
                }
                if seen != wanted.len() {
                    return Err(format!("expected {} series, got {seen}", wanted.len()));
                }
                Ok(())
            } else {
                let got: Vec<(&Labels, f64)> = got
                    .iter()
                    .filter_map(|s| s.values[0].map(|v| (s.labels.as_ref(), v)))
                    .collect();
                if got.len() != want.len() {
                    return Err(format!(
                        "expected {} samples, got {}: {}",
                        want.len(),
                        got.len(),
                        got.iter()
                            .map(|(l, v)| format!("{} {v}", fmt_labels(l)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                for (position, (labels, value)) in got.iter().enumerate() {
                    let Some(index) = want.iter().position(|(l, _)| l == *labels) else {
                        return Err(format!("unexpected sample {} {value}", fmt_labels(labels)));
                    };
                    let expected = want[index].1.first().copied().flatten();
                    if !expected.is_some_and(|e| almost_equal(e, *value)) {
                        return Err(format!(
                            "{}: expected {expected:?}, got {value}",
                            fmt_labels(labels)
                        ));
                    }
                    if eval.ordered && index != position {
                        return Err(format!(
                            "{} at position {position}, expected {index}",
                            fmt_labels(labels)
                        ));
                    }
                }
                Ok(())
            }
        }
        (Expected::Series(want), Value::Matrix(got)) => {
            let Some((start, _, step)) = eval.range_vector else {
                return Err("got a range vector, expected an instant vector".into());
            };
            let mut wanted: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
            for (labels, values) in want {
                wanted.insert(
                    labels.clone(),
                    values
                        .iter()
                        .enumerate()
                        .filter_map(|(k, v)| v.map(|v| (start + k as i64 * step, v)))
                        .collect(),
                );
            }
            if wanted.len() != got.len() {
                return Err(format!(
                    "expected {} series, got {}",
                    wanted.len(),
                    got.len()
                ));
            }
            for series in got {
                let points: Vec<(i64, f64)> = series.samples.iter().map(|s| (s.t, s.v)).collect();
                let Some(expected) = wanted.get(&series.labels) else {
                    return Err(format!("unexpected series {}", fmt_labels(&series.labels)));
                };
                if expected.len() != points.len()
                    || expected
                        .iter()
                        .zip(&points)
                        .any(|(a, b)| a.0 != b.0 || !almost_equal(a.1, b.1))
                {
                    return Err(format!(
                        "series {}: expected {expected:?}, got {points:?}",
                        fmt_labels(&series.labels)
                    ));
                }
            }
            Ok(())
        }
        (_, other) => Err(format!("unexpected result type {}", other.type_name())),
    }
}

/// Functions whose value depends on the evaluation time itself.
const AT_MODIFIER_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];

fn has_unsafe_call(expr: &promql_parser::parser::Expr) -> bool {
    use promql_parser::parser::Expr;
    match expr {
        Expr::Call(call) => {
            AT_MODIFIER_UNSAFE.contains(&call.func.name)
                || call.args.args.iter().any(|a| has_unsafe_call(a))
        }
        Expr::Aggregate(a) => {
            has_unsafe_call(&a.expr) || a.param.as_ref().is_some_and(|p| has_unsafe_call(p))
        }
        Expr::Binary(b) => has_unsafe_call(&b.lhs) || has_unsafe_call(&b.rhs),
        Expr::Unary(u) => has_unsafe_call(&u.expr),
        Expr::Paren(p) => has_unsafe_call(&p.expr),
        Expr::Subquery(s) => has_unsafe_call(&s.expr),
        _ => false,
    }
}

/// Set `@ t` on every selector and subquery that has none, without
/// descending into subqueries, as the reference runner does.
fn pin_at(expr: &mut promql_parser::parser::Expr, t: i64) {
    use promql_parser::parser::{AtModifier, Expr};
    let at = || {
        let time = if t >= 0 {
            std::time::UNIX_EPOCH + Duration::from_millis(t as u64)
        } else {
            std::time::UNIX_EPOCH - Duration::from_millis((-t) as u64)
        };
        Some(AtModifier::At(time))
    };
    match expr {
        Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = at(),
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = at(),
        // Selectors inside a subquery keep their own times: the subquery's
        // `@` (set here if missing) already fixes where they are evaluated.
        Expr::Subquery(sq) if sq.at.is_none() => sq.at = at(),
        Expr::Call(call) => call.args.args.iter_mut().for_each(|a| pin_at(a, t)),
        Expr::Aggregate(a) => {
            pin_at(&mut a.expr, t);
            if let Some(p) = a.param.as_mut() {
                pin_at(p, t);
            }
        }
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, t);
            pin_at(&mut b.rhs, t);
        }
        Expr::Unary(u) => pin_at(&mut u.expr, t),
        Expr::Paren(p) => pin_at(&mut p.expr, t),
        _ => {}
    }
}

fn run_eval(store: &Store, eval: &Eval) -> Result<(), String> {
    let options = EngineOptions::default();
    let result = match eval.range {
        Some((start, end, step)) => promql::range_query(
            store.store.as_ref(),
            &options,
            &eval.query,
            start,
            end,
            step,
        ),
        None => promql::instant_query(store.store.as_ref(), &options, &eval.query, eval.at),
    };
    match (&eval.expect_fail, result) {
        (Some((msg, re)), Err(err)) => {
            let text = err.to_string();
            if let Some(msg) = msg {
                if !text.contains(msg.as_str()) && *msg != text {
                    return Err(format!("expected error {msg:?}, got {text:?}"));
                }
            }
            if let Some(re) = re {
                let regex = regex::Regex::new(re).map_err(|e| e.to_string())?;
                if !regex.is_match(&text) {
                    return Err(format!("expected error matching {re:?}, got {text:?}"));
                }
            }
            Ok(())
        }
        (Some(_), Ok(_)) => Err("expected an error, the query succeeded".into()),
        (None, Err(err)) => Err(format!("query failed: {err}")),
        (None, Ok(result)) => {
            compare(eval, &result.value, &result.steps)?;
            // Range-mode re-check of instant evals, as the reference runner does.
            let excluded = eval.range.is_some()
                || eval.range_vector.is_some()
                || eval.ordered
                || matches!(eval.expected, Expected::String(_))
                || ["start()", "end()", "range()", "step()"]
                    .iter()
                    .any(|f| eval.query.contains(f));
            if !excluded {
                let ranged = promql::range_query(
                    store.store.as_ref(),
                    &options,
                    &eval.query,
                    eval.at - 60_000,
                    eval.at + 60_000,
                    60_000,
                )
                .map_err(|e| format!("range-mode re-check failed: {e}"))?;
                let at_t = match ranged.value {
                    Value::Vector(series) => Value::Vector(
                        series
                            .into_iter()
                            .map(|mut s| {
                                s.values = vec![s.values[1]];
                                s
                            })
                            .collect(),
                    ),
                    Value::Scalar(values) => Value::Scalar(vec![values[1]]),
                    other => other,
                };
                compare(eval, &at_t, &[eval.at])
                    .map_err(|e| format!("range-mode re-check: {e}"))?;
            }
            // Step invariance: with `@ T` pinned everywhere, any evaluation
            // time must give the same answer.
            if eval.range.is_none() {
                let mut expr = promql::parse(&eval.query).map_err(|e| e.to_string())?;
                if !has_unsafe_call(&expr) {
                    pin_at(&mut expr, eval.at);
                    let times: Vec<i64> = if eval.at == 0 {
                        vec![-1000, 0, 1000]
                    } else {
                        vec![-10 * eval.at, 0, eval.at / 5, eval.at, 10 * eval.at]
                    };
                    for t in times {
                        let result =
                            promql::instant_query_expr(store.store.as_ref(), &options, &expr, t)
                                .map_err(|e| format!("@ re-run at {t}ms failed: {e}"))?;
                        compare(eval, &result.value, &[eval.at])
                            .map_err(|e| format!("@ re-run at {t}ms: {e}"))?;
                    }
                }
            }
            Ok(())
        }
    }
}

fn _unused(_: EvalError) {}

#[test]
fn promql_test_suite() {
    let dir = suite_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "Prometheus' PromQL test suite is missing at {} ({e}); it comes with ../shared (or set OXEYE_PROMQLTEST_DIR)",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    let known_text = std::fs::read_to_string(known_failures_path()).unwrap_or_default();
    let known: BTreeMap<String, String> = known_text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(' ') {
            Some((k, r)) => (k.to_owned(), r.to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    let (mut total_pass, mut total) = (0, 0);
    println!("{:<28} {:>6} {:>6}", "file", "passed", "evals");
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let mut store = Store::new();
        let (mut pass, mut count) = (0, 0);
        let mut load_error: Option<String> = None;
        let mut native_loaded = false;
        for command in parse_file(&text) {
            match command {
                Command::Clear => {
                    store = Store::new();
                    load_error = None;
                    native_loaded = false;
                }
                Command::Load(series, native) => {
                    native_loaded |= native;
                    for (labels, samples) in series {
                        store.load(&labels, &samples);
                    }
                }
                Command::Invalid(line, error) => {
                    // A load we cannot read makes the evals after it unreliable.
                    if text
                        .lines()
                        .nth(line - 1)
                        .is_some_and(|l| l.trim_start().starts_with("load"))
                    {
                        load_error = Some(error.clone());
                        continue;
                    }
                    count += 1;
                    let key = format!("{name}:{line}");
                    failures.insert(key, format!("[unparsed] {error}"));
                }
                Command::Eval(eval) => {
                    count += 1;
                    let key = format!("{name}:{}", eval.line);
                    let result = match &load_error {
                        Some(e) => Err(format!("data not loaded: {e}")),
                        None => run_eval(&store, &eval),
                    };
                    match result {
                        Ok(()) => pass += 1,
                        Err(e) => {
                            let category = if e.contains("parse error") {
                                "unsupported syntax"
                            } else if e.starts_with("data not loaded") {
                                "unsupported load"
                            } else if eval.expects_native || native_loaded {
                                "native histograms"
                            } else {
                                "differs"
                            };
                            failures.insert(key, format!("[{category}] {}", e.replace('\n', " ")));
                        }
                    }
                }
            }
        }
        println!("{name:<28} {pass:>6} {count:>6}");
        total_pass += pass;
        total += count;
    }
    println!("{:<28} {total_pass:>6} {total:>6}", "total");
    if std::env::var_os("OXEYE_PROMQLTEST_RECORD").is_some() {
        let mut out = String::from("# Evals of ../shared/conformance/promqltest that do not pass yet: `file:line reason`.\n# Regenerate with OXEYE_PROMQLTEST_RECORD=1 cargo test --test promql_conformance.\n");
        for (key, reason) in &failures {
            let reason: String = reason.chars().take(200).collect();
            out.push_str(&format!("{key} {reason}\n"));
        }
        std::fs::write(known_failures_path(), out).unwrap();
        // Recording is never a pass: the list must be reviewed, then the
        // suite run again without OXEYE_PROMQLTEST_RECORD.
        panic!(
            "recorded {} known failures into {}; review the diff and run again without OXEYE_PROMQLTEST_RECORD",
            failures.len(),
            known_failures_path().display()
        );
    }
    for (key, reason) in &failures {
        if !known.contains_key(key) {
            unexpected.push(format!("{key} {reason}"));
        }
    }
    for key in known.keys() {
        if !failures.contains_key(key) {
            now_passing.push(key.clone());
        }
    }
    assert!(
        unexpected.is_empty() && now_passing.is_empty(),
        "{} evals fail that are not in {}:\n{}\n{} listed evals pass now (remove them):\n{}",
        unexpected.len(),
        known_failures_path().display(),
        unexpected.join("\n"),
        now_passing.len(),
        now_passing.join("\n")
    );
    let _ = Path::new("");
}
