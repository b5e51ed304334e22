//! Mappings, field capabilities, index management, and the cluster
//! information shippers read at start-up (`_cluster/health`, `_nodes`,
//! `_license`, `_xpack`, `_cat/indices`).

use super::*;

/// Flat field mappings as Elasticsearch's nested `properties`.
pub fn properties(fields: &BTreeMap<String, FieldMapping>) -> Value {
    let mut root = Map::new();
    for (path, mapping) in fields {
        let mut node = &mut root;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let entry = node.entry(part.to_string()).or_insert_with(|| json!({}));
            if last {
                if mapping.kind != FieldKind::Object {
                    entry["type"] = json!(mapping.es_type);
                    if mapping.keyword {
                        entry["fields"] =
                            json!({"keyword": {"type": "keyword", "ignore_above": 256}});
                    }
                }
                break;
            }
            if entry.get("properties").is_none() {
                entry["properties"] = json!({});
            }
            node = entry["properties"]
                .as_object_mut()
                .expect("properties is an object");
        }
    }
    Value::Object(root)
}

pub(super) async fn mapping(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
) -> Response {
    let index = index.map(|Path(index)| index).unwrap_or_default();
    let store = &state.logs.store;
    let indices = match resolve(store, &index, flag(&params, "ignore_unavailable")) {
        Ok(i) => i,
        Err(missing) => return index_not_found(&missing),
    };
    let catalog = store.catalog.read();
    let mut out = Map::new();
    for name in indices {
        if let Some(meta) = catalog.indices.get(&name) {
            out.insert(
                name,
                json!({"mappings": {"properties": properties(&meta.fields)}}),
            );
        }
    }
    es_json(StatusCode::OK, Value::Object(out))
}

pub(super) async fn field_caps(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = index.map(|Path(index)| index).unwrap_or_default();
    let body = match json_body(&state, &headers, &body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut patterns: Vec<String> = params
        .get("fields")
        .map(|f| f.split(',').map(str::trim).map(str::to_owned).collect())
        .unwrap_or_default();
    match body.as_ref().and_then(|b| b.get("fields")) {
        Some(Value::Array(fields)) => {
            patterns.extend(fields.iter().filter_map(Value::as_str).map(str::to_owned))
        }
        Some(Value::String(fields)) => {
            patterns.extend(fields.split(',').map(str::trim).map(str::to_owned))
        }
        _ => {}
    }
    if patterns.is_empty() {
        return es_error(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: specified fields can't be null or empty;",
        );
    }
    let store = &state.logs.store;
    let indices = match resolve(store, &index, flag(&params, "ignore_unavailable")) {
        Ok(i) => i,
        Err(missing) => return index_not_found(&missing),
    };
    let catalog = store.catalog.read();
    // field → type → (searchable, aggregatable, indices having it)
    type Caps = BTreeMap<String, BTreeMap<String, (bool, bool, Vec<String>)>>;
    let mut caps: Caps = BTreeMap::new();
    let mut add =
        |field: String, es_type: &str, searchable: bool, aggregatable: bool, index: &str| {
            if !patterns
                .iter()
                .any(|p| crate::query::logs::catalog_glob(p, &field))
            {
                return;
            }
            caps.entry(field)
                .or_default()
                .entry(es_type.to_owned())
                .or_insert((searchable, aggregatable, Vec::new()))
                .2
                .push(index.to_owned());
        };
    for name in &indices {
        let Some(meta) = catalog.indices.get(name) else {
            continue;
        };
        add("_id".into(), "_id", true, false, name);
        add("_index".into(), "_index", true, true, name);
        for (path, mapping) in &meta.fields {
            let aggregatable = !matches!(mapping.kind, FieldKind::Text | FieldKind::Object);
            add(
                path.clone(),
                &mapping.es_type,
                mapping.kind != FieldKind::Object,
                aggregatable,
                name,
            );
            if mapping.keyword {
                add(format!("{path}.keyword"), "keyword", true, true, name);
            }
        }
    }
    let mut fields = Map::new();
    for (field, types) in caps {
        let mut entry = Map::new();
        let several = types.len() > 1;
        for (es_type, (searchable, aggregatable, names)) in types {
            let mut cap = json!({
                "type": es_type,
                "metadata_field": field.starts_with('_'),
                "searchable": searchable,
                "aggregatable": aggregatable,
            });
            if several {
                cap["indices"] = json!(names);
            }
            entry.insert(es_type, cap);
        }
        fields.insert(field, Value::Object(entry));
    }
    es_json(
        StatusCode::OK,
        json!({"indices": indices, "fields": fields}),
    )
}

pub(super) async fn refresh(State(state): State<AppState>) -> Response {
    match commit(state.logs.store.clone()).await {
        Ok(()) => es_json(
            StatusCode::OK,
            json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}),
        ),
        Err(r) => r,
    }
}

