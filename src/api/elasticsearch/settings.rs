//! Index templates, ILM policies, ingest pipelines and data streams: kept
//! (in memory) and returned, so shippers' start-up checks pass; not applied.

use super::*;

const SETTING_KINDS: [&str; 4] = [
    "_template",
    "_index_template",
    "_component_template",
    "_data_stream",
];

pub(super) fn setting_key(kind: &str, name: &str) -> Option<String> {
    SETTING_KINDS
        .contains(&kind)
        .then(|| format!("{kind}/{name}"))
}

pub(super) async fn get_setting(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    if !SETTING_KINDS.contains(&kind.as_str()) {
        // `/{index}/{something}` that no other route took.
        return unknown_path(&format!("{kind}/{name}"));
    }
    let settings = state.es_settings.lock();
    let found: Vec<(String, Value)> = settings
        .iter()
        .filter_map(|(k, v)| {
            let (k_kind, k_name) = k.split_once('/')?;
            (k_kind == kind && crate::query::logs::catalog_glob(&name, k_name))
                .then(|| (k_name.to_owned(), v.clone()))
        })
        .collect();
    if found.is_empty() {
        return es_json(StatusCode::NOT_FOUND, json!({}));
    }
    match kind.as_str() {
        "_index_template" => es_json(
            StatusCode::OK,
            json!({"index_templates": found.into_iter().map(|(n, v)| json!({"name": n, "index_template": v})).collect::<Vec<_>>()}),
        ),
        "_component_template" => es_json(
            StatusCode::OK,
            json!({"component_templates": found.into_iter().map(|(n, v)| json!({"name": n, "component_template": v})).collect::<Vec<_>>()}),
        ),
        "_data_stream" => es_json(
            StatusCode::OK,
            json!({"data_streams": found.into_iter().map(|(n, _)| json!({"name": n, "timestamp_field": {"name": "@timestamp"}, "status": "GREEN"})).collect::<Vec<_>>()}),
        ),
        _ => es_json(StatusCode::OK, Value::Object(found.into_iter().collect())),
    }
}

pub(super) async fn head_setting(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> StatusCode {
    match setting_key(&kind, &name) {
        Some(key) if state.es_settings.lock().contains_key(&key) => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    }
}

pub(super) async fn put_setting(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(key) = setting_key(&kind, &name) else {
        return unknown_path(&format!("{kind}/{name}"));
    };
    let body_len = body.len();
    let body = match json_body(&state, &headers, &body).await {
        Ok(b) => b.unwrap_or(json!({})),
        Err(r) => return r,
    };
    match store_setting(&state, key, body, body_len) {
        Ok(()) => es_json(StatusCode::OK, json!({"acknowledged": true})),
        Err(r) => r,
    }
}

/// Templates, ILM policies, pipelines and data streams kept at most (they
/// live in memory; shippers re-create theirs at start-up).
const MAX_SETTINGS: usize = 1000;
/// Largest stored setting body, in bytes.
const MAX_SETTING_BYTES: usize = 256 << 10;

fn store_setting(state: &AppState, key: String, body: Value, len: usize) -> Result<(), Response> {
    if len > MAX_SETTING_BYTES {
        return Err(es_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "illegal_argument_exception",
            &format!("[{key}] is {len} bytes, more than the {MAX_SETTING_BYTES} Oxeye keeps per template, policy or pipeline"),
        ));
    }
    let mut settings = state.es_settings.lock();
    if !settings.contains_key(&key) && settings.len() >= MAX_SETTINGS {
        return Err(es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            &format!("cannot store [{key}]: Oxeye keeps at most {MAX_SETTINGS} templates, policies, pipelines and data streams"),
        ));
    }
    settings.insert(key, body);
    Ok(())
}

pub(super) async fn delete_setting(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    match setting_key(&kind, &name) {
        Some(key) if state.es_settings.lock().remove(&key).is_some() => {
            es_json(StatusCode::OK, json!({"acknowledged": true}))
        }
        Some(_) => es_error(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            &format!("{kind} [{name}] missing"),
        ),
        None => unknown_path(&format!("{kind}/{name}")),
    }
}

macro_rules! named_setting {
    ($kind:literal, $get:ident, $head:ident, $put:ident, $delete:ident) => {
        pub(super) async fn $get(state: State<AppState>, Path(name): Path<String>) -> Response {
            let key = format!("{}/{name}", $kind);
            match state.es_settings.lock().get(&key) {
                Some(v) => es_json(StatusCode::OK, json!({ name: v })),
                None => es_json(StatusCode::NOT_FOUND, json!({})),
            }
        }
        pub(super) async fn $head(state: State<AppState>, Path(name): Path<String>) -> StatusCode {
            if state.es_settings.lock().contains_key(&format!("{}/{name}", $kind)) {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            }
        }
        pub(super) async fn $put(
            State(state): State<AppState>,
            Path(name): Path<String>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            let body_len = body.len();
            let body = match json_body(&state, &headers, &body).await {
                Ok(b) => b.unwrap_or(json!({})),
                Err(r) => return r,
            };
            match store_setting(&state, format!("{}/{name}", $kind), body, body_len) {
                Ok(()) => es_json(StatusCode::OK, json!({"acknowledged": true})),
                Err(r) => r,
            }
        }
        pub(super) async fn $delete(state: State<AppState>, Path(name): Path<String>) -> Response {
            if state.es_settings.lock().remove(&format!("{}/{name}", $kind)).is_some() {
                es_json(StatusCode::OK, json!({"acknowledged": true}))
            } else {
                es_error(StatusCode::NOT_FOUND, "resource_not_found_exception", &format!("[{name}] missing"))
            }
        }
    };
}

named_setting!("_ilm/policy", get_ilm, head_ilm, put_ilm, delete_ilm);
named_setting!(
    "_ingest/pipeline",
    get_pipeline,
    head_pipeline,
    put_pipeline,
    delete_pipeline
);
