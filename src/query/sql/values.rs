//! Arrow values as JSON (the HTTP answer, and JSON columns over the
//! PostgreSQL protocol), and column types by their SQL names.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::Array;
use arrow_schema::{DataType, TimeUnit};
use serde_json::{Map, Value};

/// A column type as SQL (and PostgreSQL) names it.
pub fn sql_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::Timestamp(_, None) => "timestamp without time zone",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea",
        DataType::FixedSizeBinary(_) => "bytea",
        DataType::Map(..)
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Struct(_) => "json",
        DataType::Null => "unknown",
        _ => "text",
    }
}

/// Nanoseconds since the epoch as RFC 3339 (UTC), to the precision given.
pub fn rfc3339(ns: i64, unit: &TimeUnit) -> String {
    let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let Some(t) = chrono::DateTime::from_timestamp(secs, nanos as u32) else {
        return ns.to_string();
    };
    let format = match unit {
        TimeUnit::Second => "%Y-%m-%dT%H:%M:%SZ",
        TimeUnit::Millisecond => "%Y-%m-%dT%H:%M:%S%.3fZ",
        TimeUnit::Microsecond => "%Y-%m-%dT%H:%M:%S%.6fZ",
        TimeUnit::Nanosecond => "%Y-%m-%dT%H:%M:%S%.9fZ",
    };
    t.format(format).to_string()
}

/// A timestamp value in nanoseconds (saturating), if the column is one.
pub fn timestamp_ns(array: &dyn Array, row: usize) -> Option<i64> {
    let DataType::Timestamp(unit, _) = array.data_type() else {
        return None;
    };
    Some(match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1_000_000_000),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .saturating_mul(1_000_000),
        TimeUnit::Microsecond => array
            .as_primitive::<TimestampMicrosecondType>()
            .value(row)
            .saturating_mul(1_000),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
    })
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| {
            Value::String(
                if v.is_nan() {
                    "NaN"
                } else if v > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .to_owned(),
            )
        })
}

/// One value as JSON: numbers as numbers (non-finite ones as strings),
/// timestamps as RFC 3339 text, maps as objects, lists as arrays, bytes as
/// hex; anything else as Arrow displays it.
pub fn json_value(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Value::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float16 => float(f64::from(array.as_primitive::<Float16Type>().value(row))),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_owned()),
        DataType::Timestamp(unit, _) => {
            Value::String(rfc3339(timestamp_ns(array, row).unwrap_or(0), unit))
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|d| d.checked_add_signed(chrono::TimeDelta::days(i64::from(days))))
                .map_or(Value::Null, |d| Value::String(d.to_string()))
        }
        DataType::Binary => {
            Value::String(crate::model::span::hex(array.as_binary::<i32>().value(row)))
        }
        DataType::Map(..) => {
            let map = array.as_map();
            let entries = map.value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut out = Map::new();
            for i in 0..entries.len() {
                let key = match json_value(keys.as_ref(), i) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, json_value(values.as_ref(), i));
            }
            Value::Object(out)
        }
        DataType::List(_) => {
            let inner = array.as_list::<i32>().value(row);
            Value::Array(
                (0..inner.len())
                    .map(|i| json_value(inner.as_ref(), i))
                    .collect(),
            )
        }
        DataType::LargeList(_) => {
            let inner = array.as_list::<i64>().value(row);
            Value::Array(
                (0..inner.len())
                    .map(|i| json_value(inner.as_ref(), i))
                    .collect(),
            )
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| (f.name().clone(), json_value(c.as_ref(), row)))
                    .collect(),
            )
        }
        _ => display(array, row).map_or(Value::Null, Value::String),
    }
}

/// A value as Arrow prints it.
pub fn display(array: &dyn Array, row: usize) -> Option<String> {
    let options = datafusion::arrow::util::display::FormatOptions::default();
    datafusion::arrow::util::display::ArrayFormatter::try_new(array, &options)
        .ok()
        .map(|f| f.value(row).to_string())
}