pub(super) async fn refresh_index(state: State<AppState>, Path(_index): Path<String>) -> Response {
    refresh(state).await
}

/// Field mappings from a `mappings.properties` object.
pub(super) fn parse_properties(
    props: &Map<String, Value>,
    prefix: &str,
    out: &mut Vec<(String, FieldMapping)>,
) -> Result<(), String> {
    for (name, spec) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let es_type = spec.get("type").and_then(Value::as_str);
        if let Some(children) = spec.get("properties").and_then(Value::as_object) {
            if es_type.is_some_and(|t| t != "object" && t != "nested") {
                return Err(format!(
                    "field [{path}] of type [{}] cannot have properties",
                    es_type.unwrap_or("")
                ));
            }
            out.push((
                path.clone(),
                FieldMapping::from_es_type("object").expect("object type"),
            ));
            parse_properties(children, &path, out)?;
            continue;
        }
        let es_type = es_type.unwrap_or("object");
        let mut mapping = FieldMapping::from_es_type(es_type)
            .ok_or_else(|| format!("No handler for type [{es_type}] declared on field [{name}]"))?;
        if mapping.kind == FieldKind::Text
            && spec
                .get("fields")
                .and_then(Value::as_object)
                .is_some_and(|f| f.values().any(|v| v.get("type") == Some(&json!("keyword"))))
        {
            mapping.keyword = true;
        }
        out.push((path, mapping));
    }
    Ok(())
}

pub(super) async fn create_index(
    State(state): State<AppState>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if index.starts_with('_') {
        return unknown_path(&index);
    }
    let body = match json_body(&state, &headers, &body).await {
        Ok(b) => b.unwrap_or(json!({})),
        Err(r) => return r,
    };
    let mut fields = Vec::new();
    if let Some(props) = body
        .get("mappings")
        .and_then(|m| m.get("properties"))
        .and_then(Value::as_object)
    {
        if let Err(reason) = parse_properties(props, "", &mut fields) {
            return es_error(StatusCode::BAD_REQUEST, "mapper_parsing_exception", &reason);
        }
    }
    let store = state.logs.store.clone();
    let name = index.clone();
    match blocking(move || store.create_index(&name, fields, now_ms())).await {
        Ok(Ok(true)) => es_json(
            StatusCode::OK,
            json!({"acknowledged": true, "shards_acknowledged": true, "index": index}),
        ),
        Ok(Ok(false)) => es_json(
            StatusCode::BAD_REQUEST,
            error_body(
                StatusCode::BAD_REQUEST,
                "resource_already_exists_exception",
                &format!("index [{index}] already exists"),
                Some(&index),
            ),
        ),
        Ok(Err(reason)) => es_error(
            StatusCode::BAD_REQUEST,
            if reason.contains("logs.max_indices") {
                "illegal_argument_exception"
            } else {
                "invalid_index_name_exception"
            },
            &reason,
        ),
        Err(r) => r,
    }
}

pub(super) async fn index_exists(
    State(state): State<AppState>,
    Path(index): Path<String>,
) -> StatusCode {
    let resolved = resolve(&state.logs.store, &index, false);
    match resolved {
        Ok(found) if !found.is_empty() => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    }
}

pub(super) async fn get_index(
    State(state): State<AppState>,
    Path(index): Path<String>,
    Query(params): Params,
) -> Response {
    if index.starts_with('_') {
        return unknown_path(&index);
    }
    let store = &state.logs.store;
    let indices = match resolve(store, &index, flag(&params, "ignore_unavailable")) {
        Ok(i) => i,
        Err(missing) => return index_not_found(&missing),
    };
    let catalog = store.catalog.read();
    let mut out = Map::new();
    for name in indices {
        if let Some(meta) = catalog.indices.get(&name) {
            out.insert(
                name.clone(),
                json!({
                    "aliases": {},
                    "mappings": {"properties": properties(&meta.fields)},
                    "settings": {"index": {
                        "number_of_shards": "1",
                        "number_of_replicas": "0",
                        "uuid": meta.uuid,
                        "creation_date": meta.created_ms.to_string(),
                        "provided_name": name,
                    }},
                }),
            );
        }
    }
    es_json(StatusCode::OK, Value::Object(out))
}

