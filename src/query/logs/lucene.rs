//! Lucene query syntax (Elasticsearch's `query_string`, Oxeye's own log
//! search) → [`LogQuery`].
//!
//! Supported: words and `"phrases"` (with `~slop`), `field:value`,
//! `field:(a OR b)`, `AND`/`OR`/`NOT`, `&&`/`||`/`!`, `+`/`-` prefixes,
//! parentheses, `*`/`?` wildcards, `field:/regex/`, ranges
//! `field:[a TO b]`, `{a TO b}` and mixed, `field:>5` (`>=`, `<`, `<=`),
//! `_exists_:field`, `field:*`, and backslash escapes. Boosts (`^2`) and
//! fuzziness (`~1` after a word) are accepted and ignored for matching.

use serde_json::Value;

use super::ast::LogQuery;
use super::QueryError;

/// Parse `text`; bare words search `default_fields` (or the default fields of
/// the index when empty); `and` makes juxtaposition mean AND.
pub fn parse(text: &str, default_fields: &[String], and: bool) -> Result<LogQuery, QueryError> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
        max_depth: super::ast::max_query_depth(),
        default_fields,
        and,
    };
    parser.skip_ws();
    if parser.at_end() {
        return Ok(LogQuery::All);
    }
    let query = parser.or_expr(None)?;
    parser.skip_ws();
    if !parser.at_end() {
        return Err(parser.error("unexpected input"));
    }
    Ok(query)
}

#[derive(Clone, Copy, PartialEq)]
enum Modifier {
    None,
    Required,
    Prohibited,
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    /// Groups and negations open at `pos`; bounded by `max_depth` so that
    /// no input can recurse the parser (or later stages) off the stack.
    depth: usize,
    max_depth: usize,
    default_fields: &'a [String],
    and: bool,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> QueryError {
        // The query is quoted as Elasticsearch does, but not without bound.
        const QUOTED: usize = 256;
        let mut text: String = self.chars.iter().take(QUOTED).collect();
        if self.chars.len() > QUOTED {
            text.push_str("...");
        }
        QueryError::parsing(format!(
            "Failed to parse query [{text}]: {what} at position {}",
            self.pos
        ))
        .with_kind("query_shard_exception")
    }

