//! Request parameters as Prometheus reads them: query string and form body
//! merged, repeated keys kept (`match[]`), times as RFC 3339 or Unix seconds.

use axum::http::{header, HeaderMap, Method};
use bytes::Bytes;

use crate::error::Error;
use crate::storage::metrics::matcher::Matcher;

/// Earliest and latest times Prometheus accepts as "unbounded".
pub const MIN_TIME_MS: i64 = i64::MIN / 2;
pub const MAX_TIME_MS: i64 = i64::MAX / 2;

#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Merge the query string and, for form POSTs, the body.
    pub fn from_request(
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Params {
        let mut pairs: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if method == Method::POST && is_form {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        Params(pairs)
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A time parameter in milliseconds, or `default` when absent.
    pub fn time_ms(&self, name: &str, default: i64) -> Result<i64, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => parse_time_ms(text).ok_or_else(|| {
                Error::BadRequest(format!(
                    "invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp"
                ))
            }),
        }
    }

    /// The `match[]` selectors, each parsed into matchers.
    pub fn matcher_sets(&self) -> Result<Vec<Vec<Matcher>>, Error> {
        self.all("match[]").map(parse_selector).collect()
    }

    /// The `query` parameter, parsed as PromQL (Prometheus' `bad_data` on error).
    pub fn expr(&self) -> Result<promql_parser::parser::Expr, Error> {
        crate::query::promql::parse(self.get("query").unwrap_or(""))
            .map_err(|e| Error::BadRequest(format!("invalid parameter \"query\": {e}")))
    }

    /// `match[]`, `start` and `end` of the series/label endpoints; with
    /// `require_match`, at least one `match[]` must be given.
    pub fn selection(&self, require_match: bool) -> Result<(Vec<Vec<Matcher>>, i64, i64), Error> {
        let sets = self.matcher_sets()?;
        if require_match && sets.is_empty() {
            return Err(Error::BadRequest("no match[] parameter provided".into()));
        }
        let start = self.time_ms("start", MIN_TIME_MS)?;
        let end = self.time_ms("end", MAX_TIME_MS)?;
        Ok((sets, start, end))
    }

    pub fn limit(&self) -> Result<Option<usize>, Error> {
        match self.get("limit") {
            None => Ok(None),
            Some(text) => match text.parse::<usize>() {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(n)),
                Err(_) => Err(Error::BadRequest(format!(
                    "invalid parameter \"limit\": cannot parse \"{text}\" to a valid limit"
                ))),
            },
        }
    }
}

/// Unix seconds (with fraction) or RFC 3339, to milliseconds.
/// Times outside `[MIN_TIME_MS, MAX_TIME_MS]` are clamped to it (as
/// Prometheus clamps to its min and max times), so that differences of any
/// two parsed times fit in an i64.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_nan() {
            return None;
        }
        // `as` saturates (±inf included); the clamp does the rest.
        let ms = (seconds * 1000.0).round() as i64;
        return Some(ms.clamp(MIN_TIME_MS, MAX_TIME_MS));
    }
    match text {
        // Prometheus' own spellings of its min and max times.
        "-292273086-05-16T16:47:06Z" => return Some(MIN_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => return Some(MAX_TIME_MS),
        _ => {}
    }
    let time = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(i64::try_from(since.as_millis()).map_or(MAX_TIME_MS, |ms| ms.min(MAX_TIME_MS)))
}

/// Parse a series selector such as `up{job="api"}` into matchers.
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, Error> {
    use promql_parser::parser::Expr;
    let bad =
        |message: String| Error::BadRequest(format!("invalid parameter \"match[]\": {message}"));
    // The guarded parse: `match[]` is as hostile as `query`. Whatever it
    // parses to is dropped on the grown stack too.
    let selector = crate::query::promql::with_stack(|| {
        match crate::query::promql::parse(text).map_err(|e| bad(e.to_string()))? {
            Expr::VectorSelector(selector) => Ok(selector),
            _ => Err(bad(format!("{text:?} is not a series selector"))),
        }
    })?;
    let matchers =
        crate::query::promql::selector_matchers(&selector).map_err(|e| bad(e.to_string()))?;
    if matchers.iter().all(|m| m.matches("")) {
        return Err(bad(
            "match[] must contain at least one non-empty matcher".into()
        ));
    }
    Ok(matchers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time_ms("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20.250Z"),
            Some(1_700_000_000_250)
        );
        assert_eq!(parse_time_ms("yesterday"), None);
        assert_eq!(parse_time_ms("NaN"), None);
        assert_eq!(parse_time_ms("-1e19"), Some(MIN_TIME_MS));
        assert_eq!(parse_time_ms("1e19"), Some(MAX_TIME_MS));
        assert_eq!(parse_time_ms("+Inf"), Some(MAX_TIME_MS));
        assert!(MAX_TIME_MS.checked_sub(MIN_TIME_MS).is_some());
    }

    #[test]
    fn selectors() {
        let m = parse_selector(r#"up{job=~"a|b", env!="dev"}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert!(m[1].matches("a") && !m[1].matches("ab"));
        assert!(parse_selector(r#"{job=""}"#).is_err());
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector("up{").is_err());
    }
}
