//! Functions Oxeye adds to SQL.
//!
//! `match(text, 'words')`: true when every word of the second argument is
//! a word of the first, with the log store's analyser (split on
//! non-alphanumerics, lowercase). On the `logs` table's `body` it becomes a
//! tantivy query; anywhere else it is evaluated row by row, with the same
//! answer.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow_schema::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};

use crate::query::logs::matcher::words;

pub const MATCH: &str = "match";

pub fn functions() -> Vec<ScalarUDF> {
    vec![create_udf(
        MATCH,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(match_words),
    )]
}

fn match_words(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let [text, query] = args else {
        return Err(DataFusionError::Plan(
            "match(text, words) takes two arguments".into(),
        ));
    };
    let rows = match (text, query) {
        (ColumnarValue::Array(a), _) | (_, ColumnarValue::Array(a)) => a.len(),
        _ => 1,
    };
    let text = text.to_array(rows)?;
    let query = query.to_array(rows)?;
    let (text, query) = (strings(&text)?, strings(&query)?);
    // The words asked for are usually one literal: split it once.
    let constant = (0..rows).all(|i| query.is_valid(i) && query.value(i) == query.value(0));
    let wanted_once = (rows > 0 && constant).then(|| words(query.value(0)));
    let out: BooleanArray = (0..rows)
        .map(|i| {
            if text.is_null(i) || query.is_null(i) {
                return None;
            }
            let owned;
            let wanted = match &wanted_once {
                Some(w) => w,
                None => {
                    owned = words(query.value(i));
                    &owned
                }
            };
            let have = words(text.value(i));
            Some(wanted.iter().all(|w| have.contains(w)))
        })
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
}

fn strings(array: &ArrayRef) -> Result<&StringArray> {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Plan("match(text, words) takes text arguments".into()))
}
