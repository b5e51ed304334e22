//! [`LogQuery`] → tantivy query, resolving Elasticsearch field names against
//! the mappings of the indices searched.
//!
//! Field routing follows what users of Elasticsearch with ECS-style mappings
//! expect: analysed queries (`match`, `match_phrase`, query strings) on a
//! text field search its words; exact queries (`term`, `terms`, `prefix`,
//! `wildcard`, `regexp`, `range`) on a text field with a keyword twin use the
//! twin, with or without the `.keyword` suffix. Numbers, booleans and dates
//! are coerced to the field's type, so `status:500` and
//! `{"term":{"status":"500"}}` find the long `500`.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde_json::Value;
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery,
    RegexQuery, TermQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DateTime, Term};

use super::ast::{BoolQuery, LogQuery};
use super::catalog_glob;
use super::{datemath, QueryError};
use crate::model::log::{BODY_FIELDS, TIMESTAMP_FIELD};
use crate::storage::logs::catalog::{FieldKind, FieldMapping};
use crate::storage::logs::schema::{self, LogSchema};

/// Most fields a default-field or wildcard-field query expands to.
const MAX_EXPANDED_FIELDS: usize = 1024;

pub struct Compiler<'a> {
    pub schema: &'a LogSchema,
    pub fields: &'a BTreeMap<&'a str, &'a FieldMapping>,
    pub indices: &'a [String],
    pub now_ms: i64,
    pub analyzer: TextAnalyzer,
}

/// Where a field name points.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Timestamp,
    Body,
    Index,
    Id,
    Json {
        path: &'a str,
        mapping: &'a FieldMapping,
        /// `.keyword` was asked for: exact only.
        keyword: bool,
    },
    Unknown,
}

impl<'a> Compiler<'a> {
    pub fn new(
        schema: &'a LogSchema,
        fields: &'a BTreeMap<&'a str, &'a FieldMapping>,
        indices: &'a [String],
        now_ms: i64,
    ) -> Self {
        let analyzer = tantivy::tokenizer::TokenizerManager::default()
            .get(schema::TEXT_TOKENIZER)
            .expect("the default tokenizer exists");
        Compiler {
            schema,
            fields,
            indices,
            now_ms,
            analyzer,
        }
    }

    pub fn compile(&mut self, query: &LogQuery) -> Result<Box<dyn Query>, QueryError> {
        Ok(match query {
            LogQuery::All => Box::new(AllQuery),
            LogQuery::Nothing => Box::new(EmptyQuery),
            LogQuery::Term { field, value } => self.exact(field, value)?,
            LogQuery::Terms { field, values } => {
                let clauses = values
                    .iter()
                    .map(|v| self.exact(field, v))
                    .collect::<Result<Vec<_>, _>>()?;
                union(clauses)
            }
            LogQuery::Match {
                field: Some(field),
                text,
                ..
            }
            | LogQuery::Phrase {
                field: Some(field),
                text,
                ..
            } if is_id_path(field) => self.exact(field, &Value::String(text.clone()))?,
            LogQuery::Match {
                field,
                text,
                and,
                minimum_should_match,
            } => {
                let targets = self.targets(field.as_deref());
                let mut clauses = Vec::new();
                for target in targets {
                    clauses.push(self.match_target(target, text, *and, *minimum_should_match)?);
                }
                union(clauses)
            }
            LogQuery::Phrase { field, text, slop } => {
                let targets = self.targets(field.as_deref());
                let mut clauses = Vec::new();
                for target in targets {
                    clauses.push(self.phrase_target(target, text, *slop)?);
                }
                union(clauses)
            }
            LogQuery::Range {
                field,
                lower,
                upper,
                format,
            } => self.range(field, lower.as_ref(), upper.as_ref(), format.as_deref())?,
            LogQuery::Exists { field } => {
                let name = field.strip_suffix(".keyword").unwrap_or(field);
                if field.contains('*') {
                    let names: Vec<String> = self
                        .fields
                        .keys()
                        .filter(|p| catalog_glob(field, p))
                        .map(|p| p.to_string())
                        .collect();
                    union(
                        names
                            .iter()
                            .map(|n| {
                                self.term_query(Term::from_field_text(self.schema.field_names, n))
                            })
                            .collect(),
                    )
                } else if name == TIMESTAMP_FIELD || name == "_id" || name == "_index" {
                    Box::new(AllQuery)
                } else {
                    self.term_query(Term::from_field_text(self.schema.field_names, name))
                }
            }
            LogQuery::Prefix {
                field,
                value,
                case_insensitive,
            } => self.pattern(
                field.as_deref(),
                &format!("{}.*", regex_syntax_escape(value)),
                *case_insensitive,
                value,
            )?,
            LogQuery::Wildcard {
                field,
                pattern,
                case_insensitive,
            } => self.pattern(
                field.as_deref(),
                &wildcard_to_regex(pattern),
                *case_insensitive,
                pattern,
            )?,
            LogQuery::Regexp {
                field,
                pattern,
                case_insensitive,
            } => self.pattern(field.as_deref(), pattern, *case_insensitive, pattern)?,
            LogQuery::Ids(ids) => union(ids.iter().map(|id| self.id_query(id)).collect()),
            LogQuery::Bool(b) => self.boolean(b)?,
        })
    }

