//! One HTTP request to a destination, retried as Prometheus' queue manager
//! retries: 5xx, 429, timeouts and connection errors back off exponentially
//! from `min_backoff` to `max_backoff` (a `Retry-After` in seconds or as an
//! HTTP date is honoured, up to ten minutes) and are retried until they
//! succeed or Oxeye stops; any other 4xx is final (the receiver will never
//! take it) and the caller counts what it dropped. Response bodies are read
//! up to a bound, within the timeout, so a receiver that answers garbage,
//! endlessly or not at all cannot hold memory or the sender.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::http::{HeaderName, HeaderValue, Request, StatusCode};
use tokio::sync::watch;

use super::DestinationStats;
use crate::config::SendConfig;

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// The longest `Retry-After` obeyed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// How a send ended.
#[derive(Debug)]
pub enum Sent {
    /// 2xx, with the (bounded) response body.
    Ok(Bytes),
    /// A 4xx other than 429: the receiver refuses this request for good.
    Rejected(StatusCode, String),
    /// Oxeye is stopping; the data stays in the WAL for the next start.
    Stopped,
}

pub struct HttpSender {
    client: Client,
    url: hyper::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    send: SendConfig,
    stats: Arc<DestinationStats>,
    shutdown: watch::Receiver<bool>,
    max_response: usize,
}

impl HttpSender {
    pub fn new(
        url: &str,
        send: SendConfig,
        stats: Arc<DestinationStats>,
        shutdown: watch::Receiver<bool>,
        max_response: usize,
    ) -> Result<HttpSender, String> {
        let url: hyper::Uri = url
            .parse()
            .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let headers = send
            .headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                    HeaderValue::from_str(v).map_err(|e| e.to_string())?,
                ))
            })
            .collect::<Result<_, String>>()?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http();
        Ok(HttpSender {
            client,
            url,
            headers,
            send,
            stats,
            shutdown,
            max_response,
        })
    }

    /// The destination URL with `path` in place of its own.
    pub fn with_path(url: &str, path: &str) -> String {
        format!("{}{path}", url.trim_end_matches('/'))
    }

    /// POST `body` until it is delivered, refused for good, or Oxeye stops.
    pub async fn post(&self, body: Bytes, headers: &[(&'static str, &'static str)]) -> Sent {
        let mut backoff = self.send.min_backoff;
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return Sent::Stopped;
            }
            let attempt = tokio::time::timeout(self.send.timeout, self.attempt(&body, headers));
            let wait = match attempt.await {
                Ok(Ok((status, _, answer))) if status.is_success() => {
                    self.stats.request(body.len(), "success");
                    return Sent::Ok(answer);
                }
                Ok(Ok((status, _, answer)))
                    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS =>
                {
                    self.stats.request(body.len(), "rejected");
                    let text = String::from_utf8_lossy(&answer[..answer.len().min(512)])
                        .trim()
                        .to_owned();
                    self.stats
                        .error(format!("{} answered {status}: {text}", self.url));
                    return Sent::Rejected(status, text);
                }
                Ok(Ok((status, after, answer))) => {
                    let text = String::from_utf8_lossy(&answer[..answer.len().min(512)])
                        .trim()
                        .to_owned();
                    self.stats
                        .error(format!("{} answered {status}: {text}; retrying", self.url));
                    after.as_deref().and_then(retry_after).unwrap_or(backoff)
                }
                Ok(Err(err)) => {
                    self.stats.error(format!("{}: {err}; retrying", self.url));
                    backoff
                }
                Err(_) => {
                    self.stats.error(format!(
                        "{}: no answer within {:?}; retrying",
                        self.url, self.send.timeout
                    ));
                    backoff
                }
            };
            self.stats.request(body.len(), "retried");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return Sent::Stopped,
            }
            backoff = (backoff * 2).min(self.send.max_backoff);
        }
    }

    async fn attempt(
        &self,
        body: &Bytes,
        headers: &[(&'static str, &'static str)],
    ) -> Result<(StatusCode, Option<String>, Bytes), String> {
        let mut request = Request::post(self.url.clone())
            .header("user-agent", concat!("Oxeye/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        for (name, value) in headers {
            request.headers_mut().insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let collected = Limited::new(response.into_body(), self.max_response)
            .collect()
            .await
            .map_err(|e| format!("reading the answer ({status}) failed: {e}"))?;
        Ok((status, retry_after, collected.to_bytes()))
    }
}

/// The wait a `Retry-After` header asks for (seconds or an HTTP date).
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let ms = at.timestamp_millis().saturating_sub(crate::now_ms());
            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_a_date_and_bounded() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("99999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past: retry now"
        );
        assert_eq!(retry_after("soon"), None);
    }
}
