//! Values flowing through the evaluator. Every instant-vector and scalar
//! value holds one entry per evaluation step, so a range query is evaluated in
//! one pass over the expression tree (as Prometheus' range evaluation does).

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Labels, Sample};

use super::EvalError;

/// An instant-vector series: one optional value per step.
#[derive(Debug, Clone)]
pub struct StepSeries {
    pub labels: Arc<Labels>,
    pub values: Vec<Option<f64>>,
    /// Prometheus 3's delayed `__name__` removal: the name is dropped when the
    /// query finishes (or when a later step needs labels without it).
    pub drop_name: bool,
}

/// A range-vector series: raw samples, sorted by time.
#[derive(Debug, Clone)]
pub struct RangeSeries {
    pub labels: Arc<Labels>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
pub enum Value {
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<StepSeries>),
    /// Only as the result of an instant query of a range selector or subquery.
    Matrix(Vec<RangeSeries>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// The labels a series presents to label-sensitive operations, honouring a
/// pending `__name__` drop.
pub fn effective_labels(series: &StepSeries) -> Arc<Labels> {
    // `__type__`/`__unit__` (Prometheus' type-and-unit labels) describe the
    // metric name and go with it.
    const NAME_LABELS: [&str; 3] = [crate::model::METRIC_NAME, "__type__", "__unit__"];
    if series.drop_name && series.labels.iter().any(|l| NAME_LABELS.contains(&l.name)) {
        Arc::new(series.labels.without(&NAME_LABELS))
    } else {
        series.labels.clone()
    }
}

/// Collects output series by label set, step by step, refusing two values
/// for the same labels at the same step.
pub struct SeriesBuilder {
    steps: usize,
    index: HashMap<Arc<Labels>, usize>,
    pub series: Vec<StepSeries>,
}

impl SeriesBuilder {
    pub fn new(steps: usize) -> SeriesBuilder {
        SeriesBuilder {
            steps,
            index: HashMap::new(),
            series: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        labels: Arc<Labels>,
        step: usize,
        value: f64,
        drop_name: bool,
    ) -> Result<(), EvalError> {
        let index = match self.index.get(&labels) {
            Some(&index) => index,
            None => {
                self.series.push(StepSeries {
                    labels: labels.clone(),
                    values: vec![None; self.steps],
                    drop_name,
                });
                self.index.insert(labels, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        let slot = &mut self.series[index].values[step];
        if slot.is_some() {
            return Err(EvalError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
        *slot = Some(value);
        Ok(())
    }

    pub fn finish(self) -> Vec<StepSeries> {
        self.series
    }
}

/// The labels `by (…)`/`on (…)` keep, or `without (…)`/`ignoring (…)` leave
/// (the latter also drop `__name__`).
pub fn project_labels(labels: &Labels, modifier: &promql_parser::parser::LabelModifier) -> Labels {
    use promql_parser::parser::LabelModifier;
    let listed =
        |name: &str, names: &promql_parser::label::Labels| names.labels.iter().any(|n| n == name);
    let kept = labels.iter().filter(|l| match modifier {
        LabelModifier::Include(names) => listed(l.name, names),
        LabelModifier::Exclude(names) => {
            l.name != crate::model::METRIC_NAME && !listed(l.name, names)
        }
    });
    Labels::from_pairs(kept.map(|l| (l.name, l.value)))
}
