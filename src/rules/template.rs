//! The subset of Go's `text/template` that Prometheus rule files use in
//! alert labels and annotations, with Prometheus' template functions.
//!
//! Supported: text and `{{ … }}` actions with `{{-`/`-}}` trimming and
//! `{{/* comments */}}`; pipelines (`a | f | g`), parenthesised
//! sub-pipelines, variables (`$labels`, `$value`, `$externalLabels`,
//! `$externalURL`, `$`, and `$x := …` declarations), field chains
//! (`$labels.job`, `.Labels.job`, `.Value`); `if`/`else if`/`else`,
//! `with`/`else` and `range`/`else`, each closed by `end`; string (quoted and
//! raw), number and boolean literals; functions `humanize`, `humanize1024`,
//! `humanizeDuration`, `humanizePercentage`, `humanizeTimestamp`, `printf`,
//! `query`, `first`, `value`, `label`, `strvalue`, `sortByLabel`, `toUpper`,
//! `toLower`, `title`, `match`, `reReplaceAll`, `stripPort`, `stripDomain`,
//! `args`, `safeHtml`, `len`, `index`, `not`, `and`, `or`, `eq`, `ne`, `lt`,
//! `le`, `gt`, `ge`, `print`, `println`.
//!
//! Go's template crates for Rust are unmaintained or lack Prometheus'
//! functions, and Prometheus' subset is small, so it is written here: a
//! parser producing a tree (errors at rule load time, with the position) and
//! an evaluator with bounded depth and output.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Deepest nesting of blocks and parentheses a template may have.
const MAX_DEPTH: usize = 64;
/// Longest text an expansion may produce.
const MAX_OUTPUT: usize = 64 * 1024;
/// Most `range` iterations and `query` calls in one expansion.
const MAX_STEPS: usize = 100_000;

/// A value inside a template.
#[derive(Debug, Clone, PartialEq)]
pub enum TValue {
    Nil,
    Bool(bool),
    Num(f64),
    Str(String),
    /// A label set (`$labels`, `.Labels`).
    Map(BTreeMap<String, String>),
    /// One result of `query`: `.Labels` and `.Value`.
    Sample(BTreeMap<String, String>, f64),
    List(Vec<TValue>),
    /// The alert data: `.` at the top level, and `$`.
    Root,
}

impl TValue {
    fn truthy(&self) -> bool {
        match self {
            TValue::Nil => false,
            TValue::Bool(b) => *b,
            TValue::Num(n) => *n != 0.0,
            TValue::Str(s) => !s.is_empty(),
            TValue::Map(m) => !m.is_empty(),
            TValue::Sample(..) => true,
            TValue::List(l) => !l.is_empty(),
            TValue::Root => true,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            TValue::Nil => "nil",
            TValue::Bool(_) => "bool",
            TValue::Num(_) => "float64",
            TValue::Str(_) => "string",
            TValue::Map(_) => "map[string]string",
            TValue::Sample(..) => "*sample",
            TValue::List(_) => "queryResult",
            TValue::Root => "*template.tmplData",
        }
    }

    /// As Go's `fmt` prints it with `%v`.
    fn display(&self) -> String {
        match self {
            TValue::Nil => "<no value>".into(),
            TValue::Bool(b) => b.to_string(),
            TValue::Num(n) => go_g(*n, None),
            TValue::Str(s) => s.clone(),
            TValue::Map(m) => {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", inner.join(" "))
            }
            TValue::Sample(labels, v) => {
                format!(
                    "{{{} {}}}",
                    TValue::Map(labels.clone()).display(),
                    go_g(*v, None)
                )
            }
            TValue::List(l) => {
                let inner: Vec<String> = l.iter().map(TValue::display).collect();
                format!("[{}]", inner.join(" "))
            }
            TValue::Root => "{…}".into(),
        }
    }
}

/// The result of a template's `query`: `(labels, value)` per series.
pub type QueryRows = Vec<(BTreeMap<String, String>, f64)>;

/// What a template needs from its surroundings: the `query` function.
pub trait QueryFn {
    /// Evaluate a PromQL instant query at the rule's evaluation time.
    fn query(&self, expr: &str) -> Result<QueryRows, String>;
}

/// The data of an alert template: `.Labels`, `.Value`, `.ExternalLabels`,
/// `.ExternalURL`, also bound to `$labels`, `$value`, `$externalLabels` and
/// `$externalURL`.
#[derive(Debug, Clone, Default)]
pub struct AlertData {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
}

#[derive(Debug, thiserror::Error)]
#[error("template: {name}:{line}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Pipeline {
    /// `$x := …` (declare) or `$x = …` (assign).
    assign: Option<String>,
    commands: Vec<Command>,
    line: usize,
}

#[derive(Debug, Clone)]
struct Command {
    args: Vec<Operand>,
}

#[derive(Debug, Clone)]
enum Operand {
    Func(String),
    Literal(TValue),
    /// `.A.B` (empty chain: `.`).
    Dot(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    Sub(Box<Pipeline>),
    Nil,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

const FUNCS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "printf",
    "print",
    "println",
    "query",
    "first",
    "value",
    "label",
    "strvalue",
    "sortByLabel",
    "toUpper",
    "toLower",
    "title",
    "match",
    "reReplaceAll",
    "stripPort",
    "stripDomain",
    "args",
    "safeHtml",
    "len",
    "index",
    "not",
    "and",
    "or",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
];

// ---------------------------------------------------------------- parsing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
}

struct Lexer<'a> {
    name: &'a str,
    line: usize,
}

