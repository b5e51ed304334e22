//! The Elasticsearch query DSL → [`LogQuery`]. Every clause we do not
//! implement is refused with a `parsing_exception` that names it, the way
//! Elasticsearch refuses unknown queries.

use serde_json::{Map, Value};

use super::ast::{BoolQuery, LogQuery, MinimumShouldMatch};
use super::{lucene, QueryError};

/// Parse a `query` object.
pub fn parse(query: &Value) -> Result<LogQuery, QueryError> {
    // The JSON itself is at most serde_json's 128 levels deep, so the
    // recursion below is bounded; the nesting limit is Elasticsearch's.
    let parsed = parse_clause(query)?;
    let limit = super::ast::max_query_depth();
    if parsed.depth() > limit {
        return Err(QueryError::parsing(format!(
            "query is nested deeper than {limit} levels (logs.max_query_depth)"
        )));
    }
    Ok(parsed)
}

fn parse_clause(query: &Value) -> Result<LogQuery, QueryError> {
    let object = query
        .as_object()
        .ok_or_else(|| QueryError::parsing("[query] must be an object"))?;
    if object.len() != 1 {
        return Err(QueryError::parsing(format!(
            "[query] must hold exactly one clause, found {}",
            object.len()
        )));
    }
    let (kind, body) = object.iter().next().expect("one entry");
    match kind.as_str() {
        "match_all" => Ok(LogQuery::All),
        "match_none" => Ok(LogQuery::Nothing),
        "bool" => parse_bool(body),
        "match" => parse_match(body, false),
        "match_phrase" => parse_match(body, true),
        "match_phrase_prefix" => {
            let (field, params) = single_field(kind, body)?;
            let text = params
                .get("query")
                .and_then(scalar_text)
                .ok_or_else(|| QueryError::parsing("[match_phrase_prefix] requires a query"))?;
            Ok(LogQuery::Wildcard {
                field: Some(field),
                pattern: format!("{}*", escape_wildcard(&text)),
                case_insensitive: true,
            })
        }
        "multi_match" => parse_multi_match(body),
        "term" => {
            let (field, params) = single_field(kind, body)?;
            let value = params
                .get("value")
                .cloned()
                .ok_or_else(|| QueryError::parsing("[term] query requires a value"))?;
            if params
                .get("case_insensitive")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                if let Value::String(s) = &value {
                    return Ok(LogQuery::Wildcard {
                        field: Some(field),
                        pattern: escape_wildcard(s),
                        case_insensitive: true,
                    });
                }
            }
            Ok(LogQuery::Term { field, value })
        }
        "terms" => {
            let object = body
                .as_object()
                .ok_or_else(|| QueryError::parsing("[terms] query must be an object"))?;
            let mut found = None;
            for (key, value) in object {
                if key == "boost" {
                    continue;
                }
                if found.is_some() {
                    return Err(QueryError::parsing(
                        "[terms] query does not support multiple fields",
                    ));
                }
                let values = value.as_array().cloned().ok_or_else(|| {
                    QueryError::parsing(format!(
                        "[terms] query requires an array of values for field [{key}] (terms lookup is not supported)"
                    ))
                })?;
                found = Some(LogQuery::Terms {
                    field: key.clone(),
                    values,
                });
            }
            found.ok_or_else(|| QueryError::parsing("[terms] query requires a field"))
        }
        "range" => parse_range(body),
        "exists" => {
            let field = body
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| QueryError::parsing("[exists] query requires a [field]"))?;
            Ok(LogQuery::Exists {
                field: field.to_owned(),
            })
        }
        "prefix" | "wildcard" | "regexp" => {
            let (field, params) = single_field(kind, body)?;
            let value = params
                .get("value")
                .or_else(|| params.get("wildcard"))
                .and_then(scalar_text)
                .ok_or_else(|| QueryError::parsing(format!("[{kind}] query requires a value")))?;
            let case_insensitive = params
                .get("case_insensitive")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Ok(match kind.as_str() {
                "prefix" => LogQuery::Prefix {
                    field: Some(field),
                    value,
                    case_insensitive,
                },
                "wildcard" => LogQuery::Wildcard {
                    field: Some(field),
                    pattern: value,
                    case_insensitive,
                },
                _ => LogQuery::Regexp {
                    field: Some(field),
                    pattern: value,
                    case_insensitive,
                },
            })
        }
        "ids" => {
            let values = body
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| QueryError::parsing("[ids] query requires [values]"))?;
            Ok(LogQuery::Ids(
                values.iter().filter_map(scalar_text).collect(),
            ))
        }
        "constant_score" => {
            let filter = body
                .get("filter")
                .ok_or_else(|| QueryError::parsing("[constant_score] requires a [filter]"))?;
            Ok(LogQuery::Bool(Box::new(BoolQuery {
                filter: vec![parse_clause(filter)?],
                ..BoolQuery::default()
            })))
        }
        "query_string" | "simple_query_string" => {
            let text = body
                .get("query")
                .and_then(Value::as_str)
                .ok_or_else(|| QueryError::parsing(format!("[{kind}] requires a [query]")))?;
            let mut default_fields: Vec<String> = match body.get("fields") {
                Some(Value::Array(fields)) => fields
                    .iter()
                    .filter_map(Value::as_str)
                    .map(strip_boost)
                    .collect(),
                _ => Vec::new(),
            };
            if let Some(field) = body.get("default_field").and_then(Value::as_str) {
                default_fields = vec![field.to_owned()];
            }
            default_fields.retain(|f| f != "*");
            let and = body
                .get("default_operator")
                .and_then(Value::as_str)
                .is_some_and(|op| op.eq_ignore_ascii_case("and"));
            lucene::parse(text, &default_fields, and)
        }
        other => Err(QueryError::parsing(format!("unknown query [{other}]"))),
    }
}

