//! Credentials on every listener.
//!
//! A request carries one `Authorization` header:
//! - `Bearer <token>` (OTel exporters' `headers`, Grafana's custom header),
//! - `Basic <base64 user:password>` (browsers, Grafana's basic auth, curl -u),
//! - `ApiKey <key>` (Elasticsearch clients; `<key>` is a configured token, or
//!   base64 of `<token name>:<token>` as clients encode an `(id, key)` pair).
//!
//! Tokens are stored as SHA-256 digests (they are long and random, so a fast
//! hash is enough); passwords as argon2 PHC strings (`oxeye hash-password`).
//! Argon2 is slow by design, so a verified `(user, password)` is remembered
//! by its SHA-256 digest, and verifications run on blocking threads, a few at
//! a time, so that wrong passwords cannot tie up the async runtime.
//!
//! Roles: `read` (queries, the dashboard), `write` (ingest, saving and
//! deleting dashboards), `admin` (everything, including `/api/v1/admin/*`
//! and index deletion). The Elasticsearch API mounted under `/es` on the
//! main listener keeps its own rules.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// Who a request is, once its credential checked out.
#[derive(Debug, Clone)]
struct Principal {
    name: String,
    roles: Vec<Role>,
}

impl Principal {
    fn may(&self, need: Role) -> bool {
        self.roles.contains(&Role::Admin) || self.roles.contains(&need)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No or unusable credentials (401).
    Unauthenticated(String),
    /// Valid credentials without the role (403).
    Forbidden(String),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Unauthenticated(m) | Denied::Forbidden(m) => f.write_str(m),
        }
    }
}

/// Verified password digests kept at most (then the memory starts over).
const VERIFIED_CACHE: usize = 4096;
/// Argon2 verifications running at once.
const CONCURRENT_VERIFICATIONS: usize = 2;

pub struct Authenticator {
    users: HashMap<String, (String, Vec<Role>)>,
    tokens: Vec<([u8; 32], Principal)>,
    verified: Mutex<HashMap<[u8; 32], Principal>>,
    verifying: tokio::sync::Semaphore,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Constant-time equality of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// From `[auth]`; errors name the entry that is wrong.
    pub fn from_config(config: &AuthConfig) -> Result<Authenticator, String> {
        let mut users = HashMap::new();
        for user in &config.users {
            if user.name.is_empty() || user.name.contains(':') {
                return Err(format!(
                    "auth.users: user name {:?} must be non-empty and contain no ':'",
                    user.name
                ));
            }
            argon2::PasswordHash::new(&user.password_hash).map_err(|e| {
                format!(
                    "auth.users[{}]: password_hash is not an argon2 PHC string ({e}); make one with `oxeye hash-password`",
                    user.name
                )
            })?;
            if user.roles.is_empty() {
                return Err(format!(
                    "auth.users[{}]: roles must not be empty",
                    user.name
                ));
            }
            if users
                .insert(
                    user.name.clone(),
                    (user.password_hash.clone(), user.roles.clone()),
                )
                .is_some()
            {
                return Err(format!("auth.users: user {:?} is listed twice", user.name));
            }
        }
        let mut tokens = Vec::new();
        for token in &config.tokens {
            let digest = hex_digest(&token.token_sha256).ok_or_else(|| {
                format!(
                    "auth.tokens[{}]: token_sha256 must be 64 hex digits (the SHA-256 of the token; `oxeye hash-token`)",
                    token.name
                )
            })?;
            if token.roles.is_empty() {
                return Err(format!(
                    "auth.tokens[{}]: roles must not be empty",
                    token.name
                ));
            }
            tokens.push((
                digest,
                Principal {
                    name: token.name.clone(),
                    roles: token.roles.clone(),
                },
            ));
        }
        Ok(Authenticator {
            users,
            tokens,
            verified: Mutex::new(HashMap::new()),
            verifying: tokio::sync::Semaphore::new(CONCURRENT_VERIFICATIONS),
        })
    }