impl Lexer<'_> {
    fn err(&self, message: impl Into<String>) -> TemplateError {
        TemplateError {
            name: self.name.to_owned(),
            line: self.line,
            message: message.into(),
        }
    }

    fn chain(&self, text: &str) -> Result<Vec<String>, TemplateError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        text.split('.')
            .map(|f| {
                if !f.is_empty() && f.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    Ok(f.to_owned())
                } else {
                    Err(self.err(format!("bad field name in \"{text}\"")))
                }
            })
            .collect()
    }

    fn tokens(&self, action: &str) -> Result<Vec<Tok>, TemplateError> {
        let chars: Vec<char> = action.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        let word_end = |mut j: usize| {
            while j < chars.len()
                && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '.')
            {
                j += 1;
            }
            j
        };
        while i < chars.len() {
            let c = chars[i];
            match c {
                c if c.is_whitespace() => i += 1,
                '|' => {
                    out.push(Tok::Pipe);
                    i += 1;
                }
                '(' => {
                    out.push(Tok::LParen);
                    i += 1;
                }
                ')' => {
                    out.push(Tok::RParen);
                    i += 1;
                }
                ':' if chars.get(i + 1) == Some(&'=') => {
                    out.push(Tok::Declare);
                    i += 2;
                }
                '=' => {
                    out.push(Tok::Assign);
                    i += 1;
                }
                '"' => {
                    let mut s = String::new();
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return Err(self.err("unterminated quoted string")),
                            Some('"') => break,
                            Some('\\') => {
                                i += 1;
                                match chars.get(i) {
                                    Some('n') => s.push('\n'),
                                    Some('t') => s.push('\t'),
                                    Some('r') => s.push('\r'),
                                    Some('\\') => s.push('\\'),
                                    Some('"') => s.push('"'),
                                    Some('\'') => s.push('\''),
                                    Some(other) => {
                                        return Err(
                                            self.err(format!("unknown escape sequence \\{other}"))
                                        )
                                    }
                                    None => return Err(self.err("unterminated quoted string")),
                                }
                            }
                            Some(&c) => s.push(c),
                        }
                        i += 1;
                    }
                    i += 1;
                    out.push(Tok::Str(s));
                }
                '`' => {
                    let start = i + 1;
                    let Some(len) = chars[start..].iter().position(|&c| c == '`') else {
                        return Err(self.err("unterminated raw quoted string"));
                    };
                    out.push(Tok::Str(chars[start..start + len].iter().collect()));
                    i = start + len + 1;
                }
                '.' => {
                    let end = word_end(i + 1);
                    let text: String = chars[i + 1..end].iter().collect();
                    out.push(Tok::Field(self.chain(&text)?));
                    i = end;
                }
                '$' => {
                    let end = word_end(i + 1);
                    let text: String = chars[i + 1..end].iter().collect();
                    let (name, rest) = text.split_once('.').unwrap_or((&text, ""));
                    out.push(Tok::Var(name.to_owned(), self.chain(rest)?));
                    i = end;
                }
                c if c.is_ascii_digit() || c == '-' || c == '+' => {
                    let mut end = i + 1;
                    while end < chars.len()
                        && (chars[end].is_ascii_alphanumeric()
                            || chars[end] == '.'
                            || ((chars[end] == '-' || chars[end] == '+')
                                && matches!(chars[end - 1], 'e' | 'E')))
                    {
                        end += 1;
                    }
                    let text: String = chars[i..end].iter().collect();
                    let value = parse_number(&text)
                        .ok_or_else(|| self.err(format!("bad number syntax: \"{text}\"")))?;
                    out.push(Tok::Num(value));
                    i = end;
                }
                c if c.is_alphabetic() || c == '_' => {
                    let mut end = i;
                    while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                        end += 1;
                    }
                    out.push(Tok::Ident(chars[i..end].iter().collect()));
                    i = end;
                }
                other => {
                    return Err(self.err(format!("unexpected \"{other}\" in command")));
                }
            }
        }
        Ok(out)
    }
}

fn parse_number(text: &str) -> Option<f64> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()? as f64
    } else {
        body.parse::<f64>().ok().filter(|v| v.is_finite())?
    };
    Some(if negative { -value } else { value })
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// (action text or None for text, text, line)
    items: Vec<(bool, String, usize)>,
    pos: usize,
}

enum Block {
    End,
    Else(Option<Pipeline>),
}

