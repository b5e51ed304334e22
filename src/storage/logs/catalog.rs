//! The log catalogue: which indices exist and the mapping (field → type) of
//! each, grown by dynamic mapping as Elasticsearch does it. A document whose
//! value does not fit its field's type is rejected with the reason
//! Elasticsearch gives; everything else is coerced to the field's type here,
//! once, so the index only ever sees one type per field.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::log::{parse_timestamp, BODY_FIELDS, TIMESTAMP_FIELD};

/// How a field behaves; the Elasticsearch type name is kept separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Analysed text; `keyword` tells whether an exact-match twin exists.
    Text,
    Keyword,
    Long,
    Double,
    Boolean,
    Date,
    Object,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMapping {
    pub kind: FieldKind,
    /// The type name `_mapping` reports (`long`, `float`, `match_only_text`, …).
    pub es_type: String,
    /// A text field with a `.keyword` sub-field (dynamic strings have one).
    #[serde(default)]
    pub keyword: bool,
}

impl FieldMapping {
    fn dynamic(kind: FieldKind, es_type: &str, keyword: bool) -> Self {
        FieldMapping {
            kind,
            es_type: es_type.into(),
            keyword,
        }
    }

    /// The mapping for an explicit type name from `PUT /<index>` mappings.
    pub fn from_es_type(es_type: &str) -> Option<FieldMapping> {
        let kind = match es_type {
            "text" | "match_only_text" => FieldKind::Text,
            "keyword" | "constant_keyword" | "wildcard" | "ip" | "version" | "flattened" => {
                FieldKind::Keyword
            }
            "long" | "integer" | "short" | "byte" | "unsigned_long" => FieldKind::Long,
            "double" | "float" | "half_float" | "scaled_float" => FieldKind::Double,
            "boolean" => FieldKind::Boolean,
            "date" | "date_nanos" => FieldKind::Date,
            "object" => FieldKind::Object,
            _ => return None,
        };
        Some(FieldMapping::dynamic(kind, es_type, false))
    }
}

/// A leaf value coerced to its field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    /// Text: analysed (`text`) and/or exact (`keyword`).
    Str {
        value: String,
        text: bool,
        keyword: bool,
    },
    I64(i64),
    F64(f64),
    Bool(bool),
    /// Nanoseconds since the epoch.
    Date(i64),
}

/// A document's leaves, flattened to dotted paths and typed.
#[derive(Debug, Default)]
pub struct TypedDoc {
    pub leaves: Vec<(String, Typed)>,
    /// The top-level message text (`message` or `body`), indexed as the body.
    pub body: Option<String>,
    /// Which of the two names it had.
    pub body_field: Option<String>,
}

/// Why a document was refused (Elasticsearch's item error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub kind: &'static str,
    pub reason: String,
}

