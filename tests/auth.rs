//! Credentials on every listener: bearer tokens, basic auth and
//! Elasticsearch API keys with read/write/admin roles, driven by raw HTTP,
//! the elasticsearch Python client and the OpenTelemetry SDK's exporters;
//! and the refusal to listen beyond loopback without credentials.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use oxeye::api::auth::{hash_password, hash_token};
use serde_json::Value;

const READ_TOKEN: &str = "read-token-0123456789";
const WRITE_TOKEN: &str = "write-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn secured() -> TestServer {
    let tokens = format!(
        "[{{name = \"dashboards\", token_sha256 = \"{}\", roles = [\"read\"]}}, \
          {{name = \"collector\", token_sha256 = \"{}\", roles = [\"write\"]}}, \
          {{name = \"ops\", token_sha256 = \"{}\", roles = [\"admin\"]}}]",
        hash_token(READ_TOKEN),
        hash_token(WRITE_TOKEN),
        hash_token(ADMIN_TOKEN)
    );
    let users = format!(
        "[{{name = \"grafana\", password_hash = \"{}\", roles = [\"read\"]}}]",
        hash_password("grafana-password").unwrap()
    );
    TestServer::start_with(&[
        ("OXEYE_AUTH__TOKENS", &tokens),
        ("OXEYE_AUTH__USERS", &users),
    ])
}

fn status(request: reqwest::blocking::RequestBuilder) -> u16 {
    request.send().unwrap().status().as_u16()
}

#[test]
fn every_http_listener_checks_credentials_and_roles() {
    let server = secured();
    let http = client();
    let base = server.url("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    // Health checks stay open; everything else needs a credential.
    assert_eq!(status(http.get(format!("{base}/-/healthy"))), 200);
    assert_eq!(status(http.get(format!("{base}/-/ready"))), 200);
    let refused = http
        .get(format!("{base}/api/v1/query?query=1"))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert!(
        refused
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Basic realm=")),
        "browsers are asked for basic credentials"
    );
    for path in [
        "/",
        "/ui/metrics",
        "/metrics",
        "/api/services",
        "/api/v1/labels",
    ] {
        assert_eq!(status(http.get(format!("{base}{path}"))), 401, "{path}");
    }

    // Writes need `write`.
    let body = remote_write_body(&[(vec![("__name__", "auth_metric")], vec![(now - 5000, 7.0)])]);
    let write = |token: Option<&str>| {
        let mut request = http
            .post(format!("{base}/api/v1/write"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        status(request)
    };
    assert_eq!(write(None), 401);
    assert_eq!(write(Some("not-a-token")), 401);
    assert_eq!(write(Some(READ_TOKEN)), 403);
    assert_eq!(write(Some(WRITE_TOKEN)), 204);
    assert_eq!(write(Some(ADMIN_TOKEN)), 204);

    // Reads need `read`: token, basic auth with a password, or a token as
    // the basic-auth password (Grafana's data sources).
    let query = |request: reqwest::blocking::RequestBuilder| -> (u16, Value) {
        let response = request.send().unwrap();
        let code = response.status().as_u16();
        (code, response.json().unwrap_or(Value::Null))
    };
    let url = format!("{base}/api/v1/query?query=auth_metric&time={}", now / 1000);
    assert_eq!(query(http.get(&url).bearer_auth(WRITE_TOKEN)).0, 403);
    for request in [
        http.get(&url).bearer_auth(READ_TOKEN),
        http.get(&url)
            .basic_auth("grafana", Some("grafana-password")),
        http.get(&url).basic_auth("grafana", Some(READ_TOKEN)),
        http.get(&url).bearer_auth(ADMIN_TOKEN),
    ] {
        let (code, body) = query(request);
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["data"]["result"][0]["value"][1], "7", "{body}");
    }
    assert_eq!(
        status(http.get(&url).basic_auth("grafana", Some("wrong"))),
        401
    );
    // The dashboard with basic auth, as a browser sends it.
    assert_eq!(
        status(
            http.get(format!("{base}/ui/metrics"))
                .basic_auth("grafana", Some("grafana-password"))
        ),
        200
    );

    // Admin endpoints need `admin`.
    let flush = |token: &str| {
        status(
            http.post(format!("{base}/api/v1/admin/flush"))
                .bearer_auth(token),
        )
    };
    assert_eq!(flush(READ_TOKEN), 403);
    assert_eq!(flush(WRITE_TOKEN), 403);
    assert_eq!(flush(ADMIN_TOKEN), 200);

    // The OTLP/HTTP listener takes writes only with `write`.
    let otlp = format!("http://{}/v1/logs", server.otlp_http);
    let logs = serde_json::json!({"resourceLogs": []});
    assert_eq!(status(http.post(&otlp).json(&logs)), 401);
    assert_eq!(
        status(http.post(&otlp).json(&logs).bearer_auth(READ_TOKEN)),
        403
    );
    assert_eq!(
        status(http.post(&otlp).json(&logs).bearer_auth(WRITE_TOKEN)),
        200
    );

    // The Elasticsearch listener answers refusals in its own error shape.
    let es = format!("http://{}", server.elasticsearch);
    let response = http.get(format!("{es}/_search")).send().unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response.headers().get("x-elastic-product").unwrap(),
        "Elasticsearch"
    );
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["type"], "security_exception", "{body}");
    assert_eq!(
        status(
            http.delete(format!("{es}/some-index"))
                .bearer_auth(WRITE_TOKEN)
        ),
        403,
        "deleting an index needs admin"
    );
}

