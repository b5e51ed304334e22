//! The `oxeye` command line: help, config checking, flags.

use std::process::Command;

fn oxeye(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args(args)
        .env_remove("OXEYE_STORAGE__RETENTION")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_commands_and_serve_flags() {
    let (code, out, _) = oxeye(&["--help"]);
    assert_eq!(code, 0);
    for command in ["serve", "check-config", "default-config"] {
        assert!(out.contains(command), "{out}");
    }
    let (code, out, _) = oxeye(&["serve", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--listen",
        "--data",
        "--otlp-grpc",
        "--otlp-http",
        "--elasticsearch",
        "--postgres",
        "--config",
    ] {
        assert!(out.contains(flag), "{out}");
    }
}

#[test]
fn check_config_reports_every_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[storage]\nretention = \"30d\"\n").unwrap();
    let (code, out, err) = oxeye(&["check-config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"not an address\"\n[storage]\nretension = \"30d\"\n[limits]\nmax_body_size = \"12 parsecs\"\n",
    )
    .unwrap();
    let (code, _, err) = oxeye(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("3 configuration problems"), "{err}");
    assert!(err.contains("bad.toml:2:1: `server.listen`"), "{err}");
    assert!(
        err.contains("bad.toml:4:1: `storage.retension`: unknown key"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:6:1: `limits.max_body_size`"),
        "{err}"
    );

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[storage\n").unwrap();
    let (code, _, err) = oxeye(&["check-config", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("broken.toml:1:"), "{err}");
}

#[test]
fn the_default_config_round_trips_through_check_config() {
    let (code, out, _) = oxeye(&["default-config"]);
    assert_eq!(code, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.toml");
    std::fs::write(&path, out).unwrap();
    let (code, _, err) = oxeye(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn serve_refuses_a_bad_environment_override() {
    let output = Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("OXEYE_STORAGE__RETENTION", "forever")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("OXEYE_STORAGE__RETENTION"), "{err}");
}

fn oxeye_stdin(args: &[&str], input: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    )
}

#[test]
fn credentials_are_hashed_and_checked_from_config_files() {
    let (code, hash) = oxeye_stdin(&["hash-password"], "s3cret\n");
    assert_eq!(code, 0);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let (code, digest) = oxeye_stdin(&["hash-token"], "tok");
    assert_eq!(code, 0);
    // SHA-256("tok"), as `printf tok | sha256sum` prints it.
    assert_eq!(
        digest,
        "1a7674eb4ee78df7e1ac439a93c3fa8e3c945784d4dec9fd8e3011738b2f1d62"
    );
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("auth.toml");
    std::fs::write(
        &good,
        format!(
            "[[auth.users]]\nname = \"grafana\"\npassword_hash = \"{hash}\"\nroles = [\"read\"]\n\n\
             [[auth.tokens]]\nname = \"collector\"\ntoken_sha256 = \"{digest}\"\nroles = [\"write\"]\n"
        ),
    )
    .unwrap();
    let (code, out, err) = oxeye(&["check-config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[auth.tokens]]\nname = \"x\"\ntoken_sha256 = \"abc\"\nroles = [\"writer\"]\n",
    )
    .unwrap();
    let (code, _, err) = oxeye(&["check-config", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("auth.tokens") && err.contains("writer"),
        "{err}"
    );
}