impl<'a> Parser<'a> {
    fn split(name: &'a str, text: &str) -> Result<Parser<'a>, TemplateError> {
        let mut items = Vec::new();
        let mut rest = text;
        let mut line = 1;
        let mut trim_next = false;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                let mut t = rest;
                if trim_next {
                    t = t.trim_start();
                }
                items.push((false, t.to_owned(), line));
                break;
            };
            let mut t = &rest[..open];
            if trim_next {
                t = t.trim_start();
            }
            let after = &rest[open + 2..];
            let trim_left =
                after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
            if trim_left {
                t = t.trim_end();
            }
            items.push((false, t.to_owned(), line));
            line += rest[..open].matches('\n').count();
            let body_start = if trim_left { 1 } else { 0 };
            let after = &after[body_start..];
            let close = if after.trim_start().starts_with("/*") {
                after
                    .find("*/")
                    .and_then(|c| after[c..].find("}}").map(|d| c + d))
            } else {
                after.find("}}")
            };
            let Some(close) = close else {
                return Err(TemplateError {
                    name: name.to_owned(),
                    line,
                    message: "unclosed action".into(),
                });
            };
            let mut action = &after[..close];
            trim_next = false;
            if action.ends_with(" -") || action.ends_with("\t-") || action.ends_with("\n-") {
                action = &action[..action.len() - 1];
                trim_next = true;
            }
            let trimmed = action.trim();
            if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
                items.push((true, action.to_owned(), line));
            }
            line += action.matches('\n').count();
            rest = &after[close + 2..];
        }
        Ok(Parser {
            lexer: Lexer { name, line: 1 },
            items,
            pos: 0,
        })
    }

    fn err(&self, message: impl Into<String>) -> TemplateError {
        self.lexer.err(message)
    }

    /// Nodes up to `end`/`else` (returned) or the end of input.
    fn nodes(&mut self, depth: usize) -> Result<(Vec<Node>, Option<Block>), TemplateError> {
        if depth > MAX_DEPTH {
            return Err(self.err("template nesting is too deep"));
        }
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let (is_action, text, line) = self.items[self.pos].clone();
            self.pos += 1;
            self.lexer.line = line;
            if !is_action {
                if !text.is_empty() {
                    nodes.push(Node::Text(text));
                }
                continue;
            }
            let toks = self.lexer.tokens(&text)?;
            match toks.first() {
                Some(Tok::Ident(k)) if k == "end" => {
                    if toks.len() > 1 {
                        return Err(self.err("unexpected tokens after end"));
                    }
                    return Ok((nodes, Some(Block::End)));
                }
                Some(Tok::Ident(k)) if k == "else" => {
                    let cond = match toks.get(1) {
                        None => None,
                        Some(Tok::Ident(k)) if k == "if" => {
                            Some(self.pipeline(&toks[2..], line, depth)?)
                        }
                        Some(_) => return Err(self.err("unexpected tokens after else")),
                    };
                    return Ok((nodes, Some(Block::Else(cond))));
                }
                Some(Tok::Ident(k)) if k == "if" => {
                    let mut branches = vec![(self.pipeline(&toks[1..], line, depth)?, Vec::new())];
                    let mut otherwise = Vec::new();
                    loop {
                        let (body, end) = self.nodes(depth + 1)?;
                        branches.last_mut().expect("a branch").1 = body;
                        match end {
                            Some(Block::End) => break,
                            Some(Block::Else(Some(cond))) => branches.push((cond, Vec::new())),
                            Some(Block::Else(None)) => {
                                let (body, end) = self.nodes(depth + 1)?;
                                if !matches!(end, Some(Block::End)) {
                                    return Err(self.err("expected end; found else or EOF"));
                                }
                                otherwise = body;
                                break;
                            }
                            None => return Err(self.err("unexpected EOF")),
                        }
                    }
                    nodes.push(Node::If(branches, otherwise));
                }
                Some(Tok::Ident(k)) if k == "with" || k == "range" => {
                    let is_range = k == "range";
                    let pipe = self.pipeline(&toks[1..], line, depth)?;
                    let (body, end) = self.nodes(depth + 1)?;
                    let otherwise = match end {
                        Some(Block::End) => Vec::new(),
                        Some(Block::Else(None)) => {
                            let (body, end) = self.nodes(depth + 1)?;
                            if !matches!(end, Some(Block::End)) {
                                return Err(self.err("expected end; found else or EOF"));
                            }
                            body
                        }
                        Some(Block::Else(Some(_))) => {
                            return Err(self.err("else if is only allowed after if"))
                        }
                        None => return Err(self.err("unexpected EOF")),
                    };
                    nodes.push(if is_range {
                        Node::Range(pipe, body, otherwise)
                    } else {
                        Node::With(pipe, body, otherwise)
                    });
                }
                Some(Tok::Ident(k))
                    if matches!(
                        k.as_str(),
                        "define" | "template" | "block" | "break" | "continue"
                    ) =>
                {
                    return Err(self.err(format!("\"{k}\" is not supported in rule templates")));
                }
                _ => nodes.push(Node::Action(self.pipeline(&toks, line, depth)?)),
            }
        }
        Ok((nodes, None))
    }

    fn pipeline(&self, toks: &[Tok], line: usize, depth: usize) -> Result<Pipeline, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(self.err("template nesting is too deep"));
        }
        let (assign, toks) = match toks {
            [Tok::Var(name, chain), Tok::Declare | Tok::Assign, rest @ ..] if chain.is_empty() => {
                (Some(name.clone()), rest)
            }
            _ => (None, toks),
        };
        if toks.is_empty() {
            return Err(self.err("missing value for command"));
        }
        let mut commands = Vec::new();
        let mut args = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                Tok::Pipe => {
                    if args.is_empty() {
                        return Err(self.err("missing command before |"));
                    }
                    commands.push(Command {
                        args: std::mem::take(&mut args),
                    });
                }
                Tok::LParen => {
                    let mut level = 0usize;
                    let mut end = None;
                    for (j, t) in toks.iter().enumerate().skip(i) {
                        match t {
                            Tok::LParen => level += 1,
                            Tok::RParen => {
                                level -= 1;
                                if level == 0 {
                                    end = Some(j);
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    let end = end.ok_or_else(|| self.err("unclosed left paren"))?;
                    args.push(Operand::Sub(Box::new(self.pipeline(
                        &toks[i + 1..end],
                        line,
                        depth + 1,
                    )?)));
                    i = end;
                }
                Tok::RParen => return Err(self.err("unexpected right paren")),
                Tok::Declare | Tok::Assign => return Err(self.err("unexpected \":=\" or \"=\"")),
                Tok::Str(s) => args.push(Operand::Literal(TValue::Str(s.clone()))),
                Tok::Num(n) => args.push(Operand::Literal(TValue::Num(*n))),
                Tok::Field(chain) => args.push(Operand::Dot(chain.clone())),
                Tok::Var(name, chain) => args.push(Operand::Var(name.clone(), chain.clone())),
                Tok::Ident(name) => match name.as_str() {
                    "true" => args.push(Operand::Literal(TValue::Bool(true))),
                    "false" => args.push(Operand::Literal(TValue::Bool(false))),
                    "nil" => args.push(Operand::Nil),
                    f if FUNCS.contains(&f) => args.push(Operand::Func(f.to_owned())),
                    other => {
                        return Err(self.err(format!("function \"{other}\" not defined")));
                    }
                },
            }
            i += 1;
        }
        if args.is_empty() {
            return Err(self.err("missing command after |"));
        }
        commands.push(Command { args });
        Ok(Pipeline {
            assign,
            commands,
            line,
        })
    }
}

