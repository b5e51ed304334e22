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
    let ignore = flag(&params, "ignore_unavailable");
    let parse = move |body: Option<Value>| {
        SearchRequest::parse(body.as_ref(), &params).map_err(query_error)
    };
    let req = match with_json_body(&state, &headers, &body, parse).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let slot = match search_slot(&state).await {
        Ok(slot) => slot,
        Err(r) => return r,
    };
    let store = state.logs.store.clone();
    let limits = limits(&state);
    let cache = state.results_cache.clone();
    let result = blocking(move || {
        let _slot = slot;
        let indices = resolve(&store, &index, ignore).map_err(Err)?;
        run_search(cache.as_deref(), &store, &indices, &req, limits).map_err(Ok)
    })
    .await;
    match result {
        Ok(Ok(body)) => es_json(StatusCode::OK, body),
        Ok(Err(Ok(err))) => query_error(err),
        Ok(Err(Err(missing))) => index_not_found(&missing),
        Err(r) => r,
    }
}

/// A search, through the results cache when there is one.
fn run_search(
    cache: Option<&crate::query::cache::ResultsCache>,
    store: &crate::storage::logs::LogStore,
    indices: &[String],
    req: &SearchRequest,
    limits: search::SearchLimits,
) -> Result<Value, crate::query::logs::QueryError> {
    match cache {
        Some(cache) => cache.log_search(store, indices, req, limits, now_ms()),
        None => search::search(store, indices, req, limits, now_ms()),
    }
}

/// One search of an `_msearch` body: its header and request.
type SearchPair = (Value, Value);

/// The header/body line pairs of an `_msearch` body.
fn msearch_pairs(bytes: &[u8], max: usize) -> Result<Vec<SearchPair>, Response> {
    let mut pairs = Vec::new();
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    while let Some(header_line) = lines.next() {
        if pairs.len() >= max {
            return Err(es_error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                &format!("_msearch holds more than {max} searches (logs.max_msearch_searches)"),
            ));
        }
        let header: Value = serde_json::from_slice(header_line).map_err(|err| {
            es_error(
                StatusCode::BAD_REQUEST,
                "parse_exception",
                &format!("_msearch header line is not JSON: {err}"),
            )
        })?;
        let Some(body_line) = lines.next() else {
            return Err(es_error(
                StatusCode::BAD_REQUEST,
                "parse_exception",
                "_msearch header without a body line",
            ));
        };
        let body: Value = serde_json::from_slice(body_line).map_err(|err| {
            es_error(
                StatusCode::BAD_REQUEST,
                "parse_exception",
                &format!("_msearch body line is not JSON: {err}"),
            )
        })?;
        pairs.push((header, body));
    }
    Ok(pairs)
}

pub(super) async fn msearch(
    State(state): State<AppState>,
    default_index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let default_index = default_index.map(|Path(index)| index).unwrap_or_default();
    let bytes = match body_bytes(&state, &headers, &body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let slot = match search_slot(&state).await {
        Ok(slot) => slot,
        Err(r) => return r,
    };
    let store = state.logs.store.clone();
    let limits = limits(&state);
    let cache = state.results_cache.clone();
    let max_searches = state.config.logs.max_msearch_searches;
    let started = std::time::Instant::now();
    let responses = blocking(move || {
        let _slot = slot;
        let pairs = msearch_pairs(&bytes, max_searches)?;
        Ok(pairs
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
                    .and_then(|req| run_search(cache.as_deref(), &store, &indices, &req, limits));
                match result {
                    Ok(mut r) => {
                        r["status"] = json!(200);
                        r
                    }
                    Err(err) => error_body(StatusCode::BAD_REQUEST, err.kind, &err.reason, None),
                }
            })
            .collect::<Vec<Value>>())
    })
    .await;
    match responses {
        Ok(Ok(responses)) => es_json(
            StatusCode::OK,
            json!({"took": started.elapsed().as_millis() as u64, "responses": responses}),
        ),
        Ok(Err(r)) | Err(r) => r,
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
    let ignore = flag(&params, "ignore_unavailable");
    let parse = move |body: Option<Value>| {
        let query = match (params.get("q"), body.as_ref().and_then(|b| b.get("query"))) {
            (Some(q), _) => lucene::parse(q, &[], false),
            (None, Some(q)) => dsl::parse(q),
            (None, None) => Ok(LogQuery::All),
        };
        query.map_err(query_error)
    };
    let query = match with_json_body(&state, &headers, &body, parse).await {
        Ok(q) => q,
        Err(r) => return r,
    };
    // A count is a search: it takes a query.max_concurrent slot too.
    let slot = match search_slot(&state).await {
        Ok(slot) => slot,
        Err(r) => return r,
    };
    let store = state.logs.store.clone();
    let result = blocking(move || {
        let _slot = slot;
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
