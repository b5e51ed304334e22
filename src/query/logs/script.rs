//! The arithmetic subset of Painless that Grafana's pipeline aggregations
//! send: `params.var1 / params.var2 * 100` in `bucket_script`, and
//! `MovingFunctions.unweightedAvg(values)` in `moving_fn`.
//!
//! Numbers, `params.<name>`, `values`, `+ - * / %`, parentheses, unary
//! minus and calls of `MovingFunctions.*`. No loops, no assignment: a script
//! is one expression. Its length and nesting are bounded, so parsing and
//! evaluation are too. Arithmetic is IEEE double arithmetic, as Painless does
//! it on `Double` parameters (a division by zero is infinite, and
//! Elasticsearch then prints the value as `null`).

use std::collections::BTreeMap;

/// Longest script accepted, in bytes.
pub const MAX_SCRIPT_LEN: usize = 1024;
/// Deepest nesting of parentheses, unary minus and calls.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Param(String),
    Values,
    Neg(Box<Expr>),
    Binary(char, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
}

/// `MovingFunctions.*` as Elasticsearch defines them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Function {
    Max,
    Min,
    Sum,
    UnweightedAvg,
    LinearWeightedAvg,
    StdDev,
    Ewma,
    Holt,
}

impl Function {
    fn parse(name: &str) -> Option<(Function, usize)> {
        Some(match name {
            "max" => (Function::Max, 1),
            "min" => (Function::Min, 1),
            "sum" => (Function::Sum, 1),
            "unweightedAvg" => (Function::UnweightedAvg, 1),
            "linearWeightedAvg" => (Function::LinearWeightedAvg, 1),
            "stdDev" => (Function::StdDev, 2),
            "ewma" => (Function::Ewma, 2),
            "holt" => (Function::Holt, 3),
            _ => return None,
        })
    }
}

