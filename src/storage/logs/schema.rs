//! The tantivy schema of a log partition and how a typed document becomes a
//! tantivy document.
//!
//! | field          | holds                                   | index            | fast |
//! |----------------|-----------------------------------------|------------------|------|
//! | `_uid`         | `index \0 id` (stored)                  | raw              |      |
//! | `_index`       | index name                              | raw              | yes  |
//! | `ts`           | `@timestamp` (ms precision)             | yes              | yes  |
//! | `body`         | `message`/`body` text                   | words+positions  |      |
//! | `severity_text`, `service`, `trace_id`, `span_id` | well-known keywords | raw | yes |
//! | `severity_number` | i64                                  | yes              | yes  |
//! | `text`         | JSON: every text leaf, analysed         | words+positions  |      |
//! | `kw`           | JSON: exact values (keywords ≤ ignore_above, numbers, booleans, dates) | raw | yes |
//! | `_field_names` | every leaf path and its parents (for `exists`) | raw       |      |
//! | `_source`      | the original JSON (stored, zstd)        |                  |      |

use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, JsonObjectOptions, NumericOptions,
    OwnedValue, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING,
};
use tantivy::{DateTime, TantivyDocument};

use super::catalog::{Typed, TypedDoc};

pub const UID: &str = "_uid";
pub const INDEX: &str = "_index";
pub const TS: &str = "ts";
pub const BODY: &str = "body";
pub const SEVERITY_TEXT: &str = "severity_text";
pub const SEVERITY_NUMBER: &str = "severity_number";
pub const SERVICE: &str = "service";
pub const TRACE_ID: &str = "trace_id";
pub const SPAN_ID: &str = "span_id";
pub const TEXT: &str = "text";
pub const KW: &str = "kw";
pub const FIELD_NAMES: &str = "_field_names";
pub const SOURCE: &str = "_source";

/// The analyser of `body` and `text` (split on non-alphanumerics, lowercase).
pub const TEXT_TOKENIZER: &str = "default";

/// Handles of every field of the schema.
#[derive(Clone)]
pub struct LogSchema {
    pub schema: Schema,
    pub uid: Field,
    pub index: Field,
    pub ts: Field,
    pub body: Field,
    pub severity_text: Field,
    pub severity_number: Field,
    pub service: Field,
    pub trace_id: Field,
    pub span_id: Field,
    pub text: Field,
    pub kw: Field,
    pub field_names: Field,
    pub source: Field,
}

impl LogSchema {
    pub fn new() -> LogSchema {
        let mut builder = Schema::builder();
        let analysed = TextFieldIndexing::default()
            .set_tokenizer(TEXT_TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let raw_basic = TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::Basic);
        let keyword = TextOptions::default()
            .set_indexing_options(raw_basic.clone())
            .set_fast("raw");
        let uid = builder.add_text_field(
            UID,
            TextOptions::default()
                .set_indexing_options(raw_basic.clone())
                .set_stored(),
        );
        let index = builder.add_text_field(INDEX, keyword.clone());
        let ts = builder.add_date_field(
            TS,
            DateOptions::default()
                .set_indexed()
                .set_fast()
                .set_precision(DateTimePrecision::Milliseconds),
        );
        let body = builder.add_text_field(
            BODY,
            TextOptions::default().set_indexing_options(analysed.clone()),
        );
        let severity_text = builder.add_text_field(SEVERITY_TEXT, keyword.clone());
        let severity_number = builder.add_i64_field(
            SEVERITY_NUMBER,
            NumericOptions::default().set_indexed().set_fast(),
        );
        let service = builder.add_text_field(SERVICE, keyword.clone());
        let trace_id = builder.add_text_field(TRACE_ID, keyword.clone());
        let span_id = builder.add_text_field(SPAN_ID, keyword);
        let text = builder.add_json_field(
            TEXT,
            JsonObjectOptions::default()
                .set_indexing_options(analysed)
                .set_expand_dots_enabled(),
        );
        let kw = builder.add_json_field(
            KW,
            JsonObjectOptions::default()
                .set_indexing_options(raw_basic)
                .set_fast("raw")
                .set_expand_dots_enabled(),
        );
        let field_names = builder.add_text_field(FIELD_NAMES, STRING);
        let source = builder.add_bytes_field(SOURCE, STORED);
        let _ = (FAST, INDEXED);
        LogSchema {
            schema: builder.build(),
            uid,
            index,
            ts,
            body,
            severity_text,
            severity_number,
            service,
            trace_id,
            span_id,
            text,
            kw,
            field_names,
            source,
        }
    }