fn parse_bool(body: &Value) -> Result<LogQuery, QueryError> {
    let object = body
        .as_object()
        .ok_or_else(|| QueryError::parsing("[bool] query must be an object"))?;
    let mut out = BoolQuery::default();
    for (key, value) in object {
        let target = match key.as_str() {
            "must" => &mut out.must,
            "filter" => &mut out.filter,
            "should" => &mut out.should,
            "must_not" | "mustNot" => &mut out.must_not,
            "minimum_should_match" => {
                out.minimum_should_match =
                    Some(MinimumShouldMatch::parse(value).ok_or_else(|| {
                        QueryError::parsing(format!("invalid [minimum_should_match] {value}"))
                    })?);
                continue;
            }
            "boost" | "_name" | "adjust_pure_negative" => continue,
            other => {
                return Err(QueryError::parsing(format!(
                    "[bool] query does not support [{other}]"
                )))
            }
        };
        match value {
            Value::Array(items) => {
                for item in items {
                    target.push(parse_clause(item)?);
                }
            }
            single => target.push(parse_clause(single)?),
        }
    }
    Ok(LogQuery::Bool(Box::new(out)))
}

fn parse_match(body: &Value, phrase: bool) -> Result<LogQuery, QueryError> {
    let kind = if phrase { "match_phrase" } else { "match" };
    let (field, params) = single_field(kind, body)?;
    let text = params
        .get("query")
        .and_then(scalar_text)
        .ok_or_else(|| QueryError::parsing(format!("[{kind}] query requires a query")))?;
    for key in params.keys() {
        if !matches!(
            key.as_str(),
            "query"
                | "operator"
                | "minimum_should_match"
                | "slop"
                | "boost"
                | "analyzer"
                | "lenient"
                | "zero_terms_query"
                | "auto_generate_synonyms_phrase_query"
                | "_name"
        ) {
            return Err(QueryError::parsing(format!(
                "[{kind}] query does not support [{key}]"
            )));
        }
    }
    if phrase {
        let slop = params.get("slop").and_then(Value::as_u64).unwrap_or(0) as u32;
        return Ok(LogQuery::Phrase {
            field: Some(field),
            text,
            slop,
        });
    }
    let and = params
        .get("operator")
        .and_then(Value::as_str)
        .is_some_and(|op| op.eq_ignore_ascii_case("and"));
    let minimum_should_match = params
        .get("minimum_should_match")
        .and_then(MinimumShouldMatch::parse);
    Ok(LogQuery::Match {
        field: Some(field),
        text,
        and,
        minimum_should_match,
    })
}

