//! Receivers: wire formats in, validated series and samples out. A receiver
//! never touches a store's files; it hands [`SeriesWrite`]s to the store.
//!
//! [`SeriesWrite`]: crate::storage::metrics::SeriesWrite

pub mod es_bulk;
pub mod logs;
pub mod otlp;
pub mod pipeline;
pub mod remote_write;
pub mod spanmetrics;
pub mod traces;

use std::fmt;

use crate::config::LimitsConfig;
use crate::model::{is_valid_label_name, LabelRef, METRIC_NAME};

pub use crate::error::Error as IngestError;

/// Label limits and syntax applied to every incoming series.
#[derive(Debug, Clone)]
pub struct LabelCheck {
    pub max_series_per_request: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
}

impl LabelCheck {
    pub fn from_limits(limits: &LimitsConfig) -> LabelCheck {
        LabelCheck {
            max_series_per_request: limits.max_series_per_request,
            max_labels_per_series: limits.max_labels_per_series,
            max_label_name_length: limits.max_label_name_length,
            max_label_value_length: limits.max_label_value_length,
        }
    }

    /// Validate a series' labels and sort them by name (in place, only if
    /// they are not sorted already, as senders normally send them).
    pub fn check_and_sort(&self, labels: &mut [LabelRef<'_>]) -> Result<(), LabelProblem> {
        if labels.len() > self.max_labels_per_series {
            return Err(LabelProblem::TooMany(
                labels.len(),
                self.max_labels_per_series,
            ));
        }
        if !labels.windows(2).all(|w| w[0].name < w[1].name) {
            labels.sort_unstable_by(|a, b| a.name.cmp(b.name));
            if let Some(w) = labels.windows(2).find(|w| w[0].name == w[1].name) {
                return Err(LabelProblem::Duplicate(w[0].name.to_owned()));
            }
        }
        let mut has_name = false;
        for label in labels.iter() {
            if !is_valid_label_name(label.name) {
                return Err(LabelProblem::InvalidName(label.name.to_owned()));
            }
            if label.name.len() > self.max_label_name_length {
                return Err(LabelProblem::NameTooLong(
                    label.name.to_owned(),
                    self.max_label_name_length,
                ));
            }
            if label.value.len() > self.max_label_value_length {
                return Err(LabelProblem::ValueTooLong(
                    label.name.to_owned(),
                    label.value.len(),
                    self.max_label_value_length,
                ));
            }
            has_name |= label.name == METRIC_NAME;
        }
        if !has_name {
            return Err(LabelProblem::NoMetricName);
        }
        Ok(())
    }
}

/// Why a series' labels were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelProblem {
    TooMany(usize, usize),
    Duplicate(String),
    InvalidName(String),
    NameTooLong(String, usize),
    ValueTooLong(String, usize, usize),
    NoMetricName,
}

impl fmt::Display for LabelProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelProblem::TooMany(n, max) => write!(
                f,
                "{n} labels exceed the limit of {max} (limits.max_labels_per_series)"
            ),
            LabelProblem::Duplicate(name) => write!(f, "duplicate label name {name:?}"),
            LabelProblem::InvalidName(name) => write!(
                f,
                "invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"
            ),
            LabelProblem::NameTooLong(name, max) => write!(
                f,
                "label name {name:?} is longer than {max} bytes (limits.max_label_name_length)"
            ),
            LabelProblem::ValueTooLong(name, len, max) => write!(
                f,
                "value of label {name:?} is {len} bytes, longer than {max} (limits.max_label_value_length)"
            ),
            LabelProblem::NoMetricName => write!(f, "no metric name (label __name__)"),
        }
    }
}
