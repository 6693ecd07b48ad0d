//! `flm chat --image-url` and `--prompt-file`, `flm security certificates list` and
//! `flm proxy reload`, through the real `flm` binary and its daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::TcpListener;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use common::{free_port, Env};
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// A real 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];
const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAACklEQVR4nGMAAQAABQABDQottAAAAABJRU5ErkJggg==";

async fn vllm_env() -> (Env, Emulator) {
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let env = Env::new();
    env.flm(&[
        "engines",
        "add",
        "--kind",
        "vllm",
        "--url",
        &vllm.base_url(),
    ])
    .await
    .ok();
    (env, vllm)
}

/// Runs `flm` with `input` on standard input.
async fn flm_stdin(env: &Env, args: &[&str], input: &str) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_flm"));
    cmd.args(args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn image_server() -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/cat.png",
        axum::routing::get(|| async {
            ([(header::CONTENT_TYPE, "image/png")], PNG).into_response()
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn chat_prompt_file_and_image_url() {
    let (env, vllm) = vllm_env().await;
    let _guard = env.guard();
    let img = image_server().await;
    let port = free_port();
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let model = "flm://vllm-1/test-model";

    // --prompt-file: the file's text, line breaks kept.
    let file = env.dir.path().join("prompt.txt");
    std::fs::write(&file, "first line\nsecond line\n").unwrap();
    let f = file.display().to_string();
    let out = env
        .flm(&["chat", "--model", model, "--prompt-file", &f])
        .await;
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    let body = vllm.control().last_chat_body().unwrap();
    assert_eq!(body["messages"][0]["content"], "first line\nsecond line\n");

    // `-`: standard input.
    let (code, stdout, stderr) = flm_stdin(
        &env,
        &["chat", "--model", model, "--prompt-file", "-"],
        "from stdin",
    )
    .await;
    assert_eq!(code, 0, "{stdout} {stderr}");
    let body = vllm.control().last_chat_body().unwrap();
    assert_eq!(body["messages"][0]["content"], "from stdin");

    // Local refusals, before any request.
    let before = vllm.control().chat_requests();
    env.flm(&["chat", "--model", model])
        .await
        .err("INVALID_ARGUMENT", 1);
    let empty = env.dir.path().join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    env.flm(&[
        "chat",
        "--model",
        model,
        "--prompt-file",
        &empty.display().to_string(),
    ])
    .await
    .err("INVALID_ARGUMENT", 1);
    env.flm(&[
        "chat",
        "--model",
        model,
        "--prompt-file",
        "/nonexistent/p.txt",
    ])
    .await
    .err("INVALID_ARGUMENT", 1);
    let msg = env
        .flm(&[
            "chat",
            "--model",
            model,
            "--prompt",
            "a",
            "--prompt-file",
            &f,
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("cannot be used with"), "{msg}");
    env.flm(&[
        "chat",
        "--model",
        model,
        "--prompt",
        "x",
        "--image-url",
        "file:///etc/passwd",
    ])
    .await
    .err("INVALID_ARGUMENT", 1);
    let (code, stdout, _) = flm_stdin(
        &env,
        &[
            "chat",
            "--model",
            model,
            "--prompt-file",
            "-",
            "--api-key",
            "-",
        ],
        "x",
    )
    .await;
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(vllm.control().chat_requests(), before);

    // --image-url: refused by the proxy's SSRF guard until the policy allows the
    // image server's address; then the engine gets the bytes as a data: URL.
    let url = format!("http://{img}/cat.png");
    let msg = env
        .flm(&[
            "chat",
            "--model",
            model,
            "--prompt",
            "what is it?",
            "--image-url",
            &url,
        ])
        .await
        .err("image_url_forbidden", 1);
    assert!(!msg.contains("127.0.0.1"), "{msg}");
    env.flm(&[
        "security",
        "policy",
        "set",
        "--json",
        r#"{"media_fetch":{"allowed_cidrs":["127.0.0.1"]}}"#,
    ])
    .await
    .ok();
    // The daemon follows the store within a second; `proxy reload` makes it now.
    let data = env.flm(&["proxy", "reload", "--all"]).await.ok();
    assert_eq!(data["total"], 1, "{data}");
    let reloaded = &data["reloaded"][0];
    assert_eq!(reloaded["port"], port);
    assert!(reloaded["reloaded"]
        .as_array()
        .unwrap()
        .contains(&Value::from("security_policy")));
    let out = env
        .flm(&[
            "chat",
            "--model",
            model,
            "--prompt",
            "what is it?",
            "--image-url",
            &url,
            "--image-url",
            &url,
        ])
        .await;
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    let body = vllm.control().last_chat_body().unwrap();
    let parts = body["messages"][0]["content"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{body}");
    for p in &parts[1..] {
        assert_eq!(
            p["image_url"]["url"].as_str().unwrap(),
            format!("data:image/png;base64,{PNG_B64}")
        );
    }
    env.flm(&["proxy", "stop"]).await.ok();
}

/// `flm security certificates list` shows the certificates a TLS proxy made, and
/// `flm proxy reload` swaps in a replaced certificate file without a restart and
/// without closing a connection that is open.
#[tokio::test]
async fn certificates_list_and_reload_of_a_replaced_certificate() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();
    let empty = env.flm(&["security", "certificates", "list"]).await.ok();
    assert_eq!(empty, Value::Array(vec![]));
    env.flm(&["proxy", "reload", "--all"])
        .await
        .err("PROXY_NOT_RUNNING", 1);

    let mut port = free_port();
    while TcpListener::bind(("127.0.0.1", port + 1)).is_err() {
        port = free_port();
    }
    let started = env
        .flm(&[
            "proxy",
            "start",
            "--mode",
            "dev-selfsigned",
            "--port",
            &port.to_string(),
        ])
        .await
        .ok();
    let fp = started["tls"]["fingerprint_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = env.flm(&["security", "certificates", "list"]).await.ok();
    let certs = list.as_array().unwrap();
    let dev = certs
        .iter()
        .find(|c| c["id"] == "self-signed")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(dev["mode"], "self-signed");
    assert_eq!(dev["is_expired"], false);
    assert_eq!(dev["sha256_fingerprint"], fp.as_str());
    assert!(dev["days_left"].as_i64().unwrap() > 0);
    assert!(dev["subject"].as_str().unwrap().contains("CN="), "{dev}");
    let sans: Vec<&str> = dev["sans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        sans.contains(&"localhost") && sans.contains(&"127.0.0.1"),
        "{sans:?}"
    );
    let cert_path = dev["cert_path"].as_str().unwrap().to_owned();
    let key_path = dev["key_path"].as_str().unwrap().to_owned();
    assert!(std::path::Path::new(&cert_path).is_file());
    let text = env
        .flm(&["--format", "text", "security", "certificates", "list"])
        .await;
    assert_eq!(text.code, 0);
    assert!(
        text.stdout.contains("self-signed") && text.stdout.contains("days"),
        "{}",
        text.stdout
    );

    // Nothing changed on disk: the same certificate stays.
    let data = env
        .flm(&["proxy", "reload", "--port", &port.to_string()])
        .await
        .ok();
    assert_eq!(data["reloaded"][0]["certificate_changed"], false, "{data}");
    assert!(data["reloaded"][0]["reloaded"]
        .as_array()
        .unwrap()
        .contains(&Value::from("certificate")));

    // An open TLS connection (kept alive by the client's pool) must survive a reload.
    let pem = std::fs::read(&cert_path).unwrap();
    let old_client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let health = format!("https://localhost:{}/health", port + 1);
    assert_eq!(old_client.get(&health).send().await.unwrap().status(), 200);

    // Replace the files with another certificate (the local CA's server certificate
    // for the same names) and reload: new handshakes get it, open connections stay.
    let ca_dir = env.dir.path().join("other-ca");
    let now = chrono::Utc::now();
    let ca = flm_tls::ensure_local_ca(&ca_dir, now).unwrap();
    let sans: Vec<flm_tls::San> = ["localhost", "127.0.0.1"]
        .iter()
        .map(|s| flm_tls::San::parse(s).unwrap())
        .collect();
    let other = flm_tls::issue_server_cert(&ca, &sans, now).unwrap();
    std::fs::write(&cert_path, &other.cert_pem).unwrap();
    std::fs::write(&key_path, &other.key_pem).unwrap();
    let data = env.flm(&["proxy", "reload", "--all"]).await.ok();
    assert_eq!(data["reloaded"][0]["certificate_changed"], true, "{data}");
    assert_eq!(data["errors"], serde_json::json!({}));
    // The pooled connection still answers (no handshake, no drop).
    assert_eq!(old_client.get(&health).send().await.unwrap().status(), 200);
    // A new client that trusts only the new CA completes a handshake.
    let ca_pem = std::fs::read(ca.cert_path()).unwrap();
    let new_client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .build()
        .unwrap();
    assert_eq!(new_client.get(&health).send().await.unwrap().status(), 200);
    let status = env.flm(&["proxy", "status"]).await.ok();
    assert_eq!(
        status["proxies"][0]["tls"]["fingerprint_sha256"],
        other.sha256_fingerprint.as_str()
    );

    // A broken file keeps the certificate in force and is reported.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    let out = env.flm(&["proxy", "reload", "--all"]).await;
    let msg = out.err("PROXY_RELOAD_FAILED", 1);
    assert!(msg.contains("certificate"), "{msg}");
    assert_eq!(new_client.get(&health).send().await.unwrap().status(), 200);
    env.flm(&["proxy", "reload", "--port", "1"])
        .await
        .err("PROXY_NOT_RUNNING", 1);
    env.flm(&["proxy", "stop"]).await.ok();
}