impl Template {
    /// Parse `text`; `name` appears in error messages (Prometheus uses
    /// `__alert_<alertname>`).
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let mut parser = Parser::split(name, text)?;
        let (nodes, end) = parser.nodes(0)?;
        match end {
            None => Ok(Template {
                name: name.to_owned(),
                nodes,
            }),
            Some(Block::End) => Err(parser.err("unexpected {{end}}")),
            Some(Block::Else(_)) => Err(parser.err("unexpected {{else}}")),
        }
    }

    /// Expand with alert data; an error is returned as Prometheus reports
    /// it, and the caller substitutes `<error expanding template: …>`.
    pub fn expand(&self, data: &AlertData, query: &dyn QueryFn) -> Result<String, TemplateError> {
        let mut ev = Eval {
            name: &self.name,
            data,
            query,
            vars: vec![
                ("labels".into(), TValue::Map(data.labels.clone())),
                (
                    "externalLabels".into(),
                    TValue::Map(data.external_labels.clone()),
                ),
                ("externalURL".into(), TValue::Str(data.external_url.clone())),
                ("value".into(), TValue::Num(data.value)),
            ],
            out: String::new(),
            steps: 0,
        };
        ev.nodes(&self.nodes, &TValue::Root)?;
        Ok(ev.out)
    }
}

// ---------------------------------------------------------------- evaluation

struct Eval<'a> {
    name: &'a str,
    data: &'a AlertData,
    query: &'a dyn QueryFn,
    vars: Vec<(String, TValue)>,
    out: String,
    steps: usize,
}