    /// True when any credential is configured (then every request needs one).
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    fn token(&self, token: &[u8]) -> Option<&Principal> {
        let digest = sha256(&[token]);
        // Compare against every entry, so timing says nothing about which.
        let mut found = None;
        for (expected, principal) in &self.tokens {
            if same(expected, &digest) {
                found = Some(principal);
            }
        }
        found
    }

    async fn password(&self, user: &str, password: &str) -> Option<Principal> {
        let (hash, roles) = self.users.get(user)?;
        let digest = sha256(&[user.as_bytes(), b"\0", password.as_bytes()]);
        if let Some(principal) = self.verified.lock().get(&digest) {
            return Some(principal.clone());
        }
        let _permit = self.verifying.acquire().await.ok()?;
        let (hash, password) = (hash.clone(), password.to_owned());
        let ok = tokio::task::spawn_blocking(move || {
            use argon2::PasswordVerifier;
            let parsed = argon2::PasswordHash::new(&hash).ok()?;
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .ok()
        })
        .await
        .ok()
        .flatten()
        .is_some();
        if !ok {
            return None;
        }
        let principal = Principal {
            name: user.to_owned(),
            roles: roles.clone(),
        };
        let mut verified = self.verified.lock();
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(digest, principal.clone());
        Some(principal)
    }

    /// Whether a user's password (or a token given as the password of any
    /// user name) is valid and grants `need`: the PostgreSQL login.
    pub async fn check_password(&self, user: &str, password: &str, need: Role) -> bool {
        let principal = match self.password(user, password).await {
            Some(principal) => Some(principal),
            None => self.token(password.as_bytes()).cloned(),
        };
        principal.is_some_and(|p| p.may(need))
    }

    /// Check the `Authorization` header for `need`.
    pub async fn authorize(&self, headers: &HeaderMap, need: Role) -> Result<(), Denied> {
        if !self.enabled() {
            return Ok(());
        }
        let missing = || {
            Denied::Unauthenticated(
                "missing credentials: send an Authorization header (Bearer token, Basic or ApiKey)"
                    .into(),
            )
        };
        let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
        let text = value.to_str().map_err(|_| missing())?.trim();
        let (scheme, credential) = text.split_once(' ').ok_or_else(missing)?;
        let credential = credential.trim();
        let invalid = || Denied::Unauthenticated("invalid credentials".into());
        let principal = match scheme.to_ascii_lowercase().as_str() {
            "bearer" => self.token(credential.as_bytes()).cloned(),
            "apikey" => self.token(credential.as_bytes()).cloned().or_else(|| {
                // Elasticsearch clients send base64("<id>:<key>") for a pair.
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(credential)
                    .ok()?;
                let decoded = String::from_utf8(decoded).ok()?;
                let (id, key) = decoded.split_once(':')?;
                self.token(key.as_bytes()).filter(|p| p.name == id).cloned()
            }),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(credential)
                    .map_err(|_| invalid())?;
                let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
                let (user, password) = decoded.split_once(':').ok_or_else(invalid)?;
                match self.password(user, password).await {
                    Some(principal) => Some(principal),
                    // A token works as the password of any user name (as
                    // Grafana's data sources can only send basic auth).
                    None => self.token(password.as_bytes()).cloned(),
                }
            }
            other => {
                return Err(Denied::Unauthenticated(format!(
                    "unsupported authorization scheme {other:?}: use Bearer, Basic or ApiKey"
                )))
            }
        };
        let principal = principal.ok_or_else(invalid)?;
        if principal.may(need) {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "{} lacks the {:?} role this request needs",
                principal.name,
                need.as_str()
            )))
        }
    }
}

fn hex_digest(text: &str) -> Option<[u8; 32]> {
    crate::model::span::parse_hex::<32>(text.trim())
}

