//! End-to-end tests of `flm proxy`, `flm api-keys` and `flm chat`: the real `flm` and
//! `flm-proxy` binaries, the real llama.cpp `llama-server` and the vLLM emulator,
//! plain HTTP clients on loopback. Every test has its own data directory and ports,
//! every wait is bounded, and a guard stops the daemon even when a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{closed_port, eventually, free_port, llama, Env};
use flm_cli::process::pid_alive;
use flm_testkit::llama::TinyModel;
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(url: &str, key: &str) -> (u16, Value) {
    let resp = http().get(url).bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn chat(base: &str, key: &str, model: &str, prompt: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 5}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

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

fn model_ids(models: &Value) -> Vec<String> {
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_lifecycle_with_real_engines() {
    let server = llama(TinyModel::Chat);
    let (mut env, _vllm) = vllm_env().await;
    env.set("LLAMA_CPP_PORT", &server.port().to_string());
    let _guard = env.guard();

    // Nothing runs yet.
    let status = env.flm(&["proxy", "status"]).await.ok();
    assert_eq!(status, json!({"daemon": null, "proxies": []}));

    let port = free_port();
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    assert_eq!(started["status"], "running");
    assert_eq!(started["mode"], "local-http");
    assert_eq!(started["port"], port);
    assert_eq!(started["listen_addr"], format!("127.0.0.1:{port}"));
    assert_eq!(
        started["endpoints"]["localhost"],
        format!("http://localhost:{port}")
    );
    assert_eq!(
        started["egress"],
        json!({"mode": "direct", "fail_open": false})
    );
    let pid = started["pid"].as_u64().unwrap() as u32;
    assert!(pid_alive(pid));
    assert_eq!(env.state().unwrap()["pid"], pid);
    // First run: a key was created and is shown (once).
    let key = started["api_key"]["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("flm_"), "{started}");
    assert_eq!(started["api_key"]["label"], "default");

    // The key works; every engine's models are listed with flm:// ids.
    let base = format!("http://127.0.0.1:{port}");
    let (code, models) = get(&format!("{base}/v1/models"), &key).await;
    assert_eq!(code, 200, "{models}");
    let ids = model_ids(&models);
    for want in [
        "flm://vllm-1/test-model",
        "flm://llamacpp-default/tiny-llama",
    ] {
        assert!(ids.iter().any(|i| i == want), "{want} missing in {ids:?}");
    }
    let (code, answer) = chat(&base, &key, "flm://vllm-1/test-model", "hi").await;
    assert_eq!(code, 200, "{answer}");
    assert!(answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello from vllm test-model"));
    let (code, answer) = chat(&base, &key, "flm://llamacpp-default/tiny-llama", "hi").await;
    assert_eq!(code, 200, "{answer}");
    let (code, _) = get(&format!("{base}/v1/models"), "flm_nope").await;
    assert_eq!(code, 401);

    // Status shows the same proxy.
    let status = env.flm(&["proxy", "status"]).await.ok();
    assert_eq!(status["daemon"]["pid"], pid);
    let proxies = status["proxies"].as_array().unwrap();
    assert_eq!(proxies.len(), 1, "{status}");
    assert_eq!(proxies[0]["port"], port);
    assert_eq!(proxies[0]["pid"], pid);
    assert_eq!(proxies[0]["mode"], "local-http");
    let text = env.flm(&["--format", "text", "proxy", "status"]).await;
    assert!(
        text.stdout.contains("PORT") && text.stdout.contains(&port.to_string()),
        "{}",
        text.stdout
    );

    // Same port again: refused, and no second key appears.
    let msg = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .err("PROXY_ALREADY_RUNNING", 1);
    assert!(msg.contains(&port.to_string()), "{msg}");
    // A port held by another program.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap().port();
    let msg = env
        .flm(&["proxy", "start", "--port", &held.to_string()])
        .await
        .err("PROXY_PORT_IN_USE", 1);
    assert!(msg.contains(&held.to_string()), "{msg}");
    drop(holder);
    // The daemon still serves the first proxy.
    assert_eq!(get(&format!("{base}/v1/models"), &key).await.0, 200);

    // A second proxy in the same daemon; the key is not shown again.
    let port2 = free_port();
    let second = env
        .flm(&["proxy", "start", "--port", &port2.to_string()])
        .await
        .ok();
    assert_eq!(second["pid"], pid, "one daemon hosts both");
    assert!(second.get("api_key").is_none(), "{second}");

    // flm chat through the proxy, with the daemon's own key.
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://llamacpp-default/tiny-llama",
            "--prompt",
            "hi",
            "--max-tokens",
            "5",
        ])
        .await;
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.ends_with('\n'));
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/test-model",
            "--prompt",
            "hi",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "Hello from vllm test-model: you said hi.\n");
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/test-model",
            "--prompt",
            "hi there",
            "--stream",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Hello from vllm test-model: you said hi there.\n"
    );
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://llamacpp-default/tiny-llama",
            "--prompt",
            "hi",
            "--max-tokens",
            "3",
            "--stream",
            "--json",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in out.stdout.lines() {
        let chunk: Value = serde_json::from_str(line).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk", "{line}");
    }
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/test-model",
            "--prompt",
            "hi",
            "--json",
            "--port",
            &port2.to_string(),
            "--api-key",
            &key,
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json["object"], "chat.completion");
    // Proxy errors keep the proxy's code.
    let msg = env
        .flm(&["chat", "--model", "flm://vllm-1/nope", "--prompt", "hi"])
        .await
        .err("chat_error", 1);
    assert!(msg.contains("nope"), "{msg}");
    env.flm(&[
        "chat",
        "--model",
        "flm://vllm-1/test-model",
        "--prompt",
        "hi",
        "--api-key",
        "flm_wrong",
    ])
    .await
    .err("invalid_api_key", 1);

    // Stop one, then the rest: the daemon goes away with the last one.
    let stopped = env
        .flm(&["proxy", "stop", "--port", &port2.to_string()])
        .await
        .ok();
    assert_eq!(stopped["stopped"][0]["port"], port2);
    assert!(pid_alive(pid), "the daemon still hosts a proxy");
    env.flm(&["proxy", "stop", "--port", &port2.to_string()])
        .await
        .err("PROXY_NOT_RUNNING", 1);
    let stopped = env.flm(&["proxy", "stop"]).await.ok();
    assert_eq!(stopped["stopped"][0]["port"], port);
    assert!(!pid_alive(pid), "the daemon exited");
    assert!(!env.state_file().exists());
    assert_eq!(
        env.flm(&["proxy", "status"]).await.ok(),
        json!({"daemon": null, "proxies": []})
    );
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "port released"
    );
    let msg = env
        .flm(&["proxy", "stop"])
        .await
        .err("PROXY_NOT_RUNNING", 1);
    assert!(msg.contains("flm proxy start"), "{msg}");
    env.flm(&["chat", "--model", "x", "--prompt", "hi"])
        .await
        .err("PROXY_NOT_RUNNING", 1);

    // The daemon logged as JSON lines.
    let log = std::fs::read_to_string(env.data_dir().join("logs").join("proxy.log")).unwrap();
    assert!(log
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    assert!(log.contains("proxy daemon ready") && log.contains("proxy daemon stopped"));
    assert!(!log.contains(&key), "keys never reach the log");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&env.data_dir().join("logs")), 0o700);
        assert_eq!(mode(&env.data_dir().join("logs").join("proxy.log")), 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_lifecycle_and_immediate_revocation() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();
    assert_eq!(
        env.flm(&["api-keys", "list"]).await.ok(),
        json!({"keys": []})
    );
    let created = env
        .flm(&["api-keys", "create", "--label", "laptop"])
        .await
        .ok();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("key_"));
    assert_eq!(created["label"], "laptop");
    assert!(created["created_at"].is_string());

    // A key exists: the first start creates none.
    let port = free_port();
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    assert!(started.get("api_key").is_none(), "{started}");
    let models = format!("http://127.0.0.1:{port}/v1/models");
    assert_eq!(get(&models, &key).await.0, 200);

    // A key created while the proxy runs works at once.
    let second = env.flm(&["api-keys", "create", "--label", "ci"]).await.ok();
    let key2 = second["key"].as_str().unwrap().to_owned();
    assert_eq!(get(&models, &key2).await.0, 200);

    // Listing shows metadata only.
    let out = env.flm(&["api-keys", "list"]).await;
    assert!(!out.stdout.contains(&key) && !out.stdout.contains(&key2));
    let list = out.ok();
    assert_eq!(list["keys"].as_array().unwrap().len(), 2);
    assert_eq!(list["keys"][0]["revoked"], false);

    // Revocation: refused within 3 s (in fact at once).
    let revoked_at = Instant::now();
    let r = env.flm(&["api-keys", "revoke", &id]).await.ok();
    assert_eq!(r["revoked"], true);
    loop {
        if get(&models, &key).await.0 == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "revoked key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&models, &key2).await.0, 200, "other keys unaffected");
    let list = env.flm(&["api-keys", "list"]).await.ok();
    let entry = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["revoked"], true);
    assert!(entry["revoked_at"].is_string());

    // Rotation: old key refused, new one works, label copied.
    let id2 = second["id"].as_str().unwrap();
    let rotated = env.flm(&["api-keys", "rotate", id2]).await.ok();
    assert_eq!(rotated["old_key_id"], id2);
    assert_eq!(rotated["label"], "ci");
    let key3 = rotated["key"].as_str().unwrap();
    assert_eq!(get(&models, key3).await.0, 200);
    assert_eq!(get(&models, &key2).await.0, 401);

    // Precise errors.
    let msg = env
        .flm(&["api-keys", "revoke", "key_0000000000000000"])
        .await
        .err("API_KEY_NOT_FOUND", 1);
    assert!(msg.contains("key_0000000000000000"), "{msg}");
    env.flm(&["api-keys", "rotate", "key_nope"])
        .await
        .err("API_KEY_NOT_FOUND", 1);
    env.flm(&["api-keys", "create", "--label", "  "])
        .await
        .err("INVALID_ARGUMENT", 1);
    let text = env
        .flm(&["--format", "text", "api-keys", "create", "--label", "t"])
        .await;
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("shown once"), "{}", text.stdout);

    env.flm(&["proxy", "stop"]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_key_is_shown_once_in_text_and_failed_starts_leave_nothing() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();

    // A failed first start: no daemon left, and the unseen key is not valid.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap().port();
    env.flm(&["proxy", "start", "--port", &held.to_string()])
        .await
        .err("PROXY_PORT_IN_USE", 1);
    assert!(!env.state_file().exists(), "the fresh daemon went away");
    let keys = env.flm(&["api-keys", "list"]).await.ok();
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revoked"] == true),
        "{keys}"
    );
    drop(holder);

    // The default port comes from the `proxy.port` setting.
    let port = free_port();
    env.flm(&["config", "set", "proxy.port", &port.to_string()])
        .await
        .ok();
    let out = env.flm(&["--format", "text", "proxy", "start"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("FLM proxy running on http://localhost:{port}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&format!("http://localhost:{port}/v1")));
    let key_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Your API key (shown once): "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let key = key_line.rsplit(' ').next().unwrap();
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/v1/models"), key)
            .await
            .0,
        200
    );

    // Unsupported modes and bad addresses are refused before anything starts.
    let msg = env
        .flm(&["proxy", "start", "--port", "1", "--mode", "https-acme"])
        .await
        .err("PROXY_INVALID_CONFIG", 1);
    assert!(msg.contains("--acme-email"), "{msg}");
    let msg = env
        .flm(&[
            "proxy",
            "start",
            "--port",
            "1",
            "--mode",
            "https-acme",
            "--acme-email",
            "ops@example.com",
            "--acme-domain",
            "api.example.com",
            "--challenge",
            "dns-01",
        ])
        .await
        .err("PROXY_INVALID_CONFIG", 1);
    assert!(
        msg.contains("dns-01") && msg.contains("--dns-hook"),
        "{msg}"
    );
    // A wildcard needs dns-01.
    let msg = env
        .flm(&[
            "proxy",
            "start",
            "--port",
            "1",
            "--mode",
            "https-acme",
            "--acme-email",
            "ops@example.com",
            "--acme-domain",
            "*.example.com",
        ])
        .await
        .err("PROXY_INVALID_CONFIG", 1);
    assert!(
        msg.contains("wildcard") && msg.contains("--challenge dns-01"),
        "{msg}"
    );
    // The propagation wait is bounded (clap: 0..=120).
    env.flm(&[
        "proxy",
        "start",
        "--mode",
        "https-acme",
        "--challenge",
        "dns-01",
        "--dns-hook",
        "/bin/true",
        "--dns-propagation-wait",
        "121",
    ])
    .await
    .err("INVALID_ARGUMENT", 1);
    env.flm(&["proxy", "start", "--bind", "not-an-ip"])
        .await
        .err("PROXY_INVALID_CONFIG", 1);
    env.flm(&["proxy", "start", "--mode", "ftp"])
        .await
        .err("INVALID_ARGUMENT", 1);

    let text = env.flm(&["--format", "text", "proxy", "stop"]).await;
    assert_eq!(text.code, 0);
    assert!(
        text.stdout.contains(&format!("port {port}")),
        "{}",
        text.stdout
    );
    let text = env.flm(&["--format", "text", "proxy", "status"]).await;
    assert!(
        text.stdout.contains("No proxy is running"),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_state_file_is_detected_and_replaced() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();
    // A dead pid: a process that already exited.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = json!({
        "pid": dead_pid, "port": closed_port(), "token": "0".repeat(64),
        "cli_key": "flm_0000000000000000_00000000000000000000000000000000",
        "started_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    });
    std::fs::create_dir_all(env.state_file().parent().unwrap()).unwrap();
    std::fs::write(env.state_file(), stale.to_string()).unwrap();
    assert_eq!(
        env.flm(&["proxy", "status"]).await.ok(),
        json!({"daemon": null, "proxies": []})
    );
    assert!(!env.state_file().exists(), "stale file removed");

    // A live pid (this test) but nothing on the admin port: stale too.
    let stale = json!({
        "pid": std::process::id(), "port": closed_port(), "token": "0".repeat(64),
        "cli_key": "x", "started_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    });
    std::fs::write(env.state_file(), stale.to_string()).unwrap();
    let port = free_port();
    let out = env
        .flm(&[
            "--format",
            "text",
            "proxy",
            "start",
            "--port",
            &port.to_string(),
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("stale"), "{}", out.stderr);
    let state = env.state().unwrap();
    assert_ne!(state["pid"], std::process::id());
    assert_eq!(state["token"].as_str().unwrap().len(), 64);
    let status = env.flm(&["proxy", "status"]).await.ok();
    assert_eq!(status["proxies"][0]["port"], port);
    env.flm(&["proxy", "stop"]).await.ok();
    assert!(!env.state_file().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_mode_serves_and_stops_on_sigterm() {
    let (env, _vllm) = vllm_env().await;
    let port = free_port();
    let mut child = env.spawn_flm(&["proxy", "start", "--no-daemon", "--port", &port.to_string()]);
    let pid = child.id().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stderr.next_line().await.unwrap() {
                Some(l) if l.starts_with("listening on ") => return l,
                Some(_) => continue,
                None => panic!("flm exited before listening"),
            }
        }
    })
    .await
    .expect("listening within 20 s");
    assert_eq!(line, format!("listening on http://127.0.0.1:{port}"));
    let started: Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(5), stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(started["data"]["status"], "running");
    assert_eq!(started["data"]["pid"], pid);
    assert_eq!(started["data"]["daemon"], false);
    let key = started["data"]["api_key"]["key"].as_str().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(get(&format!("{base}/v1/models"), key).await.0, 200);
    let (code, answer) = chat(&base, key, "flm://vllm-1/test-model", "hi").await;
    assert_eq!(code, 200, "{answer}");
    // flm chat reaches it with --port and --api-key.
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/test-model",
            "--prompt",
            "yo",
            "--port",
            &port.to_string(),
            "--api-key",
            key,
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "Hello from vllm test-model: you said yo.\n");
    // No daemon was involved.
    assert!(env.state().is_none());

    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits within 15 s of SIGTERM")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    eventually("port released", Duration::from_secs(5), || {
        TcpListener::bind(("127.0.0.1", port)).is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_checks_images_locally() {
    let (env, vllm) = vllm_env().await;
    let _guard = env.guard();
    let dir = env.dir.path();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not an image").unwrap();
    let msg = env
        .flm(&[
            "chat",
            "--model",
            "m",
            "--prompt",
            "p",
            "--image",
            text.to_str().unwrap(),
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("not a PNG, JPEG or WebP"), "{msg}");
    let big = dir.join("big.png");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(8 * 1024 * 1024 + 1).unwrap();
    let msg = env
        .flm(&[
            "chat",
            "--model",
            "m",
            "--prompt",
            "p",
            "--image",
            big.to_str().unwrap(),
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("at most 8 MB"), "{msg}");
    let missing = dir.join("missing.png");
    let msg = env
        .flm(&[
            "chat",
            "--model",
            "m",
            "--prompt",
            "p",
            "--image",
            missing.to_str().unwrap(),
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("missing.png"), "{msg}");

    // A real PNG header reaches the engine as an image_url data URL part.
    let png = dir.join("dot.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    let port = free_port();
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/test-model",
            "--prompt",
            "look",
            "--image",
            png.to_str().unwrap(),
            "--temperature",
            "0.2",
            "--max-tokens",
            "50",
        ])
        .await;
    assert_eq!(out.code, 0, "stdout {} stderr {}", out.stdout, out.stderr);
    let body = vllm.control().last_chat_body().unwrap();
    let parts = body["messages"][0]["content"].as_array().unwrap();
    assert_eq!(parts[0], json!({"type": "text", "text": "look"}));
    assert!(parts[1]["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,iVBORw0KGgo"));
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 50);
    env.flm(&[
        "chat",
        "--model",
        "m",
        "--prompt",
        "p",
        "--temperature",
        "3",
    ])
    .await
    .err("INVALID_ARGUMENT", 1);
    env.flm(&["proxy", "stop"]).await.ok();
}

#[tokio::test]
async fn missing_daemon_binary_gives_install_guidance() {
    let env = Env::new();
    // A copy of flm alone in a directory, with an empty PATH.
    let lonely = env.dir.path().join("lonely");
    std::fs::create_dir_all(&lonely).unwrap();
    let flm = lonely.join("flm");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_flm"), &flm).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_flm"), &flm).unwrap();
    }
    let out = tokio::process::Command::new(&flm)
        .args(["proxy", "start", "--port", &free_port().to_string()])
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "PROXY_DAEMON_ERROR");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("flm-proxy") && msg.contains("same directory"),
        "{msg}"
    );
    // The key created for the first run was revoked again.
    let keys = env.flm(&["api-keys", "list"]).await.ok();
    assert!(keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["revoked"] == true));
}

