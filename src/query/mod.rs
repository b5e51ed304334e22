//! Readers: query engines over the stores. Faces (src/api) call these; they
//! never decode wire formats.

pub mod cache;
pub mod logs;
pub mod promql;
pub mod sql;

/// A float as Prometheus prints it in JSON and labels: shortest round-trip
/// form, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}
