//! The access log and the rotation of the daemon's log, end to end: requests sent
//! over real sockets to the daemon's proxy (in front of the vLLM emulator) each
//! leave one `flm::access` JSON line in `logs/proxy.log` with the request's facts —
//! a chat (plain and streamed), the pass-through, a 404, a 401 and a refusal of a
//! banned address —;
//! `log.access false` stops them within about a second; a `proxy.log` past
//! `log.max_size_mb` is rotated to `proxy.log.1` keeping `log.max_files` files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{free_port, Env};
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use serde_json::{json, Value};

fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn log_path(env: &Env) -> std::path::PathBuf {
    env.data_dir().join("logs").join("proxy.log")
}

/// The access events written so far, as their `fields`.
fn access_lines(env: &Env) -> Vec<Value> {
    std::fs::read_to_string(log_path(env))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "flm::access")
        .map(|mut v| {
            let mut f = v["fields"].take();
            f["timestamp"] = v["timestamp"].take();
            f["level"] = v["level"].take();
            f
        })
        .collect()
}

/// The access line of request `rid`, waiting for it (it is written when the body ends).
async fn line_of(env: &Env, rid: &str) -> Value {
    let t = Instant::now();
    loop {
        if let Some(l) = access_lines(env)
            .into_iter()
            .find(|l| l["request_id"] == rid)
        {
            return l;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no access line for {rid}: {}",
            std::fs::read_to_string(log_path(env)).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rid(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_access_line_per_request_through_the_daemon() {
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
        "--id",
        "v",
    ])
    .await
    .ok();
    env.flm(&[
        "security",
        "policy",
        "set",
        "--json",
        r#"{"ip_blocklist":{"enabled":true}}"#,
    ])
    .await
    .ok();
    let _guard = env.guard();
    let port = free_port();
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let key = started["api_key"]["key"].as_str().unwrap().to_owned();
    let key_id = started["api_key"]["id"].as_str().unwrap().to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let http = client_from("127.0.0.1");

    // A plain chat.
    let r = http
        .post(format!("{base}/v1/chat/completions?probe=1"))
        .bearer_auth(&key)
        .json(&json!({"model": "flm://v/test-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = rid(&r);
    let body: Value = r.json().await.unwrap();
    let l = line_of(&env, &id).await;
    assert_eq!(l["level"], "INFO", "{l}");
    assert!(l["timestamp"].as_str().unwrap().starts_with("20"), "{l}");
    assert_eq!(l["message"], "request", "{l}");
    assert_eq!(l["client_ip"], "127.0.0.1", "{l}");
    assert_eq!(l["api_key_id"], key_id.as_str(), "{l}");
    assert_eq!(l["route"], "/v1/chat/completions", "no query: {l}");
    assert_eq!(l["method"], "POST", "{l}");
    assert_eq!(l["engine_id"], "v", "{l}");
    assert_eq!(l["model"], "flm://v/test-model", "{l}");
    assert_eq!(l["status"], 200, "{l}");
    assert!(l.get("error_code").is_none(), "{l}");
    assert!(l["duration_ms"].is_u64(), "{l}");
    assert!(l.get("ttft_ms").is_none(), "not a stream: {l}");
    assert_eq!(l["input_tokens"], body["usage"]["prompt_tokens"], "{l}");
    assert_eq!(
        l["output_tokens"], body["usage"]["completion_tokens"],
        "{l}"
    );

    // A streamed chat, with usage in its last event.
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({
            "model": "flm://v/test-model",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "stream_options": {"include_usage": true},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = rid(&r);
    let text = r.text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    let l = line_of(&env, &id).await;
    assert_eq!(l["status"], 200, "{l}");
    assert_eq!(l["engine_id"], "v", "{l}");
    assert!(l["ttft_ms"].is_u64(), "{l}");
    assert!(
        l["ttft_ms"].as_u64().unwrap() <= l["duration_ms"].as_u64().unwrap(),
        "{l}"
    );
    assert!(l["output_tokens"].as_u64().unwrap() > 0, "{l}");
    assert!(l["input_tokens"].as_u64().unwrap() > 0, "{l}");

    // The pass-through names its engine in the path.
    let r = http
        .get(format!("{base}/engine/v/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let id = rid(&r);
    let _ = r.bytes().await;
    let l = line_of(&env, &id).await;
    assert_eq!(l["route"], "/engine/v/v1/models", "{l}");
    assert_eq!(l["engine_id"], "v", "{l}");
    assert_eq!(l["api_key_id"], key_id.as_str(), "{l}");

    // A 404 of an unknown route is logged too.
    let r = http
        .get(format!("{base}/v1/nosuch"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let id = rid(&r);
    let l = line_of(&env, &id).await;
    assert_eq!(l["status"], 404, "{l}");
    assert_eq!(l["route"], "/v1/nosuch", "{l}");

    // Wrong keys from 127.0.0.2: 401s without a key id, then a ban refused by the defence.
    let other = client_from("127.0.0.2");
    let mut last = String::new();
    for i in 0..5 {
        let r = other
            .get(format!("{base}/v1/models"))
            .bearer_auth(format!("flm_wrong_{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        last = rid(&r);
    }
    let l = line_of(&env, &last).await;
    assert_eq!(l["status"], 401, "{l}");
    assert_eq!(l["error_code"], "invalid_api_key", "{l}");
    assert_eq!(l["client_ip"], "127.0.0.2", "{l}");
    assert_eq!(l["route"], "/v1/models", "{l}");
    assert_eq!(l["method"], "GET", "{l}");
    assert!(l.get("api_key_id").is_none(), "{l}");
    let r = other
        .get(format!("{base}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let id = rid(&r);
    let l = line_of(&env, &id).await;
    assert_eq!(l["status"], 403, "{l}");
    assert_eq!(l["error_code"], "ip_blocked", "{l}");
    assert_eq!(l["client_ip"], "127.0.0.2", "{l}");

    let log = std::fs::read_to_string(log_path(&env)).unwrap();
    assert!(!log.contains(&key), "the key itself is never logged");

    // `log.access false` stops the lines within about a second.
    env.flm(&["config", "set", "log.access", "false"])
        .await
        .ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = access_lines(&env).len();
    let r = http
        .get(format!("{base}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(access_lines(&env).len(), before, "no line when off");
    env.flm(&["config", "set", "log.access", "true"]).await.ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = http
        .get(format!("{base}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let id = rid(&r);
    let _ = r.bytes().await;
    line_of(&env, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_log_rotates_past_its_size_keeping_max_files() {
    let env = Env::new();
    env.flm(&["config", "set", "log.max_size_mb", "1"])
        .await
        .ok();
    env.flm(&["config", "set", "log.max_files", "2"]).await.ok();
    // A log that is already at its limit, and two older files.
    let logs = env.data_dir().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let filler = "{\"old\":true}\n".repeat(1024 * 1024 / 13 + 1);
    std::fs::write(logs.join("proxy.log"), &filler).unwrap();
    std::fs::write(logs.join("proxy.log.1"), "first rotated\n").unwrap();
    std::fs::write(logs.join("proxy.log.2"), "second rotated\n").unwrap();
    let _guard = env.guard();
    let port = free_port();
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let key = started["api_key"]["key"].as_str().unwrap().to_owned();
    let http = client_from("127.0.0.1");
    let t = Instant::now();
    // Rotation happens once the limits are applied (within about a second) and a
    // line would take the file past 1 MiB.
    loop {
        let r = http
            .get(format!("http://127.0.0.1:{port}/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let _ = r.bytes().await;
        let current = std::fs::read_to_string(logs.join("proxy.log")).unwrap();
        if !current.contains("\"old\":true") && current.contains("flm::access") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "not rotated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let one = std::fs::read_to_string(logs.join("proxy.log.1")).unwrap();
    assert!(one.starts_with(&filler), "proxy.log.1 is the old log");
    assert_eq!(
        std::fs::read_to_string(logs.join("proxy.log.2")).unwrap(),
        "first rotated\n"
    );
    assert!(
        !logs.join("proxy.log.3").exists(),
        "the oldest file was deleted"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(logs.join("proxy.log"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_stream_gets_its_line() {
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions {
            chunk_delay: Duration::from_millis(300),
            ..EmulatorOptions::default()
        },
    )
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
        "--id",
        "slow",
    ])
    .await
    .ok();
    let _guard = env.guard();
    let port = free_port();
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let key = started["api_key"]["key"].as_str().unwrap().to_owned();
    let mut r = client_from("127.0.0.1")
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({
            "model": "flm://slow/test-model",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = rid(&r);
    let first = r.chunk().await.unwrap();
    assert!(first.is_some());
    // The client goes away: the line is written when the proxy notices.
    drop(r);
    let l = line_of(&env, &id).await;
    assert_eq!(l["status"], 200, "{l}");
    assert_eq!(l["error_code"], "client_disconnected", "{l}");
    assert_eq!(l["engine_id"], "slow", "{l}");
    assert!(l["ttft_ms"].is_u64(), "{l}");
}

/// `flm proxy start --no-daemon` (how systemd runs FLM) logs like the daemon: the
/// access lines land in `logs/proxy.log`, `log.access false` stops them within about
/// a second, and warnings still reach stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreground_proxy_logs_like_the_daemon() {
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
        "--id",
        "v",
    ])
    .await
    .ok();
    let fg = common::Foreground::start(&env).await;
    let (key, key_id, base) = (fg.key.clone(), fg.key_id.clone(), fg.base.clone());
    let http = client_from("127.0.0.1");
    let chat = || {
        http.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "flm://v/test-model", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let r = chat().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = rid(&r);
    r.bytes().await.unwrap();
    let line = line_of(&env, &id).await;
    assert_eq!(line["api_key_id"], key_id.as_str(), "{line}");
    assert_eq!(line["engine_id"], "v", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(!std::fs::read_to_string(log_path(&env))
        .unwrap()
        .contains(&key));

    env.flm(&["config", "set", "log.access", "false"])
        .await
        .ok();
    // The watcher reads the setting about once a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = chat().await.unwrap();
    let off = rid(&r);
    r.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        access_lines(&env)
            .iter()
            .all(|l| l["request_id"] != off.as_str()),
        "log.access false still logs in the foreground"
    );
    fg.stop().await;
}