impl Eval<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> TemplateError {
        TemplateError {
            name: self.name.to_owned(),
            line,
            message: message.into(),
        }
    }

    fn nodes(&mut self, nodes: &[Node], dot: &TValue) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => self.write(t, 0)?,
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.assign.is_none() {
                        self.write(&v.display(), p.line)?;
                    }
                }
                Node::If(branches, otherwise) => {
                    let mut taken = false;
                    for (cond, body) in branches {
                        if self.scoped(|ev| ev.pipeline(cond, dot))?.truthy() {
                            self.scoped(|ev| ev.nodes(body, dot))?;
                            taken = true;
                            break;
                        }
                    }
                    if !taken {
                        self.scoped(|ev| ev.nodes(otherwise, dot))?;
                    }
                }
                Node::With(p, body, otherwise) => {
                    self.scoped(|ev| {
                        let v = ev.pipeline(p, dot)?;
                        if v.truthy() {
                            ev.nodes(body, &v)
                        } else {
                            ev.nodes(otherwise, dot)
                        }
                    })?;
                }
                Node::Range(p, body, otherwise) => {
                    self.scoped(|ev| {
                        let v = ev.pipeline(p, dot)?;
                        let items: Vec<TValue> = match v {
                            TValue::List(items) => items,
                            TValue::Map(m) => m.into_values().map(TValue::Str).collect(),
                            TValue::Nil => Vec::new(),
                            other => {
                                return Err(ev.err(
                                    p.line,
                                    format!("range can't iterate over {}", other.display()),
                                ))
                            }
                        };
                        if items.is_empty() {
                            return ev.nodes(otherwise, dot);
                        }
                        for item in items {
                            ev.step(p.line)?;
                            ev.nodes(body, &item)?;
                        }
                        Ok(())
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Run `f` with variables declared inside it dropped afterwards.
    fn scoped<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, TemplateError>,
    ) -> Result<R, TemplateError> {
        let mark = self.vars.len();
        let result = f(self);
        self.vars.truncate(mark);
        result
    }

    fn step(&mut self, line: usize) -> Result<(), TemplateError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(self.err(line, "template does too much work"));
        }
        Ok(())
    }

    fn write(&mut self, text: &str, line: usize) -> Result<(), TemplateError> {
        if self.out.len() + text.len() > MAX_OUTPUT {
            return Err(self.err(line, format!("expansion is longer than {MAX_OUTPUT} bytes")));
        }
        self.out.push_str(text);
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &TValue) -> Result<TValue, TemplateError> {
        let mut value: Option<TValue> = None;
        for command in &p.commands {
            value = Some(self.command(command, dot, value, p.line)?);
        }
        let value = value.unwrap_or(TValue::Nil);
        if let Some(name) = &p.assign {
            self.vars.push((name.clone(), value.clone()));
        }
        Ok(value)
    }

    fn field(
        &self,
        mut value: TValue,
        chain: &[String],
        line: usize,
    ) -> Result<TValue, TemplateError> {
        for f in chain {
            value = match (&value, f.as_str()) {
                (TValue::Map(m), key) => TValue::Str(m.get(key).cloned().unwrap_or_default()),
                (TValue::Sample(labels, _), "Labels") => TValue::Map(labels.clone()),
                (TValue::Sample(_, v), "Value") => TValue::Num(*v),
                (TValue::Root, "Labels") => TValue::Map(self.data.labels.clone()),
                (TValue::Root, "Value") => TValue::Num(self.data.value),
                (TValue::Root, "ExternalLabels") => TValue::Map(self.data.external_labels.clone()),
                (TValue::Root, "ExternalURL") => TValue::Str(self.data.external_url.clone()),
                (TValue::Nil, _) => TValue::Nil,
                (other, _) => {
                    return Err(self.err(
                        line,
                        format!("can't evaluate field {f} in type {}", other.type_name()),
                    ))
                }
            };
        }
        Ok(value)
    }

    fn operand(
        &mut self,
        op: &Operand,
        dot: &TValue,
        line: usize,
    ) -> Result<TValue, TemplateError> {
        match op {
            Operand::Literal(v) => Ok(v.clone()),
            Operand::Nil => Ok(TValue::Nil),
            Operand::Sub(p) => self.pipeline(p, dot),
            Operand::Func(f) => self.call(f, Vec::new(), line),
            Operand::Var(name, chain) => {
                let value = if name.is_empty() {
                    TValue::Root
                } else {
                    self.vars
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| self.err(line, format!("undefined variable \"${name}\"")))?
                };
                self.field(value, chain, line)
            }
            Operand::Dot(chain) => self.field(dot.clone(), chain, line),
        }
    }

    fn command(
        &mut self,
        command: &Command,
        dot: &TValue,
        piped: Option<TValue>,
        line: usize,
    ) -> Result<TValue, TemplateError> {
        match &command.args[0] {
            Operand::Func(name) => {
                let mut args = Vec::with_capacity(command.args.len());
                for a in &command.args[1..] {
                    args.push(self.operand(a, dot, line)?);
                }
                if let Some(p) = piped {
                    args.push(p);
                }
                self.call(name, args, line)
            }
            first => {
                if command.args.len() > 1 || piped.is_some() {
                    return Err(self.err(line, "can't give argument to non-function"));
                }
                self.operand(first, dot, line)
            }
        }
    }

    fn call(
        &mut self,
        name: &str,
        args: Vec<TValue>,
        line: usize,
    ) -> Result<TValue, TemplateError> {
        let arity = |n: usize| -> Result<(), TemplateError> {
            if args.len() != n {
                return Err(self.err(
                    line,
                    format!(
                        "wrong number of args for {name}: want {n} got {}",
                        args.len()
                    ),
                ));
            }
            Ok(())
        };
        let num = |v: &TValue| -> Result<f64, TemplateError> {
            match v {
                TValue::Num(n) => Ok(*n),
                TValue::Str(s) => s.trim().parse::<f64>().map_err(|_| {
                    self.err(
                        line,
                        format!("error calling {name}: cannot convert {s:?} to float"),
                    )
                }),
                TValue::Bool(b) => Ok(f64::from(u8::from(*b))),
                other => Err(self.err(
                    line,
                    format!(
                        "error calling {name}: can't convert {} to float",
                        other.type_name()
                    ),
                )),
            }
        };
        let string = |v: &TValue| -> String {
            match v {
                TValue::Str(s) => s.clone(),
                other => other.display(),
            }
        };
        Ok(match name {
            "humanize" => {
                arity(1)?;
                TValue::Str(humanize(num(&args[0])?))
            }
            "humanize1024" => {
                arity(1)?;
                TValue::Str(humanize1024(num(&args[0])?))
            }
            "humanizeDuration" => {
                arity(1)?;
                TValue::Str(humanize_duration(num(&args[0])?))
            }
            "humanizePercentage" => {
                arity(1)?;
                TValue::Str(format!("{}%", go_g(num(&args[0])? * 100.0, Some(4))))
            }
            "humanizeTimestamp" => {
                arity(1)?;
                TValue::Str(humanize_timestamp(num(&args[0])?))
            }
            "printf" => {
                let Some(TValue::Str(format)) = args.first() else {
                    return Err(self.err(line, "printf needs a format string"));
                };
                TValue::Str(printf(format, &args[1..]))
            }
            "print" | "println" => {
                let mut s = String::new();
                for (i, a) in args.iter().enumerate() {
                    let is_str = matches!(a, TValue::Str(_));
                    let prev_str = i > 0 && matches!(args[i - 1], TValue::Str(_));
                    if i > 0 && (name == "println" || (!is_str && !prev_str)) {
                        s.push(' ');
                    }
                    s.push_str(&string(a));
                }
                if name == "println" {
                    s.push('\n');
                }
                TValue::Str(s)
            }
            "query" => {
                arity(1)?;
                self.step(line)?;
                let expr = string(&args[0]);
                let rows = self
                    .query
                    .query(&expr)
                    .map_err(|e| self.err(line, format!("error calling query: {e}")))?;
                TValue::List(
                    rows.into_iter()
                        .map(|(l, v)| TValue::Sample(l, v))
                        .collect(),
                )
            }
            "first" => {
                arity(1)?;
                match &args[0] {
                    TValue::List(l) => l.first().cloned().ok_or_else(|| {
                        self.err(
                            line,
                            "error calling first: first() called on vector with no elements",
                        )
                    })?,
                    other => {
                        return Err(self.err(
                            line,
                            format!("error calling first: wrong type {}", other.type_name()),
                        ))
                    }
                }
            }
            "value" => {
                arity(1)?;
                match &args[0] {
                    TValue::Sample(_, v) => TValue::Num(*v),
                    other => {
                        return Err(self.err(
                            line,
                            format!("error calling value: wrong type {}", other.type_name()),
                        ))
                    }
                }
            }
            "label" => {
                arity(2)?;
                let key = string(&args[0]);
                match &args[1] {
                    TValue::Sample(l, _) => TValue::Str(l.get(&key).cloned().unwrap_or_default()),
                    TValue::Map(l) => TValue::Str(l.get(&key).cloned().unwrap_or_default()),
                    other => {
                        return Err(self.err(
                            line,
                            format!("error calling label: wrong type {}", other.type_name()),
                        ))
                    }
                }
            }
            "strvalue" => {
                arity(1)?;
                match &args[0] {
                    TValue::Sample(l, _) => {
                        TValue::Str(l.get("__value__").cloned().unwrap_or_default())
                    }
                    _ => TValue::Str(String::new()),
                }
            }
            "sortByLabel" => {
                arity(2)?;
                let key = string(&args[0]);
                match &args[1] {
                    TValue::List(l) => {
                        let mut l = l.clone();
                        l.sort_by(|a, b| {
                            let get = |v: &TValue| match v {
                                TValue::Sample(l, _) => l.get(&key).cloned().unwrap_or_default(),
                                _ => String::new(),
                            };
                            get(a).cmp(&get(b))
                        });
                        TValue::List(l)
                    }
                    other => other.clone(),
                }
            }
            "toUpper" => {
                arity(1)?;
                TValue::Str(string(&args[0]).to_uppercase())
            }
            "toLower" => {
                arity(1)?;
                TValue::Str(string(&args[0]).to_lowercase())
            }
            "title" => {
                arity(1)?;
                let s = string(&args[0]);
                let mut out = String::with_capacity(s.len());
                let mut start = true;
                for c in s.chars() {
                    if start && c.is_alphabetic() {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(c);
                    }
                    start = !(c.is_alphanumeric() || c == '_' || c == '\'');
                }
                TValue::Str(out)
            }
            "match" => {
                arity(2)?;
                let re = self.regex(&string(&args[0]), line)?;
                TValue::Bool(re.is_match(&string(&args[1])))
            }
            "reReplaceAll" => {
                arity(3)?;
                let re = self.regex(&string(&args[0]), line)?;
                let replacement = string(&args[1]);
                TValue::Str(
                    re.replace_all(&string(&args[2]), replacement.as_str())
                        .into_owned(),
                )
            }
            "stripPort" => {
                arity(1)?;
                let s = string(&args[0]);
                TValue::Str(strip_port(&s))
            }
            "stripDomain" => {
                arity(1)?;
                let s = string(&args[0]);
                let (host, port) = match s.rsplit_once(':') {
                    Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => {
                        (h.to_owned(), format!(":{p}"))
                    }
                    _ => (s.clone(), String::new()),
                };
                if host.parse::<std::net::IpAddr>().is_ok() {
                    TValue::Str(s)
                } else {
                    TValue::Str(format!("{}{port}", host.split('.').next().unwrap_or("")))
                }
            }
            "args" => {
                let mut m = BTreeMap::new();
                for (i, a) in args.iter().enumerate() {
                    m.insert(format!("arg{i}"), string(a));
                }
                TValue::Map(m)
            }
            "safeHtml" => {
                arity(1)?;
                TValue::Str(string(&args[0]))
            }
            "len" => {
                arity(1)?;
                TValue::Num(match &args[0] {
                    TValue::Str(s) => s.len() as f64,
                    TValue::Map(m) => m.len() as f64,
                    TValue::List(l) => l.len() as f64,
                    other => {
                        return Err(self.err(
                            line,
                            format!("error calling len: len of type {}", other.type_name()),
                        ))
                    }
                })
            }
            "index" => {
                arity(2)?;
                match (&args[0], &args[1]) {
                    (TValue::Map(m), key) => {
                        TValue::Str(m.get(&string(key)).cloned().unwrap_or_default())
                    }
                    (TValue::List(l), TValue::Num(i)) if *i >= 0.0 && (*i as usize) < l.len() => {
                        l[*i as usize].clone()
                    }
                    _ => return Err(self.err(line, "error calling index: index out of range")),
                }
            }
            "not" => {
                arity(1)?;
                TValue::Bool(!args[0].truthy())
            }
            "and" => {
                if args.is_empty() {
                    return Err(self.err(line, "wrong number of args for and"));
                }
                args.iter()
                    .find(|a| !a.truthy())
                    .unwrap_or_else(|| args.last().expect("non-empty"))
                    .clone()
            }
            "or" => {
                if args.is_empty() {
                    return Err(self.err(line, "wrong number of args for or"));
                }
                args.iter()
                    .find(|a| a.truthy())
                    .unwrap_or_else(|| args.last().expect("non-empty"))
                    .clone()
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                arity(2)?;
                let ordering = match (&args[0], &args[1]) {
                    (TValue::Str(a), TValue::Str(b)) => a.partial_cmp(b),
                    (TValue::Bool(a), TValue::Bool(b)) if matches!(name, "eq" | "ne") => {
                        a.partial_cmp(b)
                    }
                    (a, b) => num(a)?.partial_cmp(&num(b)?),
                };
                use std::cmp::Ordering::*;
                TValue::Bool(match (name, ordering) {
                    ("eq", o) => o == Some(Equal),
                    ("ne", o) => o != Some(Equal),
                    ("lt", o) => o == Some(Less),
                    ("le", o) => matches!(o, Some(Less | Equal)),
                    ("gt", o) => o == Some(Greater),
                    (_, o) => matches!(o, Some(Greater | Equal)),
                })
            }
            other => return Err(self.err(line, format!("function \"{other}\" not defined"))),
        })
    }

    fn regex(&self, pattern: &str, line: usize) -> Result<regex::Regex, TemplateError> {
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| self.err(line, format!("bad regular expression: {e}")))
    }
}