/// SHA-256 of a token, in hex, for `auth.tokens[].token_sha256`.
pub fn hash_token(token: &str) -> String {
    sha256(&[token.as_bytes()])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An argon2id PHC string for `auth.users[].password_hash`.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// What a request on the main HTTP listener needs. `None`: open to all
/// (health checks, as load balancers and kubelets call them bare).
pub fn main_listener_role(method: &Method, path: &str) -> Option<Role> {
    if matches!(path, "/-/healthy" | "/-/ready") {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/es/") {
        return Some(elasticsearch_role(method, rest));
    }
    // Saving, restoring and deleting dashboards changes what others see.
    if path.starts_with("/api/v1/dashboards") && !matches!(*method, Method::GET | Method::HEAD) {
        return Some(Role::Write);
    }
    if path.starts_with("/api/v1/admin/") || path == "/-/reload" {
        return Some(Role::Admin);
    }
    if path == "/api/v1/write" || is_otlp_path(path) {
        return Some(Role::Write);
    }
    Some(Role::Read)
}

fn is_otlp_path(path: &str) -> bool {
    matches!(path, "/v1/metrics" | "/v1/logs" | "/v1/traces")
}

/// What a request on the Elasticsearch listener needs: reads (GET, HEAD and
/// the search endpoints) `read`, deletions `admin`, everything else `write`.
pub fn elasticsearch_role(method: &Method, path: &str) -> Role {
    if *method == Method::DELETE {
        return Role::Admin;
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        return Role::Read;
    }
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    match last {
        "_search" | "_msearch" | "_count" | "_field_caps" | "_mget" | "_validate" => Role::Read,
        _ => Role::Write,
    }
}

/// A listener's rule: the role a request needs, if any.
pub type RoleRule = fn(&Method, &str) -> Option<Role>;

#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<Authenticator>,
    pub rule: RoleRule,
    /// `WWW-Authenticate` realm for basic auth (browsers prompt for it).
    pub realm: &'static str,
    /// Elasticsearch's error shape instead of plain text.
    pub elasticsearch: bool,
}