    /// Enter a group or negation; errors past the nesting limit.
    fn descend(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.error(&format!(
                "query is nested deeper than {} levels (logs.max_query_depth)",
                self.max_depth
            )));
        }
        Ok(())
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        let n = word.chars().count();
        let matches = self.chars[self.pos..]
            .iter()
            .take(n)
            .copied()
            .eq(word.chars());
        let boundary = self
            .chars
            .get(self.pos + n)
            .is_none_or(|c| c.is_whitespace() || *c == '(' || *c == ')');
        if matches && (boundary || !word.chars().all(char::is_alphabetic)) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    /// A sequence of clauses joined by OR (explicit, or implicit when the
    /// default operator is OR), each with its `+`/`-` modifier.
    fn or_expr(&mut self, field: Option<&str>) -> Result<LogQuery, QueryError> {
        let mut items: Vec<(Modifier, LogQuery)> = Vec::new();
        loop {
            self.skip_ws();
            if self.at_end() || self.peek() == Some(')') {
                break;
            }
            if !items.is_empty() && (self.keyword("OR") || self.keyword("||")) {
                self.skip_ws();
            }
            let item = self.and_expr(field)?;
            items.push(item);
        }
        if items.is_empty() {
            return Err(self.error("expected a query"));
        }
        Ok(combine(items))
    }

    fn and_expr(&mut self, field: Option<&str>) -> Result<(Modifier, LogQuery), QueryError> {
        let mut items = vec![self.unary(field)?];
        loop {
            self.skip_ws();
            let save = self.pos;
            if self.keyword("AND") || self.keyword("&&") {
                self.skip_ws();
                items.push(self.unary(field)?);
                continue;
            }
            self.pos = save;
            let implicit = self.and
                && !self.at_end()
                && self.peek() != Some(')')
                && !self.keyword("OR")
                && !self.keyword("||");
            self.pos = save;
            if implicit {
                items.push(self.unary(field)?);
                continue;
            }
            break;
        }
        if items.len() == 1 {
            return Ok(items.pop().expect("one item"));
        }
        // Inside an AND chain a prohibited clause is a negation, others are required.
        let mut must = Vec::new();
        let mut must_not = Vec::new();
        for (modifier, query) in items {
            match modifier {
                Modifier::Prohibited => must_not.push(query),
                _ => must.push(query),
            }
        }
        let mut b = super::ast::BoolQuery {
            must,
            must_not,
            ..Default::default()
        };
        if b.must.is_empty() {
            b.must.push(LogQuery::All);
        }
        Ok((Modifier::None, LogQuery::Bool(Box::new(b))))
    }

    fn unary(&mut self, field: Option<&str>) -> Result<(Modifier, LogQuery), QueryError> {
        self.skip_ws();
        if self.keyword("NOT") || self.keyword("!") || self.keyword("-") {
            self.descend()?;
            let (_, inner) = self.unary(field)?;
            self.depth -= 1;
            return Ok((Modifier::Prohibited, inner));
        }
        if self.keyword("+") {
            self.descend()?;
            let (_, inner) = self.unary(field)?;
            self.depth -= 1;
            return Ok((Modifier::Required, inner));
        }
        Ok((Modifier::None, self.primary(field)?))
    }

    fn primary(&mut self, field: Option<&str>) -> Result<LogQuery, QueryError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error("expected a term")),
            Some('(') => {
                self.pos += 1;
                self.descend()?;
                let inner = self.or_expr(field)?;
                self.depth -= 1;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(self.error("missing ')'"));
                }
                self.pos += 1;
                self.skip_boost();
                Ok(inner)
            }
            Some(_) if field.is_none() => {
                // `name:` makes the next value a field query.
                let save = self.pos;
                if let Some(name) = self.field_name() {
                    self.skip_ws();
                    if name == "_exists_" {
                        let target = self.word()?;
                        return Ok(LogQuery::Exists { field: target });
                    }
                    return self.value(Some(&name));
                }
                self.pos = save;
                self.value(None)
            }
            Some(_) => self.value(field),
        }
    }

    /// A field name followed by an unescaped `:`, if that is what comes next.
    fn field_name(&mut self) -> Option<String> {
        let start = self.pos;
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' {
                self.pos += 1;
                name.push(self.peek()?);
                self.pos += 1;
                continue;
            }
            if c == ':' {
                self.pos += 1;
                return (!name.is_empty()).then_some(name);
            }
            if c.is_whitespace() || "()[]{}\"/<>=".contains(c) {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        self.pos = start;
        None
    }

    fn value(&mut self, field: Option<&str>) -> Result<LogQuery, QueryError> {
        self.skip_ws();
        match self.peek() {
            Some('"') => {
                self.pos += 1;
                let mut text = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("unterminated phrase")),
                        Some('\\') => {
                            self.pos += 1;
                            if let Some(c) = self.peek() {
                                text.push(c);
                                self.pos += 1;
                            }
                        }
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            text.push(c);
                            self.pos += 1;
                        }
                    }
                }
                let mut slop = 0;
                if self.peek() == Some('~') {
                    self.pos += 1;
                    slop = self.number().unwrap_or(0.0) as u32;
                }
                self.skip_boost();
                Ok(self.on_fields(field, |f| LogQuery::Phrase {
                    field: f,
                    text: text.clone(),
                    slop,
                }))
            }
            Some('/') => {
                self.pos += 1;
                let mut pattern = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("unterminated regular expression")),
                        Some('\\') if self.chars.get(self.pos + 1) == Some(&'/') => {
                            pattern.push('/');
                            self.pos += 2;
                        }
                        Some('/') => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            pattern.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Ok(self.on_fields(field, |f| LogQuery::Regexp {
                    field: f,
                    pattern: pattern.clone(),
                    case_insensitive: false,
                }))
            }
            Some('[') | Some('{') if field.is_some() => self.range(field.unwrap_or_default()),
            Some('>') | Some('<') if field.is_some() => {
                let greater = self.peek() == Some('>');
                self.pos += 1;
                let inclusive = if self.peek() == Some('=') {
                    self.pos += 1;
                    true
                } else {
                    false
                };
                let bound = Some((Value::String(self.word()?), inclusive));
                let (lower, upper) = if greater {
                    (bound, None)
                } else {
                    (None, bound)
                };
                Ok(LogQuery::Range {
                    field: field.unwrap_or_default().to_owned(),
                    lower,
                    upper,
                    format: None,
                })
            }
            Some('(') if field.is_some() => {
                self.pos += 1;
                self.descend()?;
                let inner = self.or_expr(field)?;
                self.depth -= 1;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(self.error("missing ')'"));
                }
                self.pos += 1;
                Ok(inner)
            }
            _ => {
                let (word, wild) = self.term()?;
                if self.peek() == Some('~') {
                    // Fuzziness: matched exactly.
                    self.pos += 1;
                    let _ = self.number();
                }
                self.skip_boost();
                if word == "*" {
                    return Ok(match field {
                        Some(f) => LogQuery::Exists {
                            field: f.to_owned(),
                        },
                        None => LogQuery::All,
                    });
                }
                if wild {
                    return Ok(self.on_fields(field, |f| LogQuery::Wildcard {
                        field: f,
                        pattern: word.clone(),
                        case_insensitive: false,
                    }));
                }
                Ok(self.on_fields(field, |f| LogQuery::Match {
                    field: f,
                    text: word.clone(),
                    and: true,
                    minimum_should_match: None,
                }))
            }
        }
    }

    fn range(&mut self, field: &str) -> Result<LogQuery, QueryError> {
        let lower_inclusive = self.peek() == Some('[');
        self.pos += 1;
        self.skip_ws();
        let low = self.word()?;
        self.skip_ws();
        if !self.keyword("TO") {
            return Err(self.error("expected TO in range"));
        }
        self.skip_ws();
        let high = self.word()?;
        self.skip_ws();
        let upper_inclusive = match self.peek() {
            Some(']') => true,
            Some('}') => false,
            _ => return Err(self.error("expected ']' or '}' to close the range")),
        };
        self.pos += 1;
        let bound = |v: String, inclusive| (v != "*").then_some((Value::String(v), inclusive));
        Ok(LogQuery::Range {
            field: field.to_owned(),
            lower: bound(low, lower_inclusive),
            upper: bound(high, upper_inclusive),
            format: None,
        })
    }

    /// A bare value up to whitespace or a closing bracket, unescaping.
    fn word(&mut self) -> Result<String, QueryError> {
        let mut out = String::new();
        if self.peek() == Some('"') {
            self.pos += 1;
            while let Some(c) = self.peek() {
                self.pos += 1;
                if c == '"' {
                    return Ok(out);
                }
                out.push(c);
            }
            return Err(self.error("unterminated quote"));
        }
        while let Some(c) = self.peek() {
            if c == '\\' {
                self.pos += 1;
                if let Some(next) = self.peek() {
                    out.push(next);
                    self.pos += 1;
                }
                continue;
            }
            if c.is_whitespace() || "()[]{}".contains(c) {
                break;
            }
            out.push(c);
            self.pos += 1;
        }
        if out.is_empty() {
            return Err(self.error("expected a value"));
        }
        Ok(out)
    }

    /// A term; the flag tells whether it holds unescaped wildcards (kept
    /// as `*`/`?`, escaped ones as `\*`/`\?`).
    fn term(&mut self) -> Result<(String, bool), QueryError> {
        let mut out = String::new();
        let mut wild = false;
        while let Some(c) = self.peek() {
            if c == '\\' {
                self.pos += 1;
                if let Some(next) = self.peek() {
                    if matches!(next, '*' | '?') {
                        out.push('\\');
                    }
                    out.push(next);
                    self.pos += 1;
                }
                continue;
            }
            if c.is_whitespace() || "()[]{}\"^~".contains(c) {
                break;
            }
            if c == ':' {
                return Err(self.error("unexpected ':'"));
            }
            wild |= c == '*' || c == '?';
            out.push(c);
            self.pos += 1;
        }
        if out.is_empty() {
            return Err(self.error("expected a term"));
        }
        if wild {
            Ok((out, true))
        } else {
            Ok((out.replace("\\*", "*").replace("\\?", "?"), false))
        }
    }

    fn number(&mut self) -> Option<f64> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
            self.pos += 1;
        }
        self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn skip_boost(&mut self) {
        if self.peek() == Some('^') {
            self.pos += 1;
            let _ = self.number();
        }
    }

    /// Apply `make` to the field, or to each default field.
    fn on_fields(
        &self,
        field: Option<&str>,
        make: impl Fn(Option<String>) -> LogQuery,
    ) -> LogQuery {
        match field {
            Some(f) => make(Some(f.to_owned())),
            None if self.default_fields.is_empty() => make(None),
            None if self.default_fields.len() == 1 => make(Some(self.default_fields[0].clone())),
            None => LogQuery::or(
                self.default_fields
                    .iter()
                    .map(|f| make(Some(f.clone())))
                    .collect(),
            ),
        }
    }
}

