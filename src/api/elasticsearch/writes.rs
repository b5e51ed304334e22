//! `_bulk`, single-document writes and reads by id.

use super::*;

pub(super) async fn bulk(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = index.map(|Path(index)| index);
    if let Some(why) = state.forwarders.refusing(crate::forward::Signal::Logs) {
        return rejected_execution(&why);
    }
    let bytes = match body_bytes(&state, &headers, &body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ingest = state.logs.clone();
    let result = match blocking(move || ingest.bulk(&bytes, index.as_deref(), now_ms())).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match result {
        Ok((body, errors)) => {
            if wants_refresh(&params) {
                if let Err(r) = commit(state.logs.store.clone()).await {
                    return r;
                }
            }
            let outcome = if errors { "partial" } else { "ok" };
            state.metrics.ingest_request("elasticsearch", outcome);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Err(err) => {
            state.metrics.ingest_request("elasticsearch", "bad_request");
            es_error(StatusCode::BAD_REQUEST, err.kind, &err.reason)
        }
    }
}

pub(super) async fn doc_auto_id(
    state: State<AppState>,
    Path(index): Path<String>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write_one(state, index, None, WriteOp::Index, params, headers, body).await
}

pub(super) async fn doc_with_id(
    state: State<AppState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = if params.0.get("op_type").is_some_and(|o| o == "create") {
        WriteOp::Create
    } else {
        WriteOp::Index
    };
    write_one(state, index, Some(id), op, params, headers, body).await
}

pub(super) async fn create_with_id(
    state: State<AppState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write_one(
        state,
        index,
        Some(id),
        WriteOp::Create,
        params,
        headers,
        body,
    )
    .await
}

pub(super) async fn write_one(
    State(state): State<AppState>,
    index: String,
    id: Option<String>,
    op: WriteOp,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(why) = state.forwarders.refusing(crate::forward::Signal::Logs) {
        return rejected_execution(&why);
    }
    let source = match json_body(&state, &headers, &body).await {
        Ok(Some(Value::Object(map))) => map,
        Ok(_) => {
            return es_error(
                StatusCode::BAD_REQUEST,
                "document_parsing_exception",
                "the document must be a JSON object",
            )
        }
        Err(r) => return r,
    };
    if let Some(Err(reason)) = id.as_deref().map(crate::model::log::check_id) {
        return es_error(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            &format!("Validation Failed: 1: {reason};"),
        );
    }
    let ingest = state.logs.clone();
    let doc = LogDoc::new(index, id, op, source);
    let outcome = match blocking(move || ingest.one(doc, now_ms())).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => return es_error(err.http_status(), "exception", &err.to_string()),
        Err(r) => return r,
    };
    if wants_refresh(&params) {
        if let Err(r) = commit(state.logs.store.clone()).await {
            return r;
        }
    }
    let item = item_json(&outcome);
    let mut body = item[outcome.op.as_str()].clone();
    let status = body["status"].as_u64().unwrap_or(500) as u16;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(error) = body.get("error") {
        let kind = error["type"].as_str().unwrap_or("exception").to_owned();
        let reason = error["reason"].as_str().unwrap_or("").to_owned();
        return es_error(status, &kind, &reason);
    }
    if let Some(map) = body.as_object_mut() {
        map.remove("status");
    }
    es_json(status, body)
}

pub(super) async fn get_doc(
    State(state): State<AppState>,
    Path((index, id)): Path<(String, String)>,
) -> Response {
    let store = state.logs.store.clone();
    let limits = limits(&state);
    let (index2, id2) = (index.clone(), id.clone());
    let result = blocking(move || {
        if !store.catalog.read().indices.contains_key(&index2) {
            return Ok(None);
        }
        let mut req = SearchRequest::parse(None, &HashMap::new())?;
        req.query = LogQuery::Ids(vec![id2]);
        req.size = 1;
        search::search(&store, &[index2], &req, limits, now_ms()).map(Some)
    })
    .await;
    match result {
        Ok(Ok(Some(found))) => match found["hits"]["hits"].get(0) {
            Some(hit) => es_json(
                StatusCode::OK,
                json!({"_index": index, "_id": id, "_version": 1, "_seq_no": 0, "_primary_term": 1,
                    "found": true, "_source": hit["_source"]}),
            ),
            None => es_json(
                StatusCode::NOT_FOUND,
                json!({"_index": index, "_id": id, "found": false}),
            ),
        },
        Ok(Ok(None)) => index_not_found(&index),
        Ok(Err(err)) => query_error(err),
        Err(r) => r,
    }
}

/// Elasticsearch's answer when its write queue is full (429,
/// `es_rejected_execution_exception`), which shippers back off and retry;
/// here: a forwarding destination is over `forward.max_backlog`.
fn rejected_execution(why: &str) -> Response {
    let mut response = es_error(
        StatusCode::TOO_MANY_REQUESTS,
        "es_rejected_execution_exception",
        why,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}
