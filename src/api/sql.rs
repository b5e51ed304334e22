//! `POST /api/v1/sql`: SQL over every signal.
//!
//! The body is `{"query": "SELECT …"}` (JSON) or `query=…` (a form). The
//! answer follows `Accept`: JSON by default (`columns` with name and SQL
//! type, `rows` as arrays), `text/csv` (a header line, then the rows), or
//! an Arrow IPC stream (`application/vnd.apache.arrow.stream`).
//! Errors are JSON `{"status": "error", "errorType", "error"}` with 400 for
//! bad SQL or a write, 422 over a row or memory limit, 503 on timeout.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;
use crate::query::sql::values::{json_value, sql_type};
use crate::query::sql::{SqlError, SqlErrorKind, SqlResult};

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/sql", post(sql))
}

fn error(err: &SqlError) -> Response {
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"status": "error", "errorType": err.kind_name(), "error": err.message})),
    )
        .into_response()
}

/// The statement of a request body.
fn statement(headers: &HeaderMap, body: &[u8]) -> Result<String, SqlError> {
    let bad = |m: String| SqlError {
        kind: SqlErrorKind::Syntax,
        message: m,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // curl -d sends JSON as a form unless told otherwise: JSON is JSON.
    let json_like = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if content_type.starts_with("application/x-www-form-urlencoded") && !json_like {
        return form_urlencoded::parse(body)
            .find(|(k, _)| k == "query")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| bad("the form has no query field".into()));
    }
    if content_type.starts_with("text/plain") || content_type.starts_with("application/sql") {
        return String::from_utf8(body.to_vec()).map_err(|_| bad("the body is not UTF-8".into()));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "the body is not JSON ({e}): send {{\"query\": \"SELECT …\"}}"
        ))
    })?;
    match value.get("query") {
        Some(Value::String(q)) => Ok(q.clone()),
        _ => Err(bad(
            "the body has no \"query\" string: send {\"query\": \"SELECT …\"}".into(),
        )),
    }
}

async fn sql(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let text = match statement(&headers, &body) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    let started = std::time::Instant::now();
    let result = state.sql.query(&text).await;
    state.metrics.observe_sql(
        result.as_ref().err().map(SqlError::kind_name),
        started.elapsed(),
    );
    let result = match result {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoded = if accept.contains(ARROW_STREAM) {
        arrow_stream(&result).map(|b| (ARROW_STREAM, b))
    } else if accept.contains("text/csv") {
        csv(&result).map(|b| ("text/csv; charset=utf-8", b))
    } else {
        return Json(to_json(&result)).into_response();
    };
    match encoded {
        Ok((content_type, bytes)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Err(e) => error(&SqlError {
            kind: SqlErrorKind::Internal,
            message: format!("cannot encode the result: {e}"),
        }),
    }
}

/// `{"columns": [{"name", "type"}], "rows": [[…]]}`.
pub fn to_json(result: &SqlResult) -> Value {
    let columns: Vec<Value> = result
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": sql_type(f.data_type())}))
        .collect();
    let mut rows = Vec::with_capacity(result.rows);
    for batch in &result.batches {
        for row in 0..batch.num_rows() {
            rows.push(Value::Array(
                batch
                    .columns()
                    .iter()
                    .map(|c| json_value(c.as_ref(), row))
                    .collect(),
            ));
        }
    }
    json!({"columns": columns, "rows": rows})
}

fn csv(result: &SqlResult) -> Result<Vec<u8>, String> {
    // Maps, lists and structs have no CSV form: their JSON text.
    let mut out = Vec::new();
    let mut writer = csv_writer(&mut out);
    for batch in &result.batches {
        let batch = flatten_nested(batch)?;
        writer.write(&batch).map_err(|e| e.to_string())?;
    }
    if result.batches.is_empty() {
        // A header for an empty answer.
        let empty = arrow_array::RecordBatch::new_empty(result.schema.clone());
        writer
            .write(&flatten_nested(&empty)?)
            .map_err(|e| e.to_string())?;
    }
    drop(writer);
    Ok(out)
}

fn csv_writer(out: &mut Vec<u8>) -> arrow_csv::Writer<&mut Vec<u8>> {
    arrow_csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.fZ".to_owned())
        .build(out)
}

/// Nested columns (maps, lists, structs) as JSON text.
fn flatten_nested(batch: &arrow_array::RecordBatch) -> Result<arrow_array::RecordBatch, String> {
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let nested = |t: &DataType| {
        matches!(
            t,
            DataType::Map(..) | DataType::List(_) | DataType::LargeList(_) | DataType::Struct(_)
        )
    };
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<arrow_array::ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if nested(field.data_type()) {
            let text: arrow_array::StringArray = (0..column.len())
                .map(|row| {
                    (!column.is_null(row)).then(|| json_value(column.as_ref(), row).to_string())
                })
                .collect();
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(Arc::new(text));
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    arrow_array::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| e.to_string())
}

use arrow_array::Array;

fn arrow_stream(result: &SqlResult) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &result.schema)
        .map_err(|e| e.to_string())?;
    for batch in &result.batches {
        writer.write(batch).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())?;
    drop(writer);
    Ok(out)
}