/// Parse a script. Errors name the problem and where it is.
pub fn parse(source: &str) -> Result<Expr, String> {
    if source.len() > MAX_SCRIPT_LEN {
        return Err(format!(
            "script is {} bytes long, at most {MAX_SCRIPT_LEN} are allowed",
            source.len()
        ));
    }
    let mut parser = Parser {
        text: source.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let expr = parser.expr()?;
    parser.skip_space();
    // Painless allows a trailing `;` on a one-statement script.
    if parser.peek() == Some(b';') {
        parser.pos += 1;
        parser.skip_space();
    }
    if parser.pos != parser.text.len() {
        return Err(parser.error("unexpected input"));
    }
    Ok(expr)
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at offset {} of the script", self.pos)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!("script is nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        loop {
            self.skip_space();
            match self.peek() {
                Some(op @ (b'+' | b'-')) => {
                    self.pos += 1;
                    let right = self.term()?;
                    left = Expr::Binary(op as char, Box::new(left), Box::new(right));
                }
                _ => return Ok(left),
            }
        }
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        loop {
            self.skip_space();
            match self.peek() {
                Some(op @ (b'*' | b'/' | b'%')) => {
                    self.pos += 1;
                    let right = self.unary()?;
                    left = Expr::Binary(op as char, Box::new(left), Box::new(right));
                }
                _ => return Ok(left),
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.skip_space();
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                self.enter()?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Neg(Box::new(inner)))
            }
            Some(b'+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.primary(),
        }
    }

    fn identifier(&mut self) -> &str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("")
    }

    fn primary(&mut self) -> Result<Expr, String> {
        self.skip_space();
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                self.enter()?;
                let inner = self.expr()?;
                self.depth -= 1;
                self.skip_space();
                if self.peek() != Some(b')') {
                    return Err(self.error("expected `)`"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(b) if b.is_ascii_digit() || b == b'.' => self.number(),
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                let name = self.identifier().to_owned();
                match name.as_str() {
                    "params" => {
                        if self.peek() == Some(b'.') {
                            self.pos += 1;
                            let field = self.identifier().to_owned();
                            if field.is_empty() {
                                return Err(self.error("expected a parameter name after `params.`"));
                            }
                            Ok(Expr::Param(field))
                        } else if self.text[self.pos..].starts_with(b"['")
                            || self.text[self.pos..].starts_with(b"[\"")
                        {
                            let quote = self.text[self.pos + 1];
                            self.pos += 2;
                            let start = self.pos;
                            while self.peek().is_some_and(|b| b != quote) {
                                self.pos += 1;
                            }
                            let field = String::from_utf8_lossy(&self.text[start..self.pos]);
                            let field = field.into_owned();
                            if !self.text[self.pos..].starts_with(&[quote, b']']) {
                                return Err(self.error("unterminated `params[...]`"));
                            }
                            self.pos += 2;
                            Ok(Expr::Param(field))
                        } else {
                            Err(self.error("expected `params.<name>`"))
                        }
                    }
                    "values" => Ok(Expr::Values),
                    "MovingFunctions" => {
                        if self.peek() != Some(b'.') {
                            return Err(self.error("expected `MovingFunctions.<function>`"));
                        }
                        self.pos += 1;
                        let function = self.identifier().to_owned();
                        let (function, arity) = Function::parse(&function).ok_or_else(|| {
                            self.error(&format!(
                                "unknown function [MovingFunctions.{function}] (supported: max, min, sum, unweightedAvg, linearWeightedAvg, stdDev, ewma, holt)"
                            ))
                        })?;
                        self.skip_space();
                        if self.peek() != Some(b'(') {
                            return Err(self.error("expected `(`"));
                        }
                        self.pos += 1;
                        self.enter()?;
                        let mut args = Vec::new();
                        self.skip_space();
                        if self.peek() != Some(b')') {
                            loop {
                                args.push(self.expr()?);
                                self.skip_space();
                                match self.peek() {
                                    Some(b',') => self.pos += 1,
                                    Some(b')') => break,
                                    _ => return Err(self.error("expected `,` or `)`")),
                                }
                            }
                        }
                        self.pos += 1;
                        self.depth -= 1;
                        if args.len() != arity || args.first() != Some(&Expr::Values) {
                            return Err(self.error(&format!(
                                "MovingFunctions call takes `values` and {} more argument(s)",
                                arity - 1
                            )));
                        }
                        Ok(Expr::Call(function, args))
                    }
                    other => Err(self.error(&format!(
                        "unsupported identifier [{other}] (only params.<name>, values and MovingFunctions.* are allowed)"
                    ))),
                }
            }
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn number(&mut self) -> Result<Expr, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E')
        {
            // An exponent's sign.
            if matches!(self.peek(), Some(b'e' | b'E'))
                && matches!(self.text.get(self.pos + 1), Some(b'+' | b'-'))
            {
                self.pos += 1;
            }
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("");
        // Java literal suffixes: 100d, 100.0f, 100L.
        if matches!(self.peek(), Some(b'd' | b'D' | b'f' | b'F' | b'l' | b'L')) {
            self.pos += 1;
        }
        text.parse::<f64>()
            .map(Expr::Num)
            .map_err(|_| self.error(&format!("invalid number [{text}]")))
    }
}

impl Expr {
    /// Every `params.<name>` the expression reads.
    pub fn params(&self, out: &mut Vec<String>) {
        match self {
            Expr::Param(name) => out.push(name.clone()),
            Expr::Neg(inner) => inner.params(out),
            Expr::Binary(_, a, b) => {
                a.params(out);
                b.params(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.params(out)),
            Expr::Num(_) | Expr::Values => {}
        }
    }

    /// Evaluate with `params` and the moving window `values`. A missing
    /// parameter is NaN (the caller checks names before evaluating).
    pub fn eval(&self, params: &BTreeMap<String, f64>, values: &[f64]) -> f64 {
        match self {
            Expr::Num(x) => *x,
            Expr::Param(name) => params.get(name).copied().unwrap_or(f64::NAN),
            Expr::Values => f64::NAN,
            Expr::Neg(inner) => -inner.eval(params, values),
            Expr::Binary(op, a, b) => {
                let (a, b) = (a.eval(params, values), b.eval(params, values));
                match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    '/' => a / b,
                    _ => a % b,
                }
            }
            Expr::Call(function, args) => {
                let extra: Vec<f64> = args[1..].iter().map(|a| a.eval(params, values)).collect();
                moving_function(*function, values, &extra)
            }
        }
    }
}

/// Elasticsearch's `MovingFunctions`: NaN entries are ignored. `extra`
/// holds the arguments after `values`.
pub fn moving_function(function: Function, values: &[f64], extra: &[f64]) -> f64 {
    let finite = || values.iter().copied().filter(|v| !v.is_nan());
    let arg = |i: usize| extra.get(i).copied().unwrap_or(f64::NAN);
    match function {
        Function::Max => finite().reduce(f64::max).unwrap_or(f64::NAN),
        Function::Min => finite().reduce(f64::min).unwrap_or(f64::NAN),
        Function::Sum => finite().sum(),
        Function::UnweightedAvg => unweighted_avg(values),
        Function::LinearWeightedAvg => {
            // As Elasticsearch computes it, the total weight starts at 1.
            let (mut avg, mut total, mut current) = (0.0, 1.0, 1.0);
            for v in finite() {
                avg += v * current;
                total += current;
                current += 1.0;
            }
            if total == 1.0 {
                f64::NAN
            } else {
                avg / total
            }
        }
        Function::StdDev => {
            let avg = arg(0);
            if avg.is_nan() {
                return f64::NAN;
            }
            let (mut squares, mut count) = (0.0, 0.0);
            for v in finite() {
                squares += (v - avg).powi(2);
                count += 1.0;
            }
            (squares / count).sqrt()
        }
        Function::Ewma => {
            let alpha = arg(0);
            let mut avg = f64::NAN;
            for v in finite() {
                avg = if avg.is_nan() {
                    v
                } else {
                    v * alpha + (1.0 - alpha) * avg
                };
            }
            avg
        }
        Function::Holt => {
            // Double exponential smoothing: level `s`, trend `b`.
            let (alpha, beta) = (arg(0), arg(1));
            let (mut s, mut b) = (f64::NAN, 0.0);
            for v in finite() {
                if s.is_nan() {
                    s = v;
                } else {
                    let last_s = s;
                    s = alpha * v + (1.0 - alpha) * (last_s + b);
                    b = beta * (s - last_s) + (1.0 - beta) * b;
                }
            }
            s
        }
    }
}

pub fn unweighted_avg(values: &[f64]) -> f64 {
    let (mut sum, mut count) = (0.0, 0.0);
    for v in values.iter().filter(|v| !v.is_nan()) {
        sum += v;
        count += 1.0;
    }
    if count == 0.0 {
        f64::NAN
    } else {
        sum / count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, params: &[(&str, f64)]) -> f64 {
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>();
        parse(text).unwrap().eval(&params, &[])
    }

    #[test]
    fn arithmetic_follows_precedence_and_ieee() {
        assert_eq!(
            eval(
                "params.var1 / params.var2 * 100",
                &[("var1", 1.0), ("var2", 4.0)]
            ),
            25.0
        );
        assert_eq!(eval("1 + 2 * 3", &[]), 7.0);
        assert_eq!(eval("(1 + 2) * 3", &[]), 9.0);
        assert_eq!(eval("-(2 - 5) % 2", &[]), 1.0);
        assert_eq!(eval("--3", &[]), 3.0);
        assert_eq!(eval("7 % 4 - 10 / 4", &[]), 0.5);
        assert_eq!(eval("params['a b'] * 2.5e1;", &[("a b", 2.0)]), 50.0);
        assert_eq!(eval("100d - 1L", &[]), 99.0);
        assert!(eval("params.a / 0", &[("a", 1.0)]).is_infinite());
        assert!(eval("0 / 0", &[]).is_nan());
    }

    #[test]
    fn refusals_name_the_problem() {
        for (text, needle) in [
            ("params.a +", "unexpected end"),
            ("params.a ) 1", "unexpected input"),
            ("doc['x'].value", "unsupported identifier [doc]"),
            ("for (;;) {}", "unsupported identifier [for]"),
            ("MovingFunctions.holtWinters(values)", "unknown function"),
            ("MovingFunctions.holt(values, 0.5)", "takes `values`"),
            ("MovingFunctions.max(values, 2)", "takes `values`"),
            ("1 $ 2", "unexpected input"),
            ("1..2", "invalid number"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().contains("nested deeper"));
        let negations = format!("{}1", "-".repeat(100));
        assert!(parse(&negations).unwrap_err().contains("nested deeper"));
        let long = "1+".repeat(600) + "1";
        assert!(parse(&long).unwrap_err().contains("at most 1024"));
    }

    #[test]
    fn moving_functions_match_elasticsearch() {
        let w = [1.0, f64::NAN, 3.0, 5.0];
        let call = |text: &str| parse(text).unwrap().eval(&BTreeMap::new(), &w);
        assert_eq!(call("MovingFunctions.max(values)"), 5.0);
        assert_eq!(call("MovingFunctions.min(values)"), 1.0);
        assert_eq!(call("MovingFunctions.sum(values)"), 9.0);
        assert_eq!(call("MovingFunctions.unweightedAvg(values)"), 3.0);
        // (1*1 + 3*2 + 5*3) / (1 + 1 + 2 + 3)
        assert_eq!(
            call("MovingFunctions.linearWeightedAvg(values)"),
            22.0 / 7.0
        );
        let sd = call("MovingFunctions.stdDev(values, MovingFunctions.unweightedAvg(values))");
        assert!((sd - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(call("MovingFunctions.ewma(values, 0.5)"), 3.5);
        let empty = parse("MovingFunctions.unweightedAvg(values)")
            .unwrap()
            .eval(&BTreeMap::new(), &[]);
        assert!(empty.is_nan());
        assert_eq!(moving_function(Function::Sum, &[], &[]), 0.0);
        assert!(moving_function(Function::Max, &[], &[]).is_nan());
        // holt over 1, 3, 5 with alpha 0.5, beta 0.5: s = 1; s = 2, b = 0.5;
        // s = 0.5*5 + 0.5*(2 + 0.5) = 3.75.
        assert_eq!(call("MovingFunctions.holt(values, 0.5, 0.5)"), 3.75);
    }
}