    fn boolean(&mut self, b: &BoolQuery) -> Result<Box<dyn Query>, QueryError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for q in &b.must {
            clauses.push((Occur::Must, self.compile(q)?));
        }
        for q in &b.filter {
            clauses.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(self.compile(q)?, 0.0)),
            ));
        }
        let required = b.required_should();
        let mut should: Vec<Box<dyn Query>> = Vec::new();
        for q in &b.should {
            should.push(self.compile(q)?);
        }
        if required > 0 {
            let group = BooleanQuery::with_minimum_required_clauses(
                should.into_iter().map(|q| (Occur::Should, q)).collect(),
                required,
            );
            clauses.push((Occur::Must, Box::new(group)));
        } else {
            clauses.extend(should.into_iter().map(|q| (Occur::Should, q)));
        }
        for q in &b.must_not {
            clauses.push((Occur::MustNot, self.compile(q)?));
        }
        if !clauses.iter().any(|(o, _)| *o == Occur::Must) {
            // Only optional or negative clauses: everything is a candidate.
            let has_should = clauses.iter().any(|(o, _)| *o == Occur::Should);
            if !has_should || required == 0 {
                clauses.push((
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(Box::new(AllQuery), 0.0)),
                ));
            }
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    fn resolve(&self, name: &str) -> Target<'a> {
        match name {
            TIMESTAMP_FIELD => return Target::Timestamp,
            "_index" => return Target::Index,
            "_id" => return Target::Id,
            _ => {}
        }
        if let Some((path, mapping)) = self.fields.get_key_value(name) {
            if BODY_FIELDS.contains(&name) && mapping.kind == FieldKind::Text && !mapping.keyword {
                return Target::Body;
            }
            return Target::Json {
                path,
                mapping,
                keyword: false,
            };
        }
        if let Some(base) = name.strip_suffix(".keyword") {
            if let Some((path, mapping)) = self.fields.get_key_value(base) {
                return Target::Json {
                    path,
                    mapping,
                    keyword: true,
                };
            }
        }
        Target::Unknown
    }

    /// The fields a (possibly absent or wildcard) field name stands for.
    fn targets(&self, field: Option<&str>) -> Vec<Target<'a>> {
        match field {
            Some(f) if !f.contains('*') => vec![self.resolve(f)],
            Some(pattern) => self
                .fields
                .iter()
                .filter(|(p, m)| m.kind != FieldKind::Object && catalog_glob(pattern, p))
                .take(MAX_EXPANDED_FIELDS)
                .map(|(p, _)| self.resolve(p))
                .collect(),
            None => {
                let mut out = vec![Target::Body];
                out.extend(
                    self.fields
                        .iter()
                        .filter(|(p, m)| m.kind == FieldKind::Text && !BODY_FIELDS.contains(&(**p)))
                        .take(MAX_EXPANDED_FIELDS)
                        .map(|(p, m)| Target::Json {
                            path: p,
                            mapping: m,
                            keyword: false,
                        }),
                );
                out
            }
        }
    }

    fn tokens(&mut self, text: &str) -> Vec<String> {
        let mut stream = self.analyzer.token_stream(text);
        let mut out = Vec::new();
        while let Some(token) = stream.next() {
            out.push(token.text.clone());
        }
        out
    }

    fn text_term(&self, target: Target<'_>, token: &str) -> Option<Term> {
        match target {
            Target::Body => Some(Term::from_field_text(self.schema.body, token)),
            Target::Json { path, .. } => {
                let mut term = Term::from_field_json_path(self.schema.text, path, true);
                term.append_type_and_str(token);
                Some(term)
            }
            _ => None,
        }
    }

    fn is_analysed(target: Target<'_>) -> bool {
        match target {
            Target::Body => true,
            Target::Json {
                mapping, keyword, ..
            } => mapping.kind == FieldKind::Text && !keyword,
            _ => false,
        }
    }

    fn match_target(
        &mut self,
        target: Target<'a>,
        text: &str,
        and: bool,
        msm: Option<super::ast::MinimumShouldMatch>,
    ) -> Result<Box<dyn Query>, QueryError> {
        if !Self::is_analysed(target) {
            return self.exact_target(target, &Value::String(text.to_owned()));
        }
        let tokens = self.tokens(text);
        let terms: Vec<Term> = tokens
            .iter()
            .filter_map(|t| self.text_term(target, t))
            .collect();
        if terms.is_empty() {
            return Ok(Box::new(EmptyQuery));
        }
        if terms.len() == 1 {
            return Ok(Box::new(TermQuery::new(
                terms.into_iter().next().expect("one term"),
                IndexRecordOption::WithFreqs,
            )));
        }
        let n = terms.len();
        let queries: Vec<(Occur, Box<dyn Query>)> = terms
            .into_iter()
            .map(|t| {
                let occur = if and { Occur::Must } else { Occur::Should };
                (
                    occur,
                    Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)) as Box<dyn Query>,
                )
            })
            .collect();
        if and {
            return Ok(Box::new(BooleanQuery::new(queries)));
        }
        let required = msm.map_or(1, |m| m.required(n).max(1));
        Ok(Box::new(BooleanQuery::with_minimum_required_clauses(
            queries, required,
        )))
    }

    fn phrase_target(
        &mut self,
        target: Target<'a>,
        text: &str,
        slop: u32,
    ) -> Result<Box<dyn Query>, QueryError> {
        if !Self::is_analysed(target) {
            return self.exact_target(target, &Value::String(text.to_owned()));
        }
        let tokens = self.tokens(text);
        let terms: Vec<Term> = tokens
            .iter()
            .filter_map(|t| self.text_term(target, t))
            .collect();
        Ok(match terms.len() {
            0 => Box::new(EmptyQuery),
            1 => Box::new(TermQuery::new(
                terms.into_iter().next().expect("one term"),
                IndexRecordOption::WithFreqs,
            )),
            _ => {
                let mut phrase = PhraseQuery::new(terms);
                phrase.set_slop(slop);
                Box::new(phrase)
            }
        })
    }

    fn exact(&mut self, field: &str, value: &Value) -> Result<Box<dyn Query>, QueryError> {
        if field.contains('*') {
            let targets = self.targets(Some(field));
            let mut clauses = Vec::new();
            for t in targets {
                clauses.push(self.exact_target(t, value)?);
            }
            return Ok(union(clauses));
        }
        let target = self.resolve(field);
        let by_mapping = self.exact_target(target, value)?;
        Ok(match self.fixed_id_query(field, value) {
            Some(by_column) => union(vec![by_mapping, by_column]),
            None => by_mapping,
        })
    }

    /// Documents with this id in any searched index: a caller-chosen id by
    /// its `_uid` term, a generated one by its seed and sequence columns.
    fn id_query(&self, id: &str) -> Box<dyn Query> {
        let mut clauses: Vec<Box<dyn Query>> = self
            .indices
            .iter()
            .map(|i| self.term_query(Term::from_field_text(self.schema.uid, &schema::uid(i, id))))
            .collect();
        if let Some((seed, seq)) = schema::parse_generated_id(id) {
            let exact = |field, v: u64| -> Box<dyn Query> {
                let term = Term::from_field_u64(field, v);
                Box::new(RangeQuery::new(
                    Bound::Included(term.clone()),
                    Bound::Included(term),
                ))
            };
            clauses.push(Box::new(BooleanQuery::new(vec![
                (Occur::Must, exact(self.schema.id_seed, seed)),
                (Occur::Must, exact(self.schema.id_seq, seq)),
            ])));
        }
        union(clauses)
    }

    /// A hex trace or span id on one of their paths: the fixed-width column.
    fn fixed_id_query(&self, field: &str, value: &Value) -> Option<Box<dyn Query>> {
        let text = value.as_str()?;
        let term = if schema::TRACE_ID_PATHS.contains(&field) {
            let bytes = schema::parse_hex::<16>(text)?;
            Term::from_field_ip_addr(self.schema.trace_id, std::net::Ipv6Addr::from(bytes))
        } else if schema::SPAN_ID_PATHS.contains(&field) {
            let bytes = schema::parse_hex::<8>(text)?;
            Term::from_field_u64(self.schema.span_id, u64::from_be_bytes(bytes))
        } else {
            return None;
        };
        Some(Box::new(RangeQuery::new(
            Bound::Included(term.clone()),
            Bound::Included(term),
        )))
    }

    fn term_query(&self, term: Term) -> Box<dyn Query> {
        Box::new(TermQuery::new(term, IndexRecordOption::Basic))
    }

    fn exact_target(
        &mut self,
        target: Target<'a>,
        value: &Value,
    ) -> Result<Box<dyn Query>, QueryError> {
        Ok(match target {
            Target::Unknown => Box::new(EmptyQuery),
            Target::Timestamp => {
                let ns = datemath::resolve(value, None, self.now_ms, false)
                    .map_err(QueryError::parsing)?;
                let term =
                    Term::from_field_date(self.schema.ts, DateTime::from_timestamp_nanos(ns));
                Box::new(RangeQuery::new(
                    Bound::Included(term.clone()),
                    Bound::Included(term),
                ))
            }
            Target::Index => match value.as_str() {
                Some(name) => self.term_query(Term::from_field_text(self.schema.index, name)),
                None => Box::new(EmptyQuery),
            },
            Target::Id => self.id_query(&scalar_string(value)),
            Target::Body => {
                // A term on analysed text matches one word exactly.
                self.term_query(Term::from_field_text(
                    self.schema.body,
                    &scalar_string(value),
                ))
            }
            Target::Json {
                path,
                mapping,
                keyword,
            } => {
                if mapping.kind == FieldKind::Text && !mapping.keyword && !keyword {
                    let term = self
                        .text_term(target, &scalar_string(value))
                        .expect("json target");
                    return Ok(self.term_query(term));
                }
                match self.kw_term(path, mapping, value)? {
                    Some(term) => {
                        if matches!(mapping.kind, FieldKind::Date) {
                            Box::new(RangeQuery::new(
                                Bound::Included(term.clone()),
                                Bound::Included(term),
                            ))
                        } else {
                            self.term_query(term)
                        }
                    }
                    None => Box::new(EmptyQuery),
                }
            }
        })
    }

    /// The `kw` term of a value coerced to the field's type; `None` when the
    /// value cannot be of that type (so nothing matches).
    fn kw_term(
        &self,
        path: &str,
        mapping: &FieldMapping,
        value: &Value,
    ) -> Result<Option<Term>, QueryError> {
        let mut term = Term::from_field_json_path(self.schema.kw, path, true);
        match mapping.kind {
            FieldKind::Text | FieldKind::Keyword | FieldKind::Object => {
                term.append_type_and_str(&scalar_string(value))
            }
            FieldKind::Long => match number(value) {
                Some(x) if x.fract() == 0.0 => term.append_type_and_fast_value(x as i64),
                _ => return Ok(None),
            },
            FieldKind::Double => match number(value) {
                Some(x) => term.append_type_and_fast_value(x),
                None => return Ok(None),
            },
            FieldKind::Boolean => match value {
                Value::Bool(b) => term.append_type_and_fast_value(*b),
                Value::String(s) if s == "true" || s == "false" => {
                    term.append_type_and_fast_value(s == "true")
                }
                _ => return Ok(None),
            },
            FieldKind::Date => {
                let ns = datemath::resolve(value, None, self.now_ms, false)
                    .map_err(QueryError::parsing)?;
                term.append_type_and_fast_value(DateTime::from_timestamp_nanos(ns))
            }
        }
        Ok(Some(term))
    }

    fn range(
        &mut self,
        field: &str,
        lower: Option<&(Value, bool)>,
        upper: Option<&(Value, bool)>,
        format: Option<&str>,
    ) -> Result<Box<dyn Query>, QueryError> {
        if lower.is_none() && upper.is_none() {
            return self.compile(&LogQuery::Exists {
                field: field.to_owned(),
            });
        }
        let target = self.resolve(field);
        let date_bound = |this: &Self,
                          b: Option<&(Value, bool)>,
                          is_upper: bool,
                          make: &dyn Fn(i64) -> Term|
         -> Result<Bound<Term>, QueryError> {
            Ok(match b {
                None => Bound::Unbounded,
                Some((v, inclusive)) => {
                    let round_up = is_upper == *inclusive;
                    let ns = datemath::resolve(v, format, this.now_ms, round_up)
                        .map_err(|e| QueryError::parsing(e).with_kind("parse_exception"))?;
                    if *inclusive {
                        Bound::Included(make(ns))
                    } else {
                        Bound::Excluded(make(ns))
                    }
                }
            })
        };
        match target {
            Target::Unknown | Target::Body | Target::Id => Ok(Box::new(EmptyQuery)),
            Target::Index => Ok(Box::new(EmptyQuery)),
            Target::Timestamp => {
                let ts = self.schema.ts;
                let make =
                    move |ns: i64| Term::from_field_date(ts, DateTime::from_timestamp_nanos(ns));
                let lo = date_bound(self, lower, false, &make)?;
                let hi = date_bound(self, upper, true, &make)?;
                Ok(Box::new(RangeQuery::new(lo, hi)))
            }
            Target::Json { path, mapping, .. } => {
                let kw = self.schema.kw;
                let json_term = move || Term::from_field_json_path(kw, path, true);
                let (lo, hi) = match mapping.kind {
                    FieldKind::Date => {
                        let make = move |ns: i64| {
                            let mut t = json_term();
                            t.append_type_and_fast_value(DateTime::from_timestamp_nanos(ns));
                            t
                        };
                        (
                            date_bound(self, lower, false, &make)?,
                            date_bound(self, upper, true, &make)?,
                        )
                    }
                    FieldKind::Long | FieldKind::Double => {
                        let long = mapping.kind == FieldKind::Long;
                        let bound = |b: Option<&(Value, bool)>,
                                     is_upper: bool|
                         -> Result<Bound<Term>, QueryError> {
                            let Some((v, inclusive)) = b else {
                                return Ok(Bound::Unbounded);
                            };
                            let x = number(v).ok_or_else(|| {
                                QueryError::parsing(format!(
                                    "[range] bound {v} of field [{path}] is not a number"
                                ))
                                .with_kind("number_format_exception")
                            })?;
                            let mut t = json_term();
                            if long {
                                // Integer bounds equivalent to the float bound.
                                let (n, incl) = if x.fract() == 0.0 {
                                    (x as i64, *inclusive)
                                } else if is_upper {
                                    (x.floor() as i64, true)
                                } else {
                                    (x.ceil() as i64, true)
                                };
                                t.append_type_and_fast_value(n);
                                return Ok(if incl {
                                    Bound::Included(t)
                                } else {
                                    Bound::Excluded(t)
                                });
                            }
                            t.append_type_and_fast_value(x);
                            Ok(if *inclusive {
                                Bound::Included(t)
                            } else {
                                Bound::Excluded(t)
                            })
                        };
                        (bound(lower, false)?, bound(upper, true)?)
                    }
                    _ => {
                        let bound = |b: Option<&(Value, bool)>| {
                            let Some((v, inclusive)) = b else {
                                return Bound::Unbounded;
                            };
                            let mut t = json_term();
                            t.append_type_and_str(&scalar_string(v));
                            if *inclusive {
                                Bound::Included(t)
                            } else {
                                Bound::Excluded(t)
                            }
                        };
                        (bound(lower), bound(upper))
                    }
                };
                Ok(Box::new(RangeQuery::new(lo, hi)))
            }
        }
    }

    /// Prefix, wildcard and regexp queries as a regex over the field's terms.
    fn pattern(
        &mut self,
        field: Option<&str>,
        regex: &str,
        case_insensitive: bool,
        original: &str,
    ) -> Result<Box<dyn Query>, QueryError> {
        let targets = self.targets(field);
        let mut clauses = Vec::new();
        for target in targets {
            // Exact patterns use a keyword twin when there is one.
            let analysed = match target {
                Target::Json { mapping, .. } => Self::is_analysed(target) && !mapping.keyword,
                other => Self::is_analysed(other),
            };
            // Analysed terms are lowercase words: match the pattern lowercased.
            let body = if analysed {
                regex.to_lowercase()
            } else {
                regex.to_owned()
            };
            let flags = if case_insensitive && !analysed {
                "(?i)"
            } else {
                ""
            };
            let (field_handle, prefix) = match target {
                Target::Body => (self.schema.body, String::new()),
                Target::Json { path, mapping, .. } => {
                    if !analysed && !matches!(mapping.kind, FieldKind::Text | FieldKind::Keyword) {
                        continue;
                    }
                    let handle = if analysed {
                        self.schema.text
                    } else {
                        self.schema.kw
                    };
                    let mut term = Term::from_field_json_path(handle, path, true);
                    term.append_type_and_str("");
                    let bytes = term.serialized_value_bytes().to_vec();
                    let prefix = String::from_utf8_lossy(&bytes).into_owned();
                    (handle, regex_syntax_escape(&prefix))
                }
                Target::Index => {
                    let names: Vec<&String> = self
                        .indices
                        .iter()
                        .filter(|n| match regex::Regex::new(&format!("^(?:{regex})$")) {
                            Ok(r) => r.is_match(n),
                            Err(_) => false,
                        })
                        .collect();
                    clauses.push(union(
                        names
                            .into_iter()
                            .map(|n| self.term_query(Term::from_field_text(self.schema.index, n)))
                            .collect(),
                    ));
                    continue;
                }
                _ => continue,
            };
            let full = format!("{flags}{prefix}(?:{body})");
            let query = RegexQuery::from_pattern(&full, field_handle).map_err(|err| {
                QueryError::parsing(format!("invalid pattern [{original}]: {err}"))
                    .with_kind("query_shard_exception")
            })?;
            clauses.push(Box::new(query));
        }
        Ok(union(clauses))
    }
}

fn union(mut clauses: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    match clauses.len() {
        0 => Box::new(EmptyQuery),
        1 => clauses.pop().expect("one clause"),
        _ => Box::new(BooleanQuery::union(clauses)),
    }
}

fn scalar_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Escape everything the regex syntax treats specially.
pub fn regex_syntax_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        match c {
            '\0' => out.push_str("\\x00"),
            '\u{1}' => out.push_str("\\x01"),
            c if "\\.+*?()|[]{}^$#&-~\"<>@".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `*` → `.*`, `?` → `.`, `\*`/`\?` literal, the rest escaped.
pub fn wildcard_to_regex(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push_str(&regex_syntax_escape(&next.to_string()));
                }
            }
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex_syntax_escape(&c.to_string())),
        }
    }
    out
}

fn is_id_path(field: &str) -> bool {
    schema::TRACE_ID_PATHS.contains(&field) || schema::SPAN_ID_PATHS.contains(&field)
}