fn strip_port(s: &str) -> String {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return rest[..end].to_owned();
        }
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host.to_owned()
        }
        _ => s.to_owned(),
    }
}

// ---------------------------------------------------------------- numbers

/// Decimal digits of `v` (no trailing zeros) and the decimal point's
/// position: `v = 0.d1d2… × 10^dp`. `prec` significant digits, or the
/// shortest that round-trips.
fn digits(v: f64, prec: Option<usize>) -> (String, i32) {
    let text = match prec {
        Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mantissa, exp) = text.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    let mut ds: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while ds.len() > 1 && ds.ends_with('0') {
        ds.pop();
    }
    if ds == "0" {
        return (ds, 1);
    }
    (ds, exp + 1)
}

/// NaN and infinities as Go's `strconv` prints them.
fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// Go's `strconv.FormatFloat(v, 'e', prec, 64)` (`None`: shortest digits):
/// at least two exponent digits, `e+00`.
pub fn go_e(v: f64, prec: Option<usize>) -> String {
    if let Some(text) = non_finite(v) {
        return text;
    }
    let text = match prec {
        Some(p) => format!("{v:.p$e}"),
        None => format!("{v:e}"),
    };
    let (mantissa, exp) = text.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    format!(
        "{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)` (`None`: shortest, as
/// `%v` prints a float64).
pub fn go_g(v: f64, prec: Option<usize>) -> String {
    if let Some(text) = non_finite(v) {
        return text;
    }
    let (ds, dp) = digits(v, prec);
    let nd = ds.len() as i32;
    let neg = v.is_sign_negative() && v != 0.0;
    let (mut p, eprec) = match prec {
        None => (nd, 6),
        Some(p) => {
            let p = p.max(1) as i32;
            let mut eprec = p;
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            (p, eprec)
        }
    };
    let exp = dp - 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let digit = |i: i32| -> char {
        if i >= 0 && i < nd {
            ds.as_bytes()[i as usize] as char
        } else {
            '0'
        }
    };
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        out.push(digit(0));
        if p > 1 {
            out.push('.');
            for i in 1..p {
                out.push(digit(i));
            }
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
        return out;
    }
    if p > dp {
        p = nd;
    }
    let decimals = (p - dp).max(0);
    if dp > 0 {
        for i in 0..dp {
            out.push(digit(i));
        }
    } else {
        out.push('0');
    }
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals {
            out.push(digit(dp + i));
        }
    }
    out
}

pub fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, Some(4)))
}