impl DocError {
    fn parsing(reason: String) -> Self {
        DocError {
            kind: "document_parsing_exception",
            reason,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexMeta {
    pub uuid: String,
    pub created_ms: i64,
    pub fields: BTreeMap<String, FieldMapping>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub indices: BTreeMap<String, IndexMeta>,
    #[serde(skip)]
    pub dirty: bool,
}

impl Catalog {
    pub fn load(path: &Path) -> std::io::Result<Catalog> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|err| std::io::Error::other(format!("{}: {err}", path.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::default()),
            Err(err) => Err(err),
        }
    }

    /// Write atomically (temporary file + rename).
    /// The catalogue serialised, if it changed since the last snapshot
    /// (marked clean: the caller writes the bytes, and marks it dirty
    /// again if that fails).
    pub fn take_snapshot(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if !self.dirty {
            return Ok(None);
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        self.dirty = false;
        Ok(Some(bytes))
    }

    pub fn save(&mut self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::storage::write_atomically(path, &bytes)?;
        self.dirty = false;
        Ok(())
    }

    /// The index, created with only `@timestamp` mapped if it is new.
    pub fn ensure_index(&mut self, name: &str, now_ms: i64) -> &mut IndexMeta {
        if !self.indices.contains_key(name) {
            let mut fields = BTreeMap::new();
            fields.insert(
                TIMESTAMP_FIELD.to_owned(),
                FieldMapping::dynamic(FieldKind::Date, "date", false),
            );
            let uuid = format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(format!("{name}{now_ms}").as_bytes())
            );
            self.indices.insert(
                name.to_owned(),
                IndexMeta {
                    uuid,
                    created_ms: now_ms,
                    fields,
                },
            );
            self.dirty = true;
        }
        self.indices.get_mut(name).expect("just inserted")
    }

    /// Check and coerce a document against its index's mapping, adding new
    /// fields (dynamic mapping). Nothing is added when the document fails.
    pub fn type_document(
        &mut self,
        index: &str,
        source: &Map<String, Value>,
        now_ms: i64,
        max_fields: usize,
    ) -> Result<TypedDoc, DocError> {
        let meta = self.ensure_index(index, now_ms);
        let mut out = TypedDoc::default();
        let mut added =
            NewFields::with_room(max_fields.saturating_sub(meta.fields.len()), max_fields);
        type_into(meta, source, &mut out, &mut added)?;
        if !added.list.is_empty() {
            meta.fields.extend(added.list);
            self.dirty = true;
        }
        Ok(out)
    }

    /// Type a document that needs no new fields, without changing anything
    /// (callers hold only a read lock). `None` when the index or a field is
    /// new: then [`Catalog::type_document`] must run under the write lock.
    pub fn type_known(
        &self,
        index: &str,
        source: &Map<String, Value>,
    ) -> Option<Result<TypedDoc, DocError>> {
        let meta = self.indices.get(index)?;
        let mut out = TypedDoc::default();
        // No room: the first new field ends the walk; the caller retries
        // under the write lock.
        let mut added = NewFields::with_room(0, usize::MAX);
        let result = type_into(meta, source, &mut out, &mut added);
        if added.wanted {
            return None;
        }
        Some(result.map(|()| out))
    }

    /// Field mappings of the named indices merged (first one wins on conflicts).
    pub fn fields_of<'a>(
        &'a self,
        indices: impl IntoIterator<Item = &'a str>,
    ) -> BTreeMap<&'a str, &'a FieldMapping> {
        let mut out = BTreeMap::new();
        for name in indices {
            if let Some(meta) = self.indices.get(name) {
                for (path, mapping) in &meta.fields {
                    out.entry(path.as_str()).or_insert(mapping);
                }
            }
        }
        out
    }

    /// Index names matching comma-separated names and `*` patterns
    /// (`_all`, `*` and empty match every index; `-name` excludes).
    pub fn resolve(&self, expression: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for part in expression
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if let Some(excluded) = part.strip_prefix('-') {
                out.retain(|name| !glob_match(excluded, name));
                continue;
            }
            let part = if part == "_all" { "*" } else { part };
            for name in self.indices.keys() {
                if glob_match(part, name) && !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
        if expression.trim().is_empty() {
            out = self.indices.keys().cloned().collect();
        }
        out.sort();
        out
    }
}

/// `*` matches any run of characters, everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && (p[pi] == t[ti] || p[pi] == b'?') {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Type every top-level field of a document; new fields go to `added`.
/// Fields a document adds to its index's mapping, found during the walk:
/// looked up by hash (a document with many new fields costs linear time) and
/// counted against the index's field limit as they are found.
struct NewFields {
    list: Vec<(String, FieldMapping)>,
    index: HashMap<String, usize>,
    /// How many more fields the index may take.
    room: usize,
    max_fields: usize,
    /// A field was needed beyond `room`.
    wanted: bool,
}

impl NewFields {
    fn with_room(room: usize, max_fields: usize) -> NewFields {
        NewFields {
            list: Vec::new(),
            index: HashMap::new(),
            room,
            max_fields,
            wanted: false,
        }
    }

    fn get(&self, path: &str) -> Option<&FieldMapping> {
        self.index.get(path).map(|&i| &self.list[i].1)
    }

    fn add(&mut self, path: &str, mapping: FieldMapping) -> Result<(), DocError> {
        if self.index.contains_key(path) {
            return Ok(());
        }
        if self.list.len() >= self.room {
            self.wanted = true;
            return Err(DocError {
                kind: "illegal_argument_exception",
                reason: format!(
                    "Limit of total fields [{}] has been exceeded while adding new fields [{}] (logs.max_fields_per_index)",
                    self.max_fields,
                    self.list.len() + 1
                ),
            });
        }
        self.index.insert(path.to_owned(), self.list.len());
        self.list.push((path.to_owned(), mapping));
        Ok(())
    }
}

/// Field names that would break paths: empty, or holding NUL or the
/// path separator tantivy uses inside JSON fields (U+0001).
fn check_field_name(name: &str) -> Result<(), DocError> {
    if name.is_empty() || name.contains(['\0', '\u{1}']) {
        return Err(DocError::parsing(format!(
            "field name {name:?} is empty or holds a control character (NUL or U+0001)"
        )));
    }
    Ok(())
}

fn type_into(
    meta: &IndexMeta,
    source: &Map<String, Value>,
    out: &mut TypedDoc,
    added: &mut NewFields,
) -> Result<(), DocError> {
    for (key, value) in source {
        check_field_name(key)?;
        if out.body.is_none() && BODY_FIELDS.contains(&key.as_str()) {
            if let Value::String(text) = value {
                let known = meta.fields.get(key.as_str());
                if known.is_none_or(|m| m.kind == FieldKind::Text) {
                    if known.is_none() {
                        added.add(
                            key,
                            FieldMapping::dynamic(FieldKind::Text, "match_only_text", false),
                        )?;
                    }
                    out.body = Some(text.clone());
                    out.body_field = Some(key.clone());
                    continue;
                }
            }
        }
        let mut path = key.clone();
        walk(meta, &mut path, value, out, added)?;
    }
    Ok(())
}

/// Type one value at `path` (a buffer extended and restored for children).
fn walk(
    meta: &IndexMeta,
    path: &mut String,
    value: &Value,
    out: &mut TypedDoc,
    added: &mut NewFields,
) -> Result<(), DocError> {
    // Borrowed, not cloned: this runs for every leaf of every document.
    let known: Option<&FieldMapping> = meta.fields.get(path.as_str()).or_else(|| added.get(path));
    match value {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for item in items {
                walk(meta, path, item, out, added)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            match known {
                Some(m) if m.kind != FieldKind::Object => {
                    return Err(DocError::parsing(format!(
                        "failed to parse field [{path}] of type [{}]: found an object where a concrete value was expected",
                        m.es_type
                    )))
                }
                None => added.add(
                    path,
                    FieldMapping::dynamic(FieldKind::Object, "object", false),
                )?,
                _ => {}
            }
            let len = path.len();
            for (key, child) in map {
                check_field_name(key)?;
                path.push('.');
                path.push_str(key);
                walk(meta, path, child, out, added)?;
                path.truncate(len);
            }
            Ok(())
        }
        scalar => {
            let typed = match known {
                Some(m) => coerce(path, m, scalar)?,
                None => {
                    let m = dynamic_mapping(path, scalar);
                    let typed = coerce(path, &m, scalar)?;
                    added.add(path, m)?;
                    typed
                }
            };
            out.leaves.push((path.clone(), typed));
            Ok(())
        }
    }
}

fn dynamic_mapping(path: &str, value: &Value) -> FieldMapping {
    match value {
        Value::Bool(_) => FieldMapping::dynamic(FieldKind::Boolean, "boolean", false),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            FieldMapping::dynamic(FieldKind::Long, "long", false)
        }
        Value::Number(_) => FieldMapping::dynamic(FieldKind::Double, "float", false),
        _ if path == TIMESTAMP_FIELD => FieldMapping::dynamic(FieldKind::Date, "date", false),
        _ => FieldMapping::dynamic(FieldKind::Text, "text", true),
    }
}

fn coerce(path: &str, mapping: &FieldMapping, value: &Value) -> Result<Typed, DocError> {
    let fail = || {
        let preview = match value {
            Value::String(s) => s.chars().take(64).collect::<String>(),
            other => other.to_string(),
        };
        DocError::parsing(format!(
            "failed to parse field [{path}] of type [{}]. Preview of field's value: '{preview}'",
            mapping.es_type
        ))
    };
    Ok(match mapping.kind {
        FieldKind::Object => {
            return Err(DocError::parsing(format!(
                "object mapping for [{path}] tried to parse field [{path}] as object, but found a concrete value"
            )))
        }
        FieldKind::Text | FieldKind::Keyword => {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Typed::Str {
                value,
                text: mapping.kind == FieldKind::Text,
                keyword: mapping.kind == FieldKind::Keyword || mapping.keyword,
            }
        }
        FieldKind::Long => match value {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Typed::I64(i),
                None => Typed::I64(n.as_f64().filter(|f| f.is_finite()).ok_or_else(fail)? as i64),
            },
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Typed::I64(i),
                Err(_) => Typed::I64(
                    s.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .ok_or_else(fail)? as i64,
                ),
            },
            _ => return Err(fail()),
        },
        FieldKind::Double => match value {
            Value::Number(n) => Typed::F64(n.as_f64().ok_or_else(fail)?),
            Value::String(s) => Typed::F64(
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(fail)?,
            ),
            _ => return Err(fail()),
        },
        FieldKind::Boolean => match value {
            Value::Bool(b) => Typed::Bool(*b),
            Value::String(s) if s == "true" => Typed::Bool(true),
            Value::String(s) if s == "false" || s.is_empty() => Typed::Bool(false),
            _ => return Err(fail()),
        },
        FieldKind::Date => Typed::Date(parse_timestamp(value).ok_or_else(fail)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn dynamic_mapping_and_conflicts() {
        let mut catalog = Catalog::default();
        let typed = catalog
            .type_document(
                "logs",
                &doc(json!({"@timestamp": "2024-01-01T00:00:00Z", "message": "hello world",
                    "status": 200, "took": 1.5, "ok": true, "host": {"name": "web-1"}, "tags": ["a", "b"]})),
                0,
                1000,
            )
            .unwrap();
        assert_eq!(typed.body.as_deref(), Some("hello world"));
        assert!(typed
            .leaves
            .contains(&("status".to_owned(), Typed::I64(200))));
        assert_eq!(typed.leaves.iter().filter(|(p, _)| p == "tags").count(), 2);
        let fields = &catalog.indices["logs"].fields;
        assert_eq!(fields["host"].kind, FieldKind::Object);
        assert_eq!(fields["host.name"].kind, FieldKind::Text);
        assert_eq!(fields["took"].es_type, "float");
        // Coercion: numeric strings into long fields, numbers into text.
        let typed = catalog
            .type_document(
                "logs",
                &doc(json!({"status": "404", "host": {"name": 7}})),
                0,
                1000,
            )
            .unwrap();
        assert!(typed
            .leaves
            .contains(&("status".to_owned(), Typed::I64(404))));
        // Conflicts are refused and add nothing.
        let err = catalog
            .type_document(
                "logs",
                &doc(json!({"status": "oops", "new_field": 1})),
                0,
                1000,
            )
            .unwrap_err();
        assert_eq!(err.kind, "document_parsing_exception");
        assert!(err.reason.contains("[status]"), "{}", err.reason);
        assert!(!catalog.indices["logs"].fields.contains_key("new_field"));
        assert!(catalog
            .type_document("logs", &doc(json!({"host": "flat"})), 0, 1000)
            .is_err());
        // The read-only path types known documents and defers new fields.
        assert!(catalog
            .type_known("logs", &doc(json!({"status": 1, "host": {"name": "a"}})))
            .unwrap()
            .is_ok());
        assert!(catalog
            .type_known("logs", &doc(json!({"brand_new": 1})))
            .is_none());
        assert!(catalog
            .type_known("other", &doc(json!({"status": 1})))
            .is_none());
        assert!(catalog
            .type_known("logs", &doc(json!({"status": "x"})))
            .unwrap()
            .is_err());
        // Field limit.
        let err = catalog
            .type_document("logs", &doc(json!({"x1": 1, "x2": 2})), 0, 9)
            .unwrap_err();
        assert!(err.reason.contains("Limit of total fields"));
    }

    #[test]
    fn patterns() {
        let mut catalog = Catalog::default();
        for name in ["logs-a", "logs-b", "metrics"] {
            catalog.ensure_index(name, 0);
        }
        assert_eq!(catalog.resolve("logs-*"), vec!["logs-a", "logs-b"]);
        assert_eq!(catalog.resolve("_all").len(), 3);
        assert_eq!(catalog.resolve("*,-logs-a"), vec!["logs-b", "metrics"]);
        assert_eq!(catalog.resolve("nope"), Vec::<String>::new());
        assert!(glob_match("a*c", "abbc"));
        assert!(!glob_match("a*c", "abbd"));
    }
}