#[test]
fn real_clients_send_credentials() {
    let path = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/oxeye-py/es8");
    let path = std::env::var_os("OXEYE_PY_ES8").map_or(path, PathBuf::from);
    assert!(
        path.join("elasticsearch").is_dir(),
        "elasticsearch 8.x is not installed in {}; run scripts/test, which installs it",
        path.display()
    );
    let server = secured();
    let out = run_python(
        "auth_clients.py",
        &[
            ("ES_URL", format!("http://{}", server.elasticsearch)),
            ("OTLP_GRPC", server.otlp_grpc.to_string()),
            ("OTLP_HTTP", format!("http://{}", server.otlp_http)),
            ("WRITE_TOKEN", WRITE_TOKEN.into()),
            ("READ_USER", "grafana".into()),
            ("READ_PASSWORD", "grafana-password".into()),
            ("PYTHONPATH", path.display().to_string()),
        ],
    );
    let summary: Value = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap();
    assert_eq!(summary["checks"], 12, "{summary}");
    // The spans exported with the token are stored; the others are not.
    let ids = summary["trace_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    for id in ids {
        let url = server.url(&format!("/api/traces/{}", id.as_str().unwrap()));
        let found = wait_for(Duration::from_secs(10), || {
            let response = client().get(&url).bearer_auth(READ_TOKEN).send().ok()?;
            (response.status().as_u16() == 200).then(|| response.json::<Value>().ok())?
        })
        .unwrap_or_else(|| panic!("trace {id} not stored"));
        assert_eq!(found["data"][0]["spans"].as_array().unwrap().len(), 1);
    }
    let services: Value = client()
        .get(server.url("/api/services"))
        .bearer_auth(READ_TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(services["data"], serde_json::json!(["auth-test"]));
}

#[test]
fn refuses_to_listen_beyond_loopback_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("OXEYE_SERVER__LISTEN", "0.0.0.0:0")]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = runtime
        .block_on(oxeye::start(config))
        .err()
        .expect("start refused");
    let message = err.to_string();
    assert!(
        message.contains("server.listen = 0.0.0.0:0") && message.contains("--insecure-listen"),
        "{message}"
    );
    // A configuration with a bad credential entry is refused with its name.
    let errors = oxeye::config::Config::load(&oxeye::config::ConfigSources {
        file: None,
        env: vec![(
            "OXEYE_AUTH__TOKENS".into(),
            "[{name = \"x\", token_sha256 = \"short\", roles = [\"write\"]}]".into(),
        )],
        flags: vec![],
    })
    .expect_err("bad token refused");
    assert!(errors.to_string().contains("auth.tokens[x]"), "{errors}");
}

#[test]
fn browsers_cannot_forge_cross_site_writes_or_rebind_hosts() {
    let server = TestServer::start_with(&[(
        "OXEYE_SERVER__ALLOWED_ORIGINS",
        "[\"https://grafana.example\"]",
    )]);
    let http = client();
    let flush = server.url("/api/v1/admin/flush");
    let origin = format!("http://{}", server.http);
    // A page elsewhere posting to Oxeye (a form or fetch): refused.
    let response = http
        .post(&flush)
        .header("Origin", "https://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(response.text().unwrap().contains("server.allowed_origins"));
    let es = format!("http://{}/_bulk", server.elasticsearch);
    assert_eq!(
        status(
            http.post(&es)
                .header("Origin", "https://evil.example")
                .header("Content-Type", "application/x-ndjson")
                .body("{\"index\":{\"_index\":\"x\"}}\n{\"a\":1}\n")
        ),
        403
    );
    // The dashboard's own requests, a listed origin, and non-browser clients.
    assert_eq!(
        status(
            http.post(&flush)
                .header("Origin", &origin)
                .header("Sec-Fetch-Site", "same-origin")
        ),
        200
    );
    assert_eq!(
        status(
            http.post(&flush)
                .header("Origin", "https://grafana.example")
        ),
        200
    );
    assert_eq!(status(http.post(&flush)), 200);
    // Reads stay open to cross-site pages (CORS still guards their answers).
    assert_eq!(
        status(
            http.get(server.url("/api/v1/query?query=1"))
                .header("Origin", "https://evil.example")
        ),
        200
    );

    // With allowed_hosts, a rebound DNS name gets nothing.
    let strict =
        TestServer::start_with(&[("OXEYE_SERVER__ALLOWED_HOSTS", "[\"oxeye.internal:9090\"]")]);
    let url = strict.url("/api/v1/query?query=1");
    // reqwest sends the address it connects to (127.0.0.1:port), unlisted.
    assert_eq!(status(http.get(&url)), 403);
    assert_eq!(
        status(http.get(&url).header("Host", "oxeye.internal:9090")),
        200
    );
    assert_eq!(
        status(http.get(&url).header("Host", "attacker.example")),
        403
    );
}

#[test]
fn the_postgres_listener_asks_for_a_password_with_the_read_role() {
    let server = secured();
    let port = server.postgres.port().to_string();
    let psql = |user: &str, password: &str| {
        std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                user,
                "-d",
                "oxeye",
                "-At",
            ])
            .args(["-c", "SELECT 40 + 2"])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql (Debian postgresql-client) is installed")
    };
    // A user's password, and a token as the password of any user name.
    for (user, password) in [("grafana", "grafana-password"), ("anyone", READ_TOKEN)] {
        let out = psql(user, password);
        assert!(
            out.status.success(),
            "{user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    }
    // A wrong password, and a token without the read role.
    for (user, password) in [("grafana", "wrong"), ("anyone", WRITE_TOKEN)] {
        let out = psql(user, password);
        assert!(!out.status.success(), "{user} got in");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.to_lowercase()
                .contains("password authentication failed"),
            "{user}: {err}"
        );
    }
}