#[tokio::test]
async fn daemon_binary_explains_itself() {
    let bin = env!("CARGO_BIN_EXE_flm-proxy");
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("flm-proxy "));
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--daemon"));
    let out = std::process::Command::new(bin).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flm proxy start"));
}

fn sqlite3(db: &std::path::Path, sql: &str) -> bool {
    match std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .status()
    {
        Ok(s) => {
            assert!(s.success(), "sqlite3 {sql}");
            true
        }
        Err(_) => {
            eprintln!("sqlite3 is not installed; skipping");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_keys_still_allow_a_local_proxy() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();
    env.flm(&["api-keys", "list"]).await.ok();
    // Pretend a newer FLM migrated security.db: it opens read-only.
    if !sqlite3(
        &env.data_dir().join("security.db"),
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99990101000000, 'from the future', '2099-01-01', 1, x'00', 0);",
    ) {
        return;
    }
    let msg = env
        .flm(&["api-keys", "create", "--label", "x"])
        .await
        .err("READ_ONLY_MODE", 1);
    assert!(msg.contains("read-only"), "{msg}");
    env.flm(&["api-keys", "revoke", "key_0000000000000000"])
        .await
        .err("READ_ONLY_MODE", 1);
    assert_eq!(
        env.flm(&["api-keys", "list"]).await.ok(),
        json!({"keys": []})
    );
    // No key can be created, so none is shown; the machine's own key still works.
    let port = free_port();
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    assert!(started.get("api_key").is_none(), "{started}");
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/test-model",
            "--prompt",
            "ok",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "Hello from vllm test-model: you said ok.\n");
    env.flm(&["proxy", "stop"]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_cannot_start_reports_why() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();
    env.flm(&["api-keys", "create", "--label", "k"]).await.ok();
    if !sqlite3(
        &env.data_dir().join("security.db"),
        "UPDATE security_policies SET policy_json = '{broken' WHERE id = 'default';",
    ) {
        return;
    }
    let started = Instant::now();
    let msg = env
        .flm(&["proxy", "start", "--port", &free_port().to_string()])
        .await
        .err("POLICY_INVALID", 1);
    assert!(started.elapsed() < Duration::from_secs(8), "fails fast");
    assert!(
        msg.contains("not valid JSON") && msg.contains("proxy.log"),
        "{msg}"
    );
    assert!(!env.state_file().exists());
    // The foreground mode refuses the same way.
    env.flm(&[
        "proxy",
        "start",
        "--no-daemon",
        "--port",
        &free_port().to_string(),
    ])
    .await
    .err("POLICY_INVALID", 1);
}

/// `--mode dev-selfsigned` through the daemon: HTTPS on port+1, the HTTP port
/// redirects, and `flm chat` trusts the certificate the proxy reports.
#[tokio::test]
async fn https_dev_selfsigned_through_the_daemon() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();
    let mut port = free_port();
    while TcpListener::bind(("127.0.0.1", port + 1)).is_err() {
        port = free_port();
    }
    let data = env
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
    assert_eq!(data["https_port"], port + 1, "{data}");
    let tls = &data["tls"];
    let ca = tls["trust_cert_path"].as_str().unwrap().to_owned();
    assert!(tls["fingerprint_sha256"].as_str().unwrap().contains(':'));
    let key = data["api_key"]["key"].as_str().unwrap().to_owned();
    let pem = std::fs::read(&ca).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{}/v1/models", port + 1))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("http://127.0.0.1:{port}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    let out = env
        .flm(&[
            "chat",
            "--model",
            "flm://vllm-1/test-model",
            "--prompt",
            "hello",
        ])
        .await;
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Hello from vllm"), "{}", out.stdout);
    env.flm(&["proxy", "stop"]).await.ok();
}

