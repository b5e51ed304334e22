//! TLS on every listener, with a certificate from a test CA (made by the
//! openssl command line tool): curl over HTTP/1.1 and HTTP/2, the
//! elasticsearch Python client and the OpenTelemetry SDK's gRPC and HTTP
//! exporters trusting that CA, all with credentials.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use oxeye::api::auth::{hash_password, hash_token};
use serde_json::Value;

const READ_TOKEN: &str = "tls-read-token-0123456789";
const WRITE_TOKEN: &str = "tls-write-token-0123456789";

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new(require_program("openssl"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Oxeye test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

fn curl(args: &[&str]) -> (bool, String) {
    let output = Command::new(require_program("curl"))
        .args(["-sS", "--noproxy", "*", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn every_listener_speaks_tls_to_real_clients() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let tokens = format!(
        "[{{name = \"dashboards\", token_sha256 = \"{}\", roles = [\"read\"]}}, \
          {{name = \"collector\", token_sha256 = \"{}\", roles = [\"write\"]}}]",
        hash_token(READ_TOKEN),
        hash_token(WRITE_TOKEN),
    );
    let users = format!(
        "[{{name = \"grafana\", password_hash = \"{}\", roles = [\"read\"]}}]",
        hash_password("grafana-password").unwrap()
    );
    let (cert_path, key_path) = (cert.display().to_string(), key.display().to_string());
    let server = TestServer::start_with(&[
        ("OXEYE_SERVER__TLS_CERT_FILE", &cert_path),
        ("OXEYE_SERVER__TLS_KEY_FILE", &key_path),
        ("OXEYE_AUTH__TOKENS", &tokens),
        ("OXEYE_AUTH__USERS", &users),
    ]);
    let ca_arg = ca.display().to_string();
    let url = format!("https://{}/api/v1/query?query=1%2B1", server.http);
    let bearer = format!("Authorization: Bearer {READ_TOKEN}");

    // curl, HTTP/1.1 and HTTP/2 (ALPN), trusting the CA.
    for version in ["--http1.1", "--http2"] {
        let (ok, out) = curl(&[
            version,
            "--cacert",
            &ca_arg,
            "-H",
            &bearer,
            "-w",
            "\n%{http_version}",
            &url,
        ]);
        assert!(ok, "curl {version}: {out}");
        let (body, http_version) = out.rsplit_once('\n').unwrap();
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["data"]["result"][1], "2", "{body}");
        assert_eq!(http_version, if version == "--http2" { "2" } else { "1.1" });
    }
    // Without the CA the certificate is not trusted; plain HTTP gets nowhere.
    let (ok, out) = curl(&["-H", &bearer, &url]);
    assert!(!ok, "an untrusted certificate was accepted: {out}");
    let (ok, out) = curl(&[
        "-H",
        &bearer,
        &format!("http://{}/api/v1/query?query=1", server.http),
    ]);
    assert!(
        !ok || !out.contains("success"),
        "plain HTTP answered: {out}"
    );
    // The other HTTP listeners, and credentials still checked over TLS.
    let (ok, out) = curl(&[
        "--cacert",
        &ca_arg,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://{}/", server.elasticsearch),
    ]);
    assert!(ok && out == "401", "{out}");
    let (ok, out) = curl(&[
        "--cacert",
        &ca_arg,
        "-u",
        "grafana:grafana-password",
        &format!("https://{}/", server.elasticsearch),
    ]);
    assert!(ok && out.contains("\"tagline\""), "{out}");

    // The elasticsearch client and both OTLP exporters over TLS.
    let es_path = std::env::var_os("OXEYE_PY_ES8").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/oxeye-py/es8"),
        PathBuf::from,
    );
    assert!(
        es_path.join("elasticsearch").is_dir(),
        "elasticsearch 8.x is not installed in {}; run scripts/test, which installs it",
        es_path.display()
    );
    let out = run_python(
        "auth_clients.py",
        &[
            ("ES_URL", format!("https://{}", server.elasticsearch)),
            ("OTLP_GRPC", server.otlp_grpc.to_string()),
            ("OTLP_HTTP", format!("https://{}", server.otlp_http)),
            ("WRITE_TOKEN", WRITE_TOKEN.into()),
            ("READ_USER", "grafana".into()),
            ("READ_PASSWORD", "grafana-password".into()),
            ("CA_FILE", ca_arg.clone()),
            // requests (under the OTLP/HTTP exporter) lets this variable,
            // when the environment sets it, override the exporter's own
            // certificate_file; point it at the CA as an operator would.
            ("REQUESTS_CA_BUNDLE", ca_arg.clone()),
            ("PYTHONPATH", es_path.display().to_string()),
        ],
    );
    let summary: Value = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap();
    assert_eq!(summary["checks"], 12, "{summary}");
    for id in summary["trace_ids"].as_array().unwrap() {
        let (ok, out) = curl(&[
            "--cacert",
            &ca_arg,
            "-H",
            &bearer,
            &format!(
                "https://{}/api/traces/{}",
                server.http,
                id.as_str().unwrap()
            ),
        ]);
        assert!(ok, "{out}");
        let trace: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            trace["data"][0]["spans"].as_array().unwrap().len(),
            1,
            "{trace}"
        );
    }
}

#[test]
fn unreadable_or_mismatched_tls_files_stop_start_up() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, _key) = make_certificates(certs.path());
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (cert, key, expected) in [
        (
            cert.clone(),
            certs.path().join("missing.key"),
            "cannot read the TLS key",
        ),
        // The CA's key with the server's certificate.
        (cert.clone(), certs.path().join("ca.key"), "do not fit"),
        (ca.clone(), ca.clone(), "TLS key file"),
    ] {
        let config = config(
            dir.path(),
            &[
                ("OXEYE_SERVER__TLS_CERT_FILE", &cert.display().to_string()),
                ("OXEYE_SERVER__TLS_KEY_FILE", &key.display().to_string()),
            ],
        );
        let err = runtime
            .block_on(oxeye::start(config))
            .err()
            .expect("start refused");
        assert!(err.to_string().contains(expected), "{err}");
    }
}