/// axum middleware: refuse requests without the role their route needs.
pub async fn require(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Some(need) = (guard.rule)(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    match guard.auth.authorize(request.headers(), need).await {
        Ok(()) => next.run(request).await,
        Err(denied) => denied_response(&guard, &denied),
    }
}

fn denied_response(guard: &Guard, denied: &Denied) -> Response {
    let status = match denied {
        Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Denied::Forbidden(_) => StatusCode::FORBIDDEN,
    };
    let mut response = if guard.elasticsearch {
        let kind = "security_exception";
        let body = serde_json::json!({
            "error": {
                "root_cause": [{"type": kind, "reason": denied.to_string()}],
                "type": kind,
                "reason": denied.to_string(),
            },
            "status": status.as_u16(),
        });
        (status, axum::Json(body)).into_response()
    } else {
        (status, format!("{denied}\n")).into_response()
    };
    if status == StatusCode::UNAUTHORIZED {
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", guard.realm);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// tower layer for the gRPC listener: every call needs `write`; a refused
/// call gets gRPC status UNAUTHENTICATED or PERMISSION_DENIED.
#[derive(Clone)]
pub struct GrpcAuthLayer {
    pub auth: Arc<Authenticator>,
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            auth: self.auth.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct GrpcAuth<S> {
    auth: Arc<Authenticator>,
    inner: S,
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = axum::http::Response<R>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        // The clone is ready only if polled; use the one that was.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.authorize(request.headers(), Role::Write).await {
                Ok(()) => inner.call(request).await,
                Err(denied) => {
                    let status = match &denied {
                        Denied::Unauthenticated(m) => tonic::Status::unauthenticated(m.clone()),
                        Denied::Forbidden(m) => tonic::Status::permission_denied(m.clone()),
                    };
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TokenConfig, UserConfig};

    fn auth() -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            users: vec![UserConfig {
                name: "grafana".into(),
                password_hash: hash_password("s3cret").unwrap(),
                roles: vec![Role::Read],
            }],
            tokens: vec![
                TokenConfig {
                    name: "collector".into(),
                    token_sha256: hash_token("tok-w"),
                    roles: vec![Role::Write],
                },
                TokenConfig {
                    name: "ops".into(),
                    token_sha256: hash_token("tok-a"),
                    roles: vec![Role::Admin],
                },
            ],
        })
        .unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user: &str, password: &str) -> String {
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[tokio::test]
    async fn schemes_and_roles() {
        let a = auth();
        let ok = |r: Result<(), Denied>| r.is_ok();
        assert!(ok(a.authorize(&headers("Bearer tok-w"), Role::Write).await));
        assert!(matches!(
            a.authorize(&headers("Bearer tok-w"), Role::Read).await,
            Err(Denied::Forbidden(_))
        ));
        assert!(ok(a.authorize(&headers("Bearer tok-a"), Role::Admin).await));
        assert!(ok(a.authorize(&headers("Bearer tok-a"), Role::Read).await));
        assert!(matches!(
            a.authorize(&headers("Bearer nope"), Role::Read).await,
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            a.authorize(&HeaderMap::new(), Role::Read).await,
            Err(Denied::Unauthenticated(_))
        ));
        // Basic: password (twice: the second from the verified cache), wrong
        // password, unknown user, a token as password.
        for _ in 0..2 {
            assert!(ok(a
                .authorize(&headers(&basic("grafana", "s3cret")), Role::Read)
                .await));
        }
        assert!(!ok(a
            .authorize(&headers(&basic("grafana", "wrong")), Role::Read)
            .await));
        assert!(!ok(a
            .authorize(&headers(&basic("nobody", "s3cret")), Role::Read)
            .await));
        assert!(ok(a
            .authorize(&headers(&basic("any", "tok-w")), Role::Write)
            .await));
        // Elasticsearch API keys: the key itself, or base64(id:key).
        assert!(ok(a.authorize(&headers("ApiKey tok-w"), Role::Write).await));
        let pair = base64::engine::general_purpose::STANDARD.encode("collector:tok-w");
        assert!(ok(a
            .authorize(&headers(&format!("ApiKey {pair}")), Role::Write)
            .await));
        let wrong_id = base64::engine::general_purpose::STANDARD.encode("ops:tok-w");
        assert!(!ok(a
            .authorize(&headers(&format!("ApiKey {wrong_id}")), Role::Write)
            .await));
        assert!(!ok(a.authorize(&headers("Digest x"), Role::Read).await));
    }

    #[test]
    fn bad_config_is_named() {
        let err = Authenticator::from_config(&AuthConfig {
            users: vec![UserConfig {
                name: "u".into(),
                password_hash: "plain".into(),
                roles: vec![Role::Read],
            }],
            tokens: vec![],
        })
        .err()
        .unwrap();
        assert!(err.contains("hash-password"), "{err}");
        let err = Authenticator::from_config(&AuthConfig {
            users: vec![],
            tokens: vec![TokenConfig {
                name: "t".into(),
                token_sha256: "abc".into(),
                roles: vec![Role::Write],
            }],
        })
        .err()
        .unwrap();
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn routes_need_roles() {
        assert_eq!(main_listener_role(&Method::GET, "/-/healthy"), None);
        assert_eq!(
            main_listener_role(&Method::POST, "/api/v1/admin/flush"),
            Some(Role::Admin)
        );
        assert_eq!(
            main_listener_role(&Method::POST, "/api/v1/write"),
            Some(Role::Write)
        );
        assert_eq!(
            main_listener_role(&Method::POST, "/v1/traces"),
            Some(Role::Write)
        );
        assert_eq!(
            main_listener_role(&Method::POST, "/api/v1/query"),
            Some(Role::Read)
        );
        assert_eq!(
            elasticsearch_role(&Method::POST, "/logs/_search"),
            Role::Read
        );
        assert_eq!(elasticsearch_role(&Method::POST, "/_bulk"), Role::Write);
        assert_eq!(elasticsearch_role(&Method::PUT, "/logs"), Role::Write);
        assert_eq!(elasticsearch_role(&Method::DELETE, "/logs"), Role::Admin);
        assert_eq!(elasticsearch_role(&Method::GET, "/"), Role::Read);
    }
}