/// `flm security install-ca --dry-run` creates the local CA once and reports the
/// exact steps without touching the trust store.
#[tokio::test]
async fn install_ca_dry_run_changes_nothing() {
    let env = Env::new();
    let data = env.flm(&["security", "install-ca", "--dry-run"]).await.ok();
    assert_eq!(data["dry_run"], true);
    let ca = data["ca_cert_path"].as_str().unwrap().to_owned();
    assert!(std::path::Path::new(&ca).is_file());
    assert!(!data["steps"].as_array().unwrap().is_empty(), "{data}");
    let again = env.flm(&["security", "install-ca", "--dry-run"]).await.ok();
    assert_eq!(
        again["ca_cert_path"], data["ca_cert_path"],
        "the CA is created once"
    );
    let msg = env
        .flm(&[
            "security",
            "install-ca",
            "--cert-path",
            "/nonexistent/ca.pem",
            "--dry-run",
        ])
        .await
        .err("PROXY_CERT_FAILED", 1);
    assert!(msg.contains("/nonexistent/ca.pem"), "{msg}");
}

/// `--egress-mode socks5` through the daemon with Debian's real `microsocks`: a remote
/// engine (an emulator on this machine's non-loopback address) is reached through the
/// SOCKS server; status shows the egress; an unreachable endpoint refuses the start
/// (fail closed) unless `--egress-fail-open`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_through_socks5_via_the_daemon() {
    let lan = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    if lan.is_loopback() || lan.is_unspecified() {
        eprintln!("skipped: this machine has no non-loopback address");
        return;
    }
    let remote = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions {
            bind: lan,
            ..EmulatorOptions::default()
        },
    )
    .await
    .unwrap();
    let ms_port = free_port();
    let mut ms = tokio::process::Command::new("microsocks")
        .args(["-i", "127.0.0.1", "-p", &ms_port.to_string()])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("microsocks is installed");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let log = log.clone();
        // microsocks logs each relayed connection on stderr.
        let out = ms.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.lock().unwrap().push_str(&format!("{l}\n"));
            }
        });
    }
    eventually("microsocks listens", Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", ms_port)).is_ok()
    })
    .await;
    let env = Env::new();
    env.flm(&[
        "engines",
        "add",
        "--kind",
        "vllm",
        "--url",
        &remote.base_url(),
        "--id",
        "vllm-remote",
    ])
    .await
    .ok();
    let _guard = env.guard();
    let endpoint = format!("127.0.0.1:{ms_port}");
    let port = free_port();
    let started = env
        .flm(&[
            "proxy",
            "start",
            "--port",
            &port.to_string(),
            "--egress-mode",
            "socks5",
            "--socks5-endpoint",
            &endpoint,
        ])
        .await
        .ok();
    assert_eq!(
        started["egress"],
        json!({"mode": "socks5", "socks5_endpoint": endpoint, "fail_open": false, "url": format!("socks5://{endpoint}")}),
        "{started}"
    );
    let key = started["api_key"]["key"].as_str().unwrap().to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = chat(&base, &key, "flm://vllm-remote/test-model", "hi").await;
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{code} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let target = format!("connected to {}", remote.addr());
    eventually(
        "microsocks relays the engine",
        Duration::from_secs(5),
        || log.lock().unwrap().contains(&target),
    )
    .await;
    let status = env.flm(&["proxy", "status"]).await.ok();
    assert_eq!(
        status["proxies"][0]["egress"]["url"],
        format!("socks5://{endpoint}"),
        "{status}"
    );
    let text = env.flm(&["--format", "text", "proxy", "status"]).await;
    assert!(
        text.stdout.contains(&format!("socks5://{endpoint}")),
        "{}",
        text.stdout
    );
    env.flm(&["proxy", "stop"]).await.ok();

    // https-acme + tor switches to local-http unless --force (spec 30-proxy §11).
    let started = env
        .flm(&[
            "proxy",
            "start",
            "--port",
            &free_port().to_string(),
            "--mode",
            "https-acme",
            "--acme-email",
            "ops@example.com",
            "--acme-domain",
            "api.example.com",
            "--egress-mode",
            "tor",
            "--socks5-endpoint",
            &endpoint,
        ])
        .await
        .ok();
    assert_eq!(started["mode"], "local-http", "{started}");
    assert_eq!(started["egress"]["url"], format!("tor://{endpoint}"));
    env.flm(&["proxy", "stop"]).await.ok();

    // Fail closed: nothing listens on the endpoint → exit 1, nothing left running.
    let dead = format!("127.0.0.1:{}", closed_port());
    let msg = env
        .flm(&[
            "proxy",
            "start",
            "--port",
            &free_port().to_string(),
            "--egress-mode",
            "socks5",
            "--socks5-endpoint",
            &dead,
        ])
        .await
        .err("PROXY_INVALID_CONFIG", 1);
    assert!(msg.contains("--egress-fail-open"), "{msg}");
    assert!(!env.state_file().exists());
    if std::net::TcpStream::connect("127.0.0.1:9050").is_err() {
        let msg = env
            .flm(&["proxy", "start", "--egress-mode", "tor"])
            .await
            .err("PROXY_INVALID_CONFIG", 1);
        assert!(
            msg.contains("tor://127.0.0.1:9050") && msg.contains("start Tor"),
            "{msg}"
        );
    }
    env.flm(&["proxy", "start", "--egress-mode", "socks5"])
        .await
        .err("PROXY_INVALID_CONFIG", 1);

    // Fail open: starts with direct egress and says so.
    let port = free_port();
    let started = env
        .flm(&[
            "proxy",
            "start",
            "--port",
            &port.to_string(),
            "--egress-mode",
            "socks5",
            "--socks5-endpoint",
            &dead,
            "--egress-fail-open",
        ])
        .await
        .ok();
    assert!(
        started["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("direct")),
        "{started}"
    );
    assert_eq!(started["egress"]["mode"], "direct", "{started}");
    env.flm(&["proxy", "stop"]).await.ok();
    ms.kill().await.ok();
}