pub fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, Some(4)))
}

pub fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let d = v as i64;
        let (seconds, minutes, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", go_g(v, Some(4)));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, Some(4)))
}

/// As Go prints a UTC `time.Time`: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn humanize_timestamp(v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, Some(4));
    }
    let secs = v.floor();
    let nanos = ((v - secs) * 1e9).round() as u32;
    match chrono::DateTime::from_timestamp(secs as i64, nanos.min(999_999_999)) {
        Some(t) => {
            let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
            let frac = t.format("%9f").to_string();
            let frac = frac.trim_end_matches('0');
            if !frac.is_empty() {
                s.push('.');
                s.push_str(frac);
            }
            s.push_str(" +0000 UTC");
            s
        }
        None => go_g(v, Some(4)),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %g %e %x %q
/// %%` with flags `-+ 0`, width and precision.
pub fn printf(format: &str, args: &[TValue]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0).min(64));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let as_num = |a: &TValue| match a {
            TValue::Num(n) => Some(*n),
            _ => None,
        };
        let body = match verb {
            's' | 'v' => match (verb, arg) {
                ('s', TValue::Num(n)) => format!("%!s(float64={})", go_g(*n, None)),
                (_, a) => {
                    let s = a.display();
                    match precision {
                        Some(p) if verb == 's' => s.chars().take(p).collect(),
                        _ => s,
                    }
                }
            },
            'q' => format!("{:?}", arg.display()),
            'd' => match as_num(arg) {
                Some(n) if n.fract() == 0.0 => format!("{}", n as i64),
                Some(n) => format!("%!d(float64={})", go_g(n, None)),
                None => format!("%!d({}={})", arg.type_name(), arg.display()),
            },
            'f' | 'F' | 'e' | 'g' => match as_num(arg) {
                Some(n) if !n.is_finite() => go_g(n, None),
                Some(n) => match verb {
                    'f' | 'F' => format!("{:.*}", precision.unwrap_or(6), n),
                    'e' => go_e(n, Some(precision.unwrap_or(6))),
                    _ => go_g(n, precision),
                },
                None => format!("%!{verb}({}={})", arg.type_name(), arg.display()),
            },
            'x' | 'X' => {
                let s = match arg {
                    TValue::Num(n) if n.fract() == 0.0 => format!("{:x}", *n as i64),
                    other => other
                        .display()
                        .bytes()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                };
                if verb == 'X' {
                    s.to_uppercase()
                } else {
                    s
                }
            }
            other => format!("%!{other}({}={})", arg.type_name(), arg.display()),
        };
        let mut body = body;
        if (plus || space) && matches!(verb, 'd' | 'f' | 'F' | 'e' | 'g') && !body.starts_with('-')
        {
            body.insert(0, if plus { '+' } else { ' ' });
        }
        let width: usize = width.parse().unwrap_or(0).min(1024);
        let len = body.chars().count();
        if len < width {
            let pad = width - len;
            if minus {
                body.push_str(&" ".repeat(pad));
            } else if zero && matches!(verb, 'd' | 'f' | 'F' | 'e' | 'g') {
                let sign = body.starts_with(['-', '+', ' ']);
                let at = usize::from(sign);
                body.insert_str(at, &"0".repeat(pad));
            } else {
                body.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&body);
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.display()))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl QueryFn for Fixed {
        fn query(&self, expr: &str) -> Result<QueryRows, String> {
            if expr == "fail" {
                return Err("bad".into());
            }
            Ok(vec![
                (
                    BTreeMap::from([("instance".to_owned(), "b:9".to_owned())]),
                    0.25,
                ),
                (
                    BTreeMap::from([("instance".to_owned(), "a:9".to_owned())]),
                    2.0,
                ),
            ])
        }
    }

    fn expand(text: &str) -> String {
        let data = AlertData {
            labels: BTreeMap::from([
                ("instance".to_owned(), "web-1:9100".to_owned()),
                ("job".to_owned(), "node".to_owned()),
            ]),
            value: 0.123456,
            external_labels: BTreeMap::from([("cluster".to_owned(), "eu1".to_owned())]),
            external_url: "http://oxeye:9090".into(),
        };
        Template::parse("__alert_Test", text)
            .unwrap()
            .expand(&data, &Fixed)
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn go_float_formatting() {
        for (v, prec, want) in [
            (1.5, None, "1.5"),
            (1e6, None, "1e+06"),
            (100000.0, None, "100000"),
            (0.0001, None, "0.0001"),
            (0.00001, None, "1e-05"),
            (1234.5678, Some(4), "1235"),
            (12345.0, Some(4), "1.234e+04"),
            (0.5, Some(4), "0.5"),
            (1.0, Some(4), "1"),
            (0.0, Some(4), "0"),
            (-2.5, Some(4), "-2.5"),
            (123.456, Some(4), "123.5"),
        ] {
            assert_eq!(go_g(v, prec), want, "{v} {prec:?}");
        }
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.00123), "1.23m");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(999.0), "999");
        assert_eq!(humanize1024(2048.0), "2ki");
        assert_eq!(humanize_duration(3725.0), "1h 2m 5s");
        assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.0015), "1.5ms");
        assert_eq!(
            humanize_timestamp(1_700_000_000.5),
            "2023-11-14 22:13:20.5 +0000 UTC"
        );
    }

    #[test]
    fn prometheus_alert_templates() {
        assert_eq!(expand("{{ $labels.instance }} down"), "web-1:9100 down");
        assert_eq!(
            expand("{{ .Labels.job }}/{{ $externalLabels.cluster }}"),
            "node/eu1"
        );
        assert_eq!(expand("{{ $value }}"), "0.123456");
        assert_eq!(expand("{{ $value | humanizePercentage }}"), "12.35%");
        assert_eq!(expand("{{ humanize $value }}"), "123.5m");
        assert_eq!(expand("{{ printf \"%.2f\" $value }}"), "0.12");
        assert_eq!(
            expand("{{ printf \"%.2e|%e\" 12345.0 0.5 }}"),
            "1.23e+04|5.000000e-01"
        );
        assert_eq!(
            expand("{{ printf \"%s=%5.1f|%-4d|\" \"x\" 2.25 7 }}"),
            "x=  2.2|7   |"
        );
        assert_eq!(
            expand(
                "{{ if gt $value 0.1 }}high{{ else if gt $value 0.01 }}mid{{ else }}low{{ end }}"
            ),
            "high"
        );
        assert_eq!(
            expand("{{ with query \"up\" }}{{ . | first | value | humanize }}{{ end }}"),
            "250m"
        );
        assert_eq!(
            expand("{{ range query \"up\" | sortByLabel \"instance\" }}{{ .Labels.instance }}={{ .Value }};{{ end }}"),
            "a:9=2;b:9=0.25;"
        );
        assert_eq!(expand("{{ $x := toUpper $labels.job }}{{ $x }}"), "NODE");
        assert_eq!(expand("a {{- \" b \" -}} c"), "a b c");
        assert_eq!(expand("{{/* note */}}ok"), "ok");
        assert_eq!(expand("{{ $labels.instance | stripPort }}"), "web-1");
        assert_eq!(expand("{{ $labels.missing }}|"), "|");
        assert_eq!(
            expand("{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}"),
            "web-1"
        );
        assert!(expand("{{ query \"fail\" }}")
            .starts_with("ERR template: __alert_Test:1: error calling query"));
        assert!(
            expand("{{ first (query \"x\" | sortByLabel \"a\") | value }}").starts_with("0.25")
        );
    }

    #[test]
    fn parse_errors_name_the_problem() {
        for (text, want) in [
            ("{{ $labels.job ", "unclosed action"),
            ("{{ nosuch $value }}", "function \"nosuch\" not defined"),
            ("{{ if $value }}x", "unexpected EOF"),
            ("{{ end }}", "unexpected {{end}}"),
            ("{{ \"abc }}", "unterminated quoted string"),
            ("{{ (humanize 1 }}", "unclosed left paren"),
        ] {
            let err = Template::parse("__alert_X", text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.starts_with("template: __alert_X:1:"), "{err}");
        }
        let deep = format!("{}{}", "{{ if 1 }}".repeat(100), "{{ end }}".repeat(100));
        assert!(Template::parse("d", &deep)
            .unwrap_err()
            .to_string()
            .contains("too deep"));
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(100), ")".repeat(100));
        assert!(Template::parse("d", &deep)
            .unwrap_err()
            .to_string()
            .contains("too deep"));
    }
}
