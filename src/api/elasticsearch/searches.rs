//! `_search`, `_msearch` and `_count`.

use super::*;

pub(super) async fn search_docs(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = index.map(|Path(index)| index).unwrap_or_default();
    let body = match json_body(&state, &headers, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req = match SearchRequest::parse(body.as_ref(), &params) {
        Ok(r) => r,
        Err(err) => return query_error(err),
    };
    let Ok(_permit) = state.query_slots.clone().acquire_owned().await else {
        return es_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "exception",
            "shutting down",
        );
    };
    let store = state.logs.store.clone();
    let limits = limits(&state);
    let ignore = flag(&params, "ignore_unavailable");
    let result = blocking(move || {
        let indices = resolve(&store, &index, ignore).map_err(Err)?;
        search::search(&store, &indices, &req, limits, now_ms()).map_err(Ok)
    })
    .await;
    match result {
        Ok(Ok(body)) => es_json(StatusCode::OK, body),
        Ok(Err(Ok(err))) => query_error(err),
        Ok(Err(Err(missing))) => index_not_found(&missing),
        Err(r) => r,
    }
}

pub(super) async fn msearch(
    State(state): State<AppState>,
    default_index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let default_index = default_index.map(|Path(index)| index).unwrap_or_default();
    let bytes = match body_bytes(&state, &headers, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut pairs = Vec::new();
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    while let Some(header_line) = lines.next() {
        let header: Value = match serde_json::from_slice(header_line) {
            Ok(v) => v,
            Err(err) => {
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "parse_exception",
                    &format!("_msearch header line is not JSON: {err}"),
                )
            }
        };
        let Some(body_line) = lines.next() else {
            return es_error(
                StatusCode::BAD_REQUEST,
                "parse_exception",
                "_msearch header without a body line",
            );
        };
        let body: Value = match serde_json::from_slice(body_line) {
            Ok(v) => v,
            Err(err) => {
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "parse_exception",
                    &format!("_msearch body line is not JSON: {err}"),
                )
            }
        };
        pairs.push((header, body));
    }
    let Ok(_permit) = state.query_slots.clone().acquire_owned().await else {
        return es_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "exception",
            "shutting down",
        );
    };
    let store = state.logs.store.clone();
    let limits = limits(&state);
    let started = std::time::Instant::now();
    let responses = blocking(move || {
        pairs
            .into_iter()
            .map(|(header, body)| {
                let index = match header.get("index") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => default_index.clone(),
                };
                let ignore = header
                    .get("ignore_unavailable")
                    .and_then(Value::as_bool)
                    .unwrap_or_else(|| flag(&params, "ignore_unavailable"));
                let indices = match resolve(&store, &index, ignore) {
                    Ok(i) => i,
                    Err(missing) => {
                        return error_body(
                            StatusCode::NOT_FOUND,
                            "index_not_found_exception",
                            &format!("no such index [{missing}]"),
                            Some(&missing),
                        )
                    }
                };
                let result = SearchRequest::parse(Some(&body), &params)
                    .and_then(|req| search::search(&store, &indices, &req, limits, now_ms()));
                match result {
                    Ok(mut r) => {
                        r["status"] = json!(200);
                        r
                    }
                    Err(err) => error_body(StatusCode::BAD_REQUEST, err.kind, &err.reason, None),
                }
            })
            .collect::<Vec<Value>>()
    })
    .await;
    match responses {
        Ok(responses) => es_json(
            StatusCode::OK,
            json!({"took": started.elapsed().as_millis() as u64, "responses": responses}),
        ),
        Err(r) => r,
    }
}

pub(super) async fn count(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = index.map(|Path(index)| index).unwrap_or_default();
    let body = match json_body(&state, &headers, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let query = match (params.get("q"), body.as_ref().and_then(|b| b.get("query"))) {
        (Some(q), _) => lucene::parse(q, &[], false),
        (None, Some(q)) => dsl::parse(q),
        (None, None) => Ok(LogQuery::All),
    };
    let query = match query {
        Ok(q) => q,
        Err(err) => return query_error(err),
    };
    let store = state.logs.store.clone();
    let ignore = flag(&params, "ignore_unavailable");
    let result = blocking(move || {
        let indices = resolve(&store, &index, ignore).map_err(Err)?;
        search::count(&store, &indices, query, now_ms()).map_err(Ok)
    })
    .await;
    match result {
        Ok(Ok(n)) => es_json(
            StatusCode::OK,
            json!({"count": n, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
        ),
        Ok(Err(Ok(err))) => query_error(err),
        Ok(Err(Err(missing))) => index_not_found(&missing),
        Err(r) => r,
    }
}
