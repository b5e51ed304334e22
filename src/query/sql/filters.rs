//! Which `WHERE` conjuncts a table can hand to its store, in the store's
//! terms: a time range, equality / `IN` / regex on a column or on one key
//! of a map column (`labels['job']`), and `match(column, 'words')`.
//!
//! Every pushed-down filter is reported to DataFusion as *inexact*: the
//! store narrows what it reads (series postings, span batches by service or
//! trace id, a tantivy query) and DataFusion still applies the predicate to
//! what comes back, so a store that returns a superset never changes an
//! answer.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// What a filter compares: a column, or one key of a map column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Column(String),
    Key(String, String),
}

impl Target {
    pub fn column(&self) -> Option<&str> {
        match self {
            Target::Column(c) => Some(c),
            Target::Key(..) => None,
        }
    }

    pub fn key_of(&self, map: &str) -> Option<&str> {
        match self {
            Target::Key(m, k) if m == map => Some(k),
            _ => None,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Column(c) => write!(f, "{c}"),
            Target::Key(m, k) => write!(f, "{m}[{k:?}]"),
        }
    }
}

/// One conjunct in a store's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Equal(Target, String),
    In(Target, Vec<String>),
    Regex(Target, String),
    /// `lo ≤ column ≤ hi`, nanoseconds since the epoch.
    Time(String, i64, i64),
    /// `match(column, 'words')`: every word of the text is in the column.
    Match(String, String),
}

impl Term {
    pub fn target(&self) -> Option<&Target> {
        match self {
            Term::Equal(t, _) | Term::In(t, _) | Term::Regex(t, _) => Some(t),
            Term::Time(..) | Term::Match(..) => None,
        }
    }
}

/// DataFusion's question "which of these filters can you use?": inexact
/// for each filter that is a term `usable` accepts.
pub fn pushdown(
    filters: &[&Expr],
    usable: impl Fn(&Term) -> bool,
) -> Vec<datafusion::logical_expr::TableProviderFilterPushDown> {
    use datafusion::logical_expr::TableProviderFilterPushDown as P;
    filters
        .iter()
        .map(|f| match term(f) {
            Some(t) if usable(&t) => P::Inexact,
            _ => P::Unsupported,
        })
        .collect()
}

/// The terms of the filters a scan was handed that `usable` accepts.
pub fn usable_terms(filters: &[Expr], usable: impl Fn(&Term) -> bool) -> Vec<Term> {
    filters
        .iter()
        .filter_map(term)
        .filter(|t| usable(t))
        .collect()
}

/// The term one filter expression is, if a store can use it.
pub fn term(expr: &Expr) -> Option<Term> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (target, literal, op) = match (target(left), target(right)) {
                (Some(t), None) => (t, right.as_ref(), *op),
                (None, Some(t)) => (t, left.as_ref(), op.swap()?),
                _ => return None,
            };
            match op {
                Operator::Eq => {
                    if let Some(text) = string(literal) {
                        return Some(Term::Equal(target, text));
                    }
                    let column = target.column()?.to_owned();
                    let t = time(literal)?;
                    Some(Term::Time(column, t, t))
                }
                Operator::RegexMatch => Some(Term::Regex(target, string(literal)?)),
                Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq => {
                    let column = target.column()?.to_owned();
                    let t = time(literal)?;
                    Some(match op {
                        Operator::Gt => Term::Time(column, t.saturating_add(1), i64::MAX),
                        Operator::GtEq => Term::Time(column, t, i64::MAX),
                        Operator::Lt => Term::Time(column, i64::MIN, t.saturating_sub(1)),
                        _ => Term::Time(column, i64::MIN, t),
                    })
                }
                _ => None,
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let column = target(expr)?.column()?.to_owned();
            Some(Term::Time(column, time(low)?, time(high)?))
        }
        Expr::InList(list) if !list.negated => {
            let target = target(&list.expr)?;
            let values = list.list.iter().map(string).collect::<Option<Vec<_>>>()?;
            Some(Term::In(target, values))
        }
        Expr::ScalarFunction(f) if f.func.name() == super::udf::MATCH => {
            let [Expr::Column(column), text] = f.args.as_slice() else {
                return None;
            };
            Some(Term::Match(column.name.clone(), string(text)?))
        }
        _ => None,
    }
}

fn target(expr: &Expr) -> Option<Target> {
    match expr {
        Expr::Column(c) => Some(Target::Column(c.name.clone())),
        Expr::ScalarFunction(f) if f.func.name() == "get_field" => match f.args.as_slice() {
            [Expr::Column(map), key] => Some(Target::Key(map.name.clone(), string(key)?)),
            _ => None,
        },
        _ => None,
    }
}

/// A string literal's text.
pub fn string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// A timestamp literal in nanoseconds (saturating beyond the i64 range).
fn time(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let scaled = |v: i64, factor: i64| v.saturating_mul(factor);
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(scaled(*v, 1_000)),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(scaled(*v, 1_000_000)),
        ScalarValue::TimestampSecond(Some(v), _) => Some(scaled(*v, 1_000_000_000)),
        _ => None,
    }
}

/// The time range the terms on `column` leave, in nanoseconds (inclusive);
/// the whole axis without any.
pub fn time_range(terms: &[Term], column: &str) -> (i64, i64) {
    let mut range = (i64::MIN, i64::MAX);
    for term in terms {
        if let Term::Time(c, lo, hi) = term {
            if c == column {
                range = (range.0.max(*lo), range.1.min(*hi));
            }
        }
    }
    range
}

/// The values a column (or map key) is restricted to by `=` and `IN`
/// terms: `None` when unrestricted; an empty list when the terms
/// contradict each other.
pub fn values_of(terms: &[Term], target: &Target) -> Option<Vec<String>> {
    let mut allowed: Option<Vec<String>> = None;
    for term in terms {
        let values = match term {
            Term::Equal(t, v) if t == target => vec![v.clone()],
            Term::In(t, vs) if t == target => vs.clone(),
            _ => continue,
        };
        allowed = Some(match allowed {
            None => values,
            Some(previous) => previous
                .into_iter()
                .filter(|v| values.contains(v))
                .collect(),
        });
    }
    if let Some(values) = allowed.as_mut() {
        values.sort();
        values.dedup();
    }
    allowed
}

/// `EXPLAIN`'s description of the terms a scan used.
pub fn describe(terms: &[Term], time_unit_ms: bool) -> String {
    let instant = |ns: i64| {
        if ns == i64::MIN || ns == i64::MAX {
            return None;
        }
        let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
        chrono::DateTime::from_timestamp(secs, nanos as u32).map(|t| {
            if time_unit_ms {
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            } else {
                t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
            }
        })
    };
    terms
        .iter()
        .map(|term| match term {
            Term::Equal(t, v) => format!("{t} = {v:?}"),
            Term::In(t, vs) => format!("{t} IN {vs:?}"),
            Term::Regex(t, p) => format!("{t} =~ {p:?}"),
            Term::Time(c, lo, hi) => format!(
                "{c} in [{}, {}]",
                instant(*lo).unwrap_or_else(|| "-inf".into()),
                instant(*hi).unwrap_or_else(|| "+inf".into())
            ),
            Term::Match(c, text) => format!("match({c}, {text:?})"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