fn parse_multi_match(body: &Value) -> Result<LogQuery, QueryError> {
    let text = body
        .get("query")
        .and_then(scalar_text)
        .ok_or_else(|| QueryError::parsing("[multi_match] requires a query"))?;
    let fields: Vec<Option<String>> = match body.get("fields") {
        Some(Value::Array(fields)) => fields
            .iter()
            .filter_map(Value::as_str)
            .map(strip_boost)
            .map(|f| (f != "*").then_some(f))
            .collect(),
        _ => vec![None],
    };
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("best_fields");
    let and = body
        .get("operator")
        .and_then(Value::as_str)
        .is_some_and(|op| op.eq_ignore_ascii_case("and"));
    let slop = body.get("slop").and_then(Value::as_u64).unwrap_or(0) as u32;
    let clauses = fields
        .into_iter()
        .map(|field| match kind {
            "phrase" => Ok(LogQuery::Phrase {
                field,
                text: text.clone(),
                slop,
            }),
            "best_fields" | "most_fields" | "cross_fields" | "bool_prefix" => Ok(LogQuery::Match {
                field,
                text: text.clone(),
                and,
                minimum_should_match: None,
            }),
            other => Err(QueryError::parsing(format!(
                "[multi_match] type [{other}] is not supported"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LogQuery::or(clauses))
}

fn parse_range(body: &Value) -> Result<LogQuery, QueryError> {
    let (field, params) = single_field("range", body)?;
    let mut lower = None;
    let mut upper = None;
    let mut format = None;
    let mut time_zone = None;
    for (key, value) in params {
        match key.as_str() {
            "gte" | "from" if !value.is_null() => lower = Some((value.clone(), true)),
            "gt" if !value.is_null() => lower = Some((value.clone(), false)),
            "lte" | "to" if !value.is_null() => upper = Some((value.clone(), true)),
            "lt" if !value.is_null() => upper = Some((value.clone(), false)),
            "format" => format = value.as_str().map(str::to_owned),
            "include_lower" => {
                if let Some((_, inclusive)) = lower.as_mut() {
                    *inclusive = value.as_bool().unwrap_or(true);
                }
            }
            "include_upper" => {
                if let Some((_, inclusive)) = upper.as_mut() {
                    *inclusive = value.as_bool().unwrap_or(true);
                }
            }
            "gte" | "gt" | "lte" | "lt" | "from" | "to" | "boost" | "_name" | "relation" => {}
            "time_zone" => {
                let tz = value.as_str().unwrap_or("");
                super::calendar::Zone::parse(tz).map_err(|reason| {
                    QueryError::parsing(format!("[range] {reason}"))
                        .with_kind("illegal_argument_exception")
                })?;
                if !super::datemath::is_utc(tz) {
                    time_zone = Some(tz.to_owned());
                }
            }
            other => {
                return Err(QueryError::parsing(format!(
                    "[range] query does not support [{other}]"
                )))
            }
        }
    }
    if let Some(tz) = time_zone {
        format = Some(super::datemath::with_time_zone(format.as_deref(), &tz));
    }
    Ok(LogQuery::Range {
        field,
        lower,
        upper,
        format,
    })
}

/// `{"field": value}` or `{"field": {params}}` → (field, params).
fn single_field(kind: &str, body: &Value) -> Result<(String, Map<String, Value>), QueryError> {
    let object = body
        .as_object()
        .ok_or_else(|| QueryError::parsing(format!("[{kind}] query must be an object")))?;
    let mut entries = object
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "boost" | "_name"));
    let (field, value) = entries
        .next()
        .ok_or_else(|| QueryError::parsing(format!("[{kind}] query requires a field")))?;
    if entries.next().is_some() {
        return Err(QueryError::parsing(format!(
            "[{kind}] query doesn't support multiple fields, found [{field}] and more"
        )));
    }
    let params = match value {
        Value::Object(params) => params.clone(),
        scalar => {
            let key =
                if kind == "term" || kind == "prefix" || kind == "wildcard" || kind == "regexp" {
                    "value"
                } else {
                    "query"
                };
            let mut params = Map::new();
            params.insert(key.to_owned(), scalar.clone());
            params
        }
    };
    Ok((field.clone(), params))
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strip_boost(field: &str) -> String {
    field.split('^').next().unwrap_or(field).to_owned()
}

fn escape_wildcard(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clauses() {
        let q = parse(&json!({"bool": {
            "filter": {"range": {"@timestamp": {"gte": 1, "lte": 2, "format": "epoch_millis"}}},
            "must": [{"match": {"message": "disk full"}}],
            "should": [{"term": {"level": "error"}}, {"terms": {"code": [1, 2]}}],
            "minimum_should_match": 1,
            "must_not": {"exists": {"field": "x"}}
        }}))
        .unwrap();
        let LogQuery::Bool(b) = q else { panic!() };
        assert_eq!(b.filter.len(), 1);
        assert_eq!(b.should.len(), 2);
        assert_eq!(b.required_should(), 1);
        assert!(matches!(&b.must[0], LogQuery::Match { text, .. } if text == "disk full"));
        assert_eq!(
            parse(&json!({"term": {"status": {"value": 500}}})).unwrap(),
            LogQuery::Term {
                field: "status".into(),
                value: json!(500)
            }
        );
    }

    #[test]
    fn unknown_clauses_are_named() {
        let err = parse(&json!({"geo_shape": {}})).unwrap_err();
        assert_eq!(err.kind, "parsing_exception");
        assert!(err.reason.contains("[geo_shape]"));
        let err = parse(&json!({"match": {"m": {"query": "x", "fuzziness": 2}}})).unwrap_err();
        assert!(err.reason.contains("[fuzziness]"));
    }
}
