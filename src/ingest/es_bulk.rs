//! Elasticsearch `_bulk` bodies: NDJSON pairs of action and source lines.
//!
//! A malformed action line fails the whole request (as Elasticsearch does:
//! it cannot tell where the next action starts); a bad source line, an
//! unsupported action or a missing index fails only its item.

use serde_json::{Map, Value};

use crate::model::log::{LogDoc, WriteOp};

/// One item of a bulk request, in request order.
#[derive(Debug)]
pub enum BulkItem {
    Doc(LogDoc),
    Failed {
        action: String,
        index: String,
        id: Option<String>,
        status: u16,
        kind: &'static str,
        reason: String,
    },
}

/// Why a whole bulk request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkError {
    pub kind: &'static str,
    pub reason: String,
}

/// Parse a bulk body; `default_index` comes from the URL.
pub fn parse(
    body: &[u8],
    default_index: Option<&str>,
    max_documents: usize,
) -> Result<Vec<BulkItem>, BulkError> {
    let mut items = Vec::new();
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    while let Some((line_no, line)) = lines.next() {
        let action: Map<String, Value> = match serde_json::from_slice(line) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(BulkError {
                    kind: "illegal_argument_exception",
                    reason: format!(
                        "Malformed action/metadata line [{line_no}], expected START_OBJECT but found something else"
                    ),
                })
            }
        };
        if action.len() != 1 {
            return Err(BulkError {
                kind: "illegal_argument_exception",
                reason: format!(
                    "Malformed action/metadata line [{line_no}], expected a single action, found {}",
                    action.len()
                ),
            });
        }
        let (name, meta) = action.into_iter().next().expect("one entry");
        let meta = meta.as_object().cloned().unwrap_or_default();
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .or(default_index)
            .unwrap_or("")
            .to_owned();
        let id = meta.get("_id").and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let op = match name.as_str() {
            "index" => WriteOp::Index,
            "create" => WriteOp::Create,
            "update" | "delete" => {
                if name == "update" {
                    // The partial document (or script) line belongs to this action.
                    lines.next();
                }
                items.push(BulkItem::Failed {
                    action: name.clone(),
                    index,
                    id,
                    status: 400,
                    kind: "illegal_argument_exception",
                    reason: format!(
                        "bulk action [{name}] is not supported by Oxeye's log store (records are append-only; use index or create)"
                    ),
                });
                continue;
            }
            other => {
                return Err(BulkError {
                    kind: "illegal_argument_exception",
                    reason: format!(
                        "Malformed action/metadata line [{line_no}], expected one of [create, delete, index, update] but found [{other}]"
                    ),
                })
            }
        };
        let Some((source_line, source)) = lines.next() else {
            return Err(BulkError {
                kind: "action_request_validation_exception",
                reason: format!("Validation Failed: 1: the [{name}] action on line [{line_no}] has no source line;"),
            });
        };
        if items.len() >= max_documents {
            return Err(BulkError {
                kind: "illegal_argument_exception",
                reason: format!(
                    "bulk request has more than {max_documents} documents (logs.max_bulk_documents)"
                ),
            });
        }
        let fail = |status, kind, reason: String| BulkItem::Failed {
            action: name.clone(),
            index: index.clone(),
            id: id.clone(),
            status,
            kind,
            reason,
        };
        if index.is_empty() {
            items.push(fail(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;".into(),
            ));
            continue;
        }
        if let Some(Err(reason)) = id.as_deref().map(crate::model::log::check_id) {
            items.push(fail(
                400,
                "action_request_validation_exception",
                format!("Validation Failed: 1: {reason};"),
            ));
            continue;
        }
        match serde_json::from_slice::<Value>(source) {
            Ok(Value::Object(map)) => {
                let mut doc = LogDoc::new(index, id, op, map);
                doc.raw = Some(source.to_vec());
                items.push(BulkItem::Doc(doc));
            }
            Ok(_) => items.push(fail(
                400,
                "document_parsing_exception",
                format!("[{source_line}:1] failed to parse: the document must be a JSON object"),
            )),
            Err(err) => items.push(fail(
                400,
                "document_parsing_exception",
                format!("[{source_line}:{}] failed to parse: {err}", err.column()),
            )),
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_item_errors() {
        let body = b"{\"index\":{\"_index\":\"a\"}}\n{\"m\":1}\n\
            {\"create\":{\"_id\":\"7\"}}\r\n{\"m\":2}\n\
            {\"index\":{}}\n{not json}\n\
            {\"delete\":{\"_index\":\"a\",\"_id\":\"1\"}}\n\
            {\"update\":{\"_id\":\"1\"}}\n{\"doc\":{}}\n\
            {\"index\":{\"_index\":\"b\"}}\n[1]\n";
        let items = parse(body, Some("dflt"), 100).unwrap();
        assert_eq!(items.len(), 6);
        let BulkItem::Doc(d) = &items[0] else {
            panic!()
        };
        assert_eq!(d.index, "a");
        let BulkItem::Doc(d) = &items[1] else {
            panic!()
        };
        assert_eq!(
            (d.index.as_str(), d.id.as_deref(), d.op),
            ("dflt", Some("7"), WriteOp::Create)
        );
        assert!(
            matches!(&items[2], BulkItem::Failed { kind: "document_parsing_exception", reason, .. } if reason.starts_with("[6:"))
        );
        assert!(matches!(&items[3], BulkItem::Failed { action, .. } if action == "delete"));
        assert!(matches!(&items[4], BulkItem::Failed { action, .. } if action == "update"));
        assert!(matches!(&items[5], BulkItem::Failed { .. }));
        // A broken action line fails the request.
        let err = parse(b"{\"index\":{}}\n{}\nnope\n", Some("a"), 100).unwrap_err();
        assert!(err.reason.contains("line [3]"), "{}", err.reason);
        assert!(parse(b"{\"index\":{}}\n{}\n{\"index\":{}}\n{}\n", Some("a"), 1).is_err());
        // No index anywhere.
        let items = parse(b"{\"index\":{}}\n{}\n", None, 10).unwrap();
        assert!(matches!(&items[0], BulkItem::Failed { status: 400, .. }));
    }
}
