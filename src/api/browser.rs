//! Browser safety on the HTTP listeners that browsers reach (the main one,
//! with the dashboard, and the Elasticsearch API).
//!
//! - Cross-site request forgery: a state-changing request (anything but
//!   GET, HEAD, OPTIONS) that a browser marks as cross-site — `Sec-Fetch-Site:
//!   cross-site|same-site`, or an `Origin` that is not this server — is
//!   refused, unless the origin is listed in `server.allowed_origins`. A
//!   browser attaches cached basic-auth credentials to such requests, so
//!   credentials alone do not stop them. Clients that are not browsers send
//!   neither header and are not affected.
//! - DNS rebinding: with `server.allowed_hosts` set, a request whose `Host`
//!   is not listed is refused.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    /// Lowercase `host[:port]`; empty: any host.
    pub allowed_hosts: Vec<String>,
    /// Lowercase `scheme://host[:port]` allowed to make state-changing requests.
    pub allowed_origins: Vec<String>,
}

impl BrowserPolicy {
    pub fn from_config(server: &crate::config::ServerConfig) -> BrowserPolicy {
        let lower = |items: &[String]| -> Vec<String> {
            items
                .iter()
                .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect()
        };
        BrowserPolicy {
            allowed_hosts: lower(&server.allowed_hosts),
            allowed_origins: lower(&server.allowed_origins),
        }
    }

    /// Why `request` is refused, if it is.
    pub fn check(&self, method: &Method, headers: &axum::http::HeaderMap) -> Option<String> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        if !self.allowed_hosts.is_empty() {
            match &host {
                Some(host) if self.allowed_hosts.iter().any(|h| h == host) => {}
                Some(host) => return Some(format!("host {host:?} is not in server.allowed_hosts")),
                None => return Some("a Host header is required".into()),
            }
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return None;
        }
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_end_matches('/').to_ascii_lowercase());
        if let Some(origin) = &origin {
            if self.allowed_origins.iter().any(|o| o == origin) {
                return None;
            }
        }
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        if let Some(site) = &site {
            if site == "cross-site" || site == "same-site" {
                return Some(format!(
                    "cross-site {method} refused (Sec-Fetch-Site: {site}); list the origin in server.allowed_origins to allow it"
                ));
            }
        }
        match (&origin, &host) {
            // `Origin: null` comes from sandboxed frames and file: pages.
            (Some(origin), Some(host)) => {
                let origin_host = origin.split_once("://").map_or(origin.as_str(), |(_, h)| h);
                (origin_host != host).then(|| {
                    format!(
                        "cross-origin {method} from {origin} refused; list it in server.allowed_origins to allow it"
                    )
                })
            }
            (Some(origin), None) => Some(format!("cross-origin {method} from {origin} refused")),
            (None, _) => None,
        }
    }
}

/// axum middleware applying a [`BrowserPolicy`].
pub async fn guard(
    State(policy): State<Arc<BrowserPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    match policy.check(request.method(), request.headers()) {
        None => next.run(request).await,
        Some(reason) => (StatusCode::FORBIDDEN, format!("{reason}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_writes_are_refused() {
        let p = BrowserPolicy::default();
        let post = Method::POST;
        // Not a browser: no Origin, no Sec-Fetch-Site.
        assert!(p
            .check(&post, &headers(&[("host", "127.0.0.1:9090")]))
            .is_none());
        // The dashboard itself.
        assert!(p
            .check(
                &post,
                &headers(&[
                    ("host", "127.0.0.1:9090"),
                    ("origin", "http://127.0.0.1:9090"),
                    ("sec-fetch-site", "same-origin")
                ])
            )
            .is_none());
        assert!(p
            .check(
                &post,
                &headers(&[
                    ("host", "127.0.0.1:9090"),
                    ("origin", "https://evil.example")
                ])
            )
            .is_some());
        assert!(p
            .check(
                &post,
                &headers(&[("host", "127.0.0.1:9090"), ("sec-fetch-site", "cross-site")])
            )
            .is_some());
        // Reads are not state-changing.
        assert!(p
            .check(
                &Method::GET,
                &headers(&[
                    ("host", "127.0.0.1:9090"),
                    ("origin", "https://evil.example")
                ])
            )
            .is_none());
        let allowed = BrowserPolicy {
            allowed_origins: vec!["https://grafana.example".into()],
            ..Default::default()
        };
        assert!(allowed
            .check(
                &post,
                &headers(&[
                    ("host", "oxeye:9090"),
                    ("origin", "https://grafana.example"),
                    ("sec-fetch-site", "cross-site")
                ])
            )
            .is_none());
    }

    #[test]
    fn unknown_hosts_are_refused_when_hosts_are_listed() {
        let p = BrowserPolicy {
            allowed_hosts: vec!["oxeye.internal:9090".into()],
            ..Default::default()
        };
        assert!(p
            .check(&Method::GET, &headers(&[("host", "oxeye.internal:9090")]))
            .is_none());
        assert!(p
            .check(&Method::GET, &headers(&[("host", "attacker.example:9090")]))
            .is_some());
        assert!(p.check(&Method::GET, &headers(&[])).is_some());
    }
}