/// `--mode https-acme` through the daemon with an ACME directory that does not answer
/// (`FLM_ACME_DIRECTORY`): the proxy falls back to dev-selfsigned, keeps serving HTTPS
/// and reports the ACME error in `last_error` (start output and status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_acme_falls_back_to_dev_selfsigned_when_the_ca_is_down() {
    let (mut env, _vllm) = vllm_env().await;
    let dead = closed_port();
    env.set(
        "FLM_ACME_DIRECTORY",
        &format!("https://127.0.0.1:{dead}/dir"),
    );
    let _guard = env.guard();
    let mut port = free_port();
    while TcpListener::bind(("127.0.0.1", port + 1)).is_err() {
        port = free_port();
    }
    let data = env
        .flm(&[
            "proxy",
            "start",
            "--mode",
            "https-acme",
            "--acme-email",
            "ops@example.com",
            "--acme-domain",
            "api.example.com",
            "--port",
            &port.to_string(),
        ])
        .await
        .ok();
    assert_eq!(data["mode"], "dev-selfsigned", "{data}");
    assert_eq!(data["https_port"], port + 1, "{data}");
    let err = data["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("ACME") && err.contains(&format!("127.0.0.1:{dead}")),
        "{data}"
    );
    let status = env.flm(&["proxy", "status"]).await.ok();
    assert_eq!(status["proxies"][0]["last_error"], err, "{status}");
    assert_eq!(status["proxies"][0]["acme_domain"], "api.example.com");
    let pem = std::fs::read(data["tls"]["trust_cert_path"].as_str().unwrap()).unwrap();
    let r = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
        .get(format!("https://localhost:{}/health", port + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.flm(&["proxy", "stop"]).await.ok();
}