    /// Build the tantivy document of a typed record.
    #[allow(clippy::too_many_arguments)]
    pub fn document(
        &self,
        index: &str,
        id: &str,
        timestamp_ns: i64,
        typed: &TypedDoc,
        source: &[u8],
        keyword_ignore_above: usize,
    ) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_text(self.uid, uid(index, id));
        doc.add_text(self.index, index);
        doc.add_date(self.ts, DateTime::from_timestamp_nanos(timestamp_ns));
        if let Some(body) = &typed.body {
            doc.add_text(self.body, body);
        }
        let mut text = Vec::new();
        let mut kw = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (path, value) in &typed.leaves {
            names.push(path);
            match value {
                Typed::Str {
                    value,
                    text: analysed,
                    keyword,
                } => {
                    if *analysed {
                        text.push((path.clone(), OwnedValue::Str(value.clone())));
                    }
                    if *keyword && value.len() <= keyword_ignore_above {
                        kw.push((path.clone(), OwnedValue::Str(value.clone())));
                    }
                    self.well_known(&mut doc, path, value);
                }
                Typed::I64(v) => {
                    if path == SEVERITY_NUMBER {
                        doc.add_i64(self.severity_number, *v);
                    }
                    kw.push((path.clone(), OwnedValue::I64(*v)));
                }
                Typed::F64(v) => kw.push((path.clone(), OwnedValue::F64(*v))),
                Typed::Bool(v) => kw.push((path.clone(), OwnedValue::Bool(*v))),
                // `@timestamp` is the `ts` field already.
                Typed::Date(_) if path == crate::model::log::TIMESTAMP_FIELD => {}
                Typed::Date(ns) => kw.push((
                    path.clone(),
                    OwnedValue::Date(DateTime::from_timestamp_nanos(*ns)),
                )),
            }
        }
        if typed.body.is_some() {
            names.push(BODY);
        }
        if !text.is_empty() {
            doc.add_field_value(self.text, &OwnedValue::Object(text));
        }
        if !kw.is_empty() {
            doc.add_field_value(self.kw, &OwnedValue::Object(kw));
        }
        // Every path and its parents, once.
        let mut all: Vec<&str> = Vec::with_capacity(names.len() * 2);
        for name in names {
            let mut end = name.len();
            loop {
                all.push(&name[..end]);
                match name[..end].rfind('.') {
                    Some(dot) => end = dot,
                    None => break,
                }
            }
        }
        all.sort_unstable();
        all.dedup();
        for name in all {
            doc.add_text(self.field_names, name);
        }
        doc.add_bytes(self.source, source);
        doc
    }

    fn well_known(&self, doc: &mut TantivyDocument, path: &str, value: &str) {
        let field = match path {
            "severity_text" | "log.level" | "level" | "severity" => self.severity_text,
            "service.name" | "resource.attributes.service.name" => self.service,
            "trace_id" | "trace.id" | "traceId" => self.trace_id,
            "span_id" | "span.id" | "spanId" => self.span_id,
            _ => return,
        };
        doc.add_text(field, value);
    }
}

impl Default for LogSchema {
    fn default() -> Self {
        LogSchema::new()
    }
}

/// The unique key of a document: index name and id.
pub fn uid(index: &str, id: &str) -> String {
    let mut out = String::with_capacity(index.len() + id.len() + 1);
    out.push_str(index);
    out.push('\0');
    out.push_str(id);
    out
}

/// Split a stored `_uid` into index and id.
pub fn split_uid(uid: &str) -> (&str, &str) {
    uid.split_once('\0').unwrap_or(("", uid))
}