/// Lucene's clause list: `+` clauses are required, `-` clauses excluded,
/// the rest optional (at least one must match when nothing is required).
fn combine(mut items: Vec<(Modifier, LogQuery)>) -> LogQuery {
    if items.len() == 1 && items[0].0 == Modifier::None {
        return items.pop().expect("one item").1;
    }
    let mut b = super::ast::BoolQuery::default();
    for (modifier, query) in items {
        match modifier {
            Modifier::Required => b.must.push(query),
            Modifier::Prohibited => b.must_not.push(query),
            Modifier::None => b.should.push(query),
        }
    }
    if b.must.is_empty() {
        if b.should.is_empty() {
            b.must.push(LogQuery::All);
        } else {
            b.minimum_should_match = Some(super::ast::MinimumShouldMatch::Count(1));
        }
    }
    LogQuery::Bool(Box::new(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> LogQuery {
        parse(text, &[], false).unwrap()
    }

    fn m(field: Option<&str>, text: &str) -> LogQuery {
        LogQuery::Match {
            field: field.map(str::to_owned),
            text: text.into(),
            and: true,
            minimum_should_match: None,
        }
    }

    #[test]
    fn syntax() {
        assert_eq!(p("error"), m(None, "error"));
        assert_eq!(p("level:error"), m(Some("level"), "error"));
        assert_eq!(p("*"), LogQuery::All);
        assert_eq!(p(""), LogQuery::All);
        assert_eq!(
            p("host.name:*"),
            LogQuery::Exists {
                field: "host.name".into()
            }
        );
        assert_eq!(
            p("_exists_:user"),
            LogQuery::Exists {
                field: "user".into()
            }
        );
        assert_eq!(
            p("msg:\"disk full\"~2"),
            LogQuery::Phrase {
                field: Some("msg".into()),
                text: "disk full".into(),
                slop: 2
            }
        );
        assert_eq!(
            p("a AND b"),
            LogQuery::and(vec![m(None, "a"), m(None, "b")])
        );
        let LogQuery::Bool(b) = p("a OR b") else {
            panic!()
        };
        assert_eq!(b.should.len(), 2);
        let LogQuery::Bool(b) = p("+a -b c") else {
            panic!()
        };
        assert_eq!((b.must.len(), b.must_not.len(), b.should.len()), (1, 1, 1));
        let LogQuery::Bool(b) = p("status:[400 TO 499} AND NOT path:/api\\/v[12]/") else {
            panic!()
        };
        assert!(matches!(
            &b.must[0],
            LogQuery::Range {
                lower: Some((_, true)),
                upper: Some((_, false)),
                ..
            }
        ));
        assert!(
            matches!(&b.must_not[0], LogQuery::Regexp { pattern, .. } if pattern == "api/v[12]")
        );
        assert!(matches!(
            p("bytes:>=1000"),
            LogQuery::Range {
                lower: Some((_, true)),
                upper: None,
                ..
            }
        ));
        assert!(matches!(p("user:jo*n"), LogQuery::Wildcard { .. }));
        assert_eq!(p("path:\\/a\\:b"), m(Some("path"), "/a:b"));
        let LogQuery::Bool(b) = p("level:(error OR warn) service:api") else {
            panic!()
        };
        assert_eq!(b.should.len(), 2);
        // Default operator AND.
        let q = parse("a b", &[], true).unwrap();
        assert_eq!(q, LogQuery::and(vec![m(None, "a"), m(None, "b")]));
        // Default fields.
        let q = parse("x", &["f".into(), "g".into()], false).unwrap();
        assert_eq!(q, LogQuery::or(vec![m(Some("f"), "x"), m(Some("g"), "x")]));
    }

    #[test]
    fn errors_name_the_problem() {
        let err = parse("a AND (b", &[], false).unwrap_err();
        assert!(err.reason.contains("missing ')'"), "{}", err.reason);
        assert!(parse("f:[1 TO", &[], false).is_err());
        assert!(parse("\"open", &[], false).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let limit = crate::query::logs::ast::max_query_depth();
        let ok = format!("{}a{}", "(".repeat(limit - 1), ")".repeat(limit - 1));
        assert!(parse(&ok, &[], false).is_ok());
        for hostile in [
            format!("{}a{}", "(".repeat(200_000), ")".repeat(200_000)),
            "(".repeat(200_000),
            "NOT ".repeat(100_000) + "a",
            "-".repeat(100_000) + "a",
            format!("f:{}a{}", "(".repeat(100_000), ")".repeat(100_000)),
        ] {
            let err = parse(&hostile, &[], false).unwrap_err();
            assert!(
                err.reason.contains("logs.max_query_depth"),
                "{}",
                err.reason
            );
            assert!(
                err.reason.len() < 600,
                "error quotes the query without bound"
            );
        }
    }
}