pub(super) async fn delete_index(
    State(state): State<AppState>,
    Path(index): Path<String>,
    Query(params): Params,
) -> Response {
    if index.contains('*') || index == "_all" {
        return es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "Wildcard expressions or all indices are not allowed",
        );
    }
    let store = state.logs.store.clone();
    let names: Vec<String> = index.split(',').map(str::to_owned).collect();
    if !flag(&params, "ignore_unavailable") {
        let catalog = store.catalog.read();
        if let Some(missing) = names.iter().find(|n| !catalog.indices.contains_key(*n)) {
            return index_not_found(missing);
        }
    }
    let result = blocking(move || {
        for name in names {
            store.delete_index(&name)?;
        }
        Ok::<(), crate::storage::logs::LogStoreError>(())
    })
    .await;
    match result {
        Ok(Ok(())) => es_json(StatusCode::OK, json!({"acknowledged": true})),
        Ok(Err(err)) => es_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            &err.to_string(),
        ),
        Err(r) => r,
    }
}

pub(super) async fn health(State(state): State<AppState>) -> Response {
    let n = state.logs.store.catalog.read().indices.len();
    es_json(
        StatusCode::OK,
        json!({
            "cluster_name": "oxeye", "status": "green", "timed_out": false,
            "number_of_nodes": 1, "number_of_data_nodes": 1,
            "active_primary_shards": n, "active_shards": n,
            "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 0,
            "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0
        }),
    )
}

pub(super) async fn health_index(state: State<AppState>, Path(_index): Path<String>) -> Response {
    health(state).await
}

pub(super) async fn nodes(State(state): State<AppState>) -> Response {
    let address = state.config.server.elasticsearch.to_string();
    es_json(
        StatusCode::OK,
        json!({
            "_nodes": {"total": 1, "successful": 1, "failed": 0},
            "cluster_name": "oxeye",
            "nodes": {"oxeye": {
                "name": "oxeye", "version": COMPAT_VERSION,
                "roles": ["master", "data", "ingest"],
                "http": {"publish_address": address, "bound_address": [address]},
                "ingest": {"processors": []}
            }}
        }),
    )
}

pub(super) async fn nodes_rest(state: State<AppState>, Path(_rest): Path<String>) -> Response {
    nodes(state).await
}

pub(super) async fn license() -> Response {
    es_json(
        StatusCode::OK,
        json!({"license": {"status": "active", "uid": "oxeye", "type": "basic",
            "issue_date_in_millis": 0, "max_nodes": 1000, "issued_to": "oxeye",
            "issuer": "oxeye", "start_date_in_millis": -1}}),
    )
}

pub(super) async fn xpack() -> Response {
    es_json(
        StatusCode::OK,
        json!({
            "build": {"hash": env!("CARGO_PKG_VERSION"), "date": "2026-01-01T00:00:00.000Z"},
            "license": {"uid": "oxeye", "type": "basic", "mode": "basic", "status": "active"},
            "features": {"ilm": {"available": true, "enabled": true}}
        }),
    )
}

pub(super) async fn cat_indices(state: State<AppState>, params: Params) -> Response {
    cat_impl(state, "*".into(), params).await
}

pub(super) async fn cat_indices_index(
    state: State<AppState>,
    Path(index): Path<String>,
    params: Params,
) -> Response {
    cat_impl(state, index, params).await
}

pub(super) async fn cat_impl(
    State(state): State<AppState>,
    index: String,
    Query(params): Params,
) -> Response {
    let store = state.logs.store.clone();
    let result = blocking(move || {
        let names = store.catalog.read().resolve(&index);
        names
            .into_iter()
            .map(|name| {
                let uuid = store
                    .catalog
                    .read()
                    .indices
                    .get(&name)
                    .map(|m| m.uuid.clone())
                    .unwrap_or_default();
                let docs =
                    search::count(&store, std::slice::from_ref(&name), LogQuery::All, now_ms())
                        .unwrap_or(0);
                (name, uuid, docs)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let rows = match result {
        Ok(rows) => rows,
        Err(r) => return r,
    };
    if params.get("format").is_some_and(|f| f == "json") {
        let items: Vec<Value> = rows
            .iter()
            .map(|(name, uuid, docs)| {
                json!({"health": "green", "status": "open", "index": name, "uuid": uuid,
                    "pri": "1", "rep": "0", "docs.count": docs.to_string(), "docs.deleted": "0"})
            })
            .collect();
        return es_json(StatusCode::OK, Value::Array(items));
    }
    let mut text = String::new();
    for (name, uuid, docs) in rows {
        text.push_str(&format!("green open {name} {uuid} 1 0 {docs} 0\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], text).into_response()
}
