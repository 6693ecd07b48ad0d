//! A running proxy follows changes made outside it, whatever way it was started
//! (issue #14, point 9): `flm security ip-blocklist add|unblock`, `flm api-keys
//! create|revoke`, `flm security policy set`, and hand-written SQL from another
//! process (`sqlite3`), each applied within 1 s by a `flm proxy start --no-daemon`
//! child and by the daemon. Also the admin API's guard (point 10), `flm chat`'s key
//! sources (point 10) and plain log fields (point 11).
//!
//! Real `flm`/`flm-proxy` binaries, a vLLM emulator, real sockets on 127.0.0.0/8:
//! a client bound to 127.0.0.2 presents a second address. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{free_port, Env, Foreground};
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The bound of every "takes effect" wait (the issue's requirement).
const WITHIN: Duration = Duration::from_secs(1);

/// A client whose connections come from `source` (any 127/8 address works on lo).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn status(client: &reqwest::Client, url: &str, key: &str) -> u16 {
    client
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls until a request answers `want`; fails if that takes longer than [`WITHIN`]
/// (counted from `since`, the end of the command that made the change).
async fn answers_within(
    what: &str,
    since: Instant,
    client: &reqwest::Client,
    url: &str,
    key: &str,
    want: u16,
) -> Duration {
    loop {
        let got = status(client, url, key).await;
        let elapsed = since.elapsed();
        if got == want {
            eprintln!("{what}: {want} after {} ms", elapsed.as_millis());
            return elapsed;
        }
        assert!(
            elapsed <= WITHIN,
            "{what}: still {got} (want {want}) {} ms after the change",
            elapsed.as_millis()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An environment with a vLLM emulator registered as an engine.
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

/// `sqlite3` on `security.db`, as another process writing by hand.
fn sql(env: &Env, statement: &str) -> Instant {
    let out = std::process::Command::new("sqlite3")
        .args(["-cmd", ".timeout 5000"])
        .arg(env.data_dir().join("security.db"))
        .arg(statement)
        .output()
        .expect("sqlite3 runs (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "sqlite3 {statement}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Instant::now()
}

/// Runs `flm args` and returns when it finished (the moment the change is made).
async fn change(env: &Env, args: &[&str]) -> (Value, Instant) {
    let out = env.flm(args).await;
    let at = Instant::now();
    (out.ok(), at)
}

/// The whole scenario against a proxy at `base` whose key `(key_id, key)` is valid.
async fn follows_every_change(env: &Env, base: &str, key_id: &str, key: &str) {
    let models = format!("{base}/v1/models");
    let one = client_from("127.0.0.1");
    let two = client_from("127.0.0.2");
    let three = client_from("127.0.0.3");
    assert_eq!(
        status(&two, &models, key).await,
        200,
        "127.0.0.2 before the ban"
    );

    // A ban by the CLI, then its removal.
    let (_, at) = change(env, &["security", "ip-blocklist", "add", "127.0.0.2"]).await;
    answers_within("ip-blocklist add", at, &two, &models, key, 403).await;
    assert_eq!(
        status(&one, &models, key).await,
        200,
        "only the banned address"
    );
    let (_, at) = change(env, &["security", "ip-blocklist", "unblock", "127.0.0.2"]).await;
    answers_within("ip-blocklist unblock", at, &two, &models, key, 200).await;

    // A new key works at once (looked up before a 401), a revoked one stops.
    let (k, _) = change(env, &["api-keys", "create", "--label", "fresh"]).await;
    let fresh = k["key"].as_str().unwrap();
    assert_eq!(
        status(&one, &models, fresh).await,
        200,
        "a key created a moment ago works on the first request"
    );
    let (_, at) = change(env, &["api-keys", "revoke", k["id"].as_str().unwrap()]).await;
    answers_within("api-keys revoke", at, &one, &models, fresh, 401).await;

    // A policy change: an allow list that leaves 127.0.0.1 out, then none.
    let (_, at) = change(
        env,
        &[
            "security",
            "policy",
            "set",
            "--json",
            r#"{"ip_whitelist":["127.0.0.2/32"]}"#,
        ],
    )
    .await;
    answers_within("policy set (allow list)", at, &one, &models, key, 403).await;
    assert_eq!(status(&two, &models, key).await, 200, "the allowed address");
    let (_, at) = change(env, &["security", "policy", "set", "--json", "{}"]).await;
    answers_within("policy set (no allow list)", at, &one, &models, key, 200).await;

    // Another process writes SQL by hand: a ban, its removal, a policy, a revocation.
    let at = sql(
        env,
        "INSERT INTO ip_blocklist (ip, failure_count, first_failure_at, blocked_until, permanent_block, last_attempt) \
         VALUES ('127.0.0.3', 0, strftime('%Y-%m-%dT%H:%M:%fZ','now'), NULL, 1, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
    );
    answers_within(
        "SQL insert into ip_blocklist",
        at,
        &three,
        &models,
        key,
        403,
    )
    .await;
    let at = sql(env, "DELETE FROM ip_blocklist WHERE ip = '127.0.0.3'");
    answers_within(
        "SQL delete from ip_blocklist",
        at,
        &three,
        &models,
        key,
        200,
    )
    .await;
    let at = sql(
        env,
        "UPDATE security_policies SET policy_json = '{\"ip_whitelist\":[\"127.0.0.2/32\"]}', \
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now','+1 second') WHERE id = 'default'",
    );
    answers_within("SQL policy update", at, &one, &models, key, 403).await;
    let at = sql(
        env,
        "UPDATE security_policies SET policy_json = '{}', \
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now','+2 seconds') WHERE id = 'default'",
    );
    answers_within("SQL policy reset", at, &one, &models, key, 200).await;
    let at = sql(
        env,
        &format!(
            "UPDATE api_keys SET revoked_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = '{key_id}'"
        ),
    );
    answers_within("SQL key revocation", at, &one, &models, key, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreground_proxy_applies_cli_and_sql_changes_within_a_second() {
    let (env, _vllm) = vllm_env().await;
    let fg = Foreground::start(&env).await;
    follows_every_change(&env, &fg.base, &fg.key_id, &fg.key).await;
    // Point 11 on the way: the proxy's JSON log lines carry plain values.
    let lines = fg.stderr.lock().unwrap().clone();
    let auth = lines
        .iter()
        .find(|l| l.contains("authentication failed"))
        .unwrap_or_else(|| panic!("an authentication failure was logged: {lines:#?}"));
    assert!(auth.contains(r#""client_ip":"127.0.0.1""#), "{auth}");
    assert!(lines.iter().all(|l| !l.contains("Some(")), "{lines:#?}");
    fg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_applies_cli_and_sql_changes_within_a_second() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();
    let (k, _) = change(&env, &["api-keys", "create", "--label", "app"]).await;
    let port = free_port();
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let base = format!("http://127.0.0.1:{port}");
    follows_every_change(
        &env,
        &base,
        k["id"].as_str().unwrap(),
        k["key"].as_str().unwrap(),
    )
    .await;
    env.flm(&["proxy", "stop"]).await.ok();
}

/// Point 11: a request's log line in the daemon's JSON log has the plain address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_log_fields_are_plain_values() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();
    let port = free_port();
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let url = format!("http://127.0.0.1:{port}/v1/models");
    let wrong = "flm_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    assert_eq!(status(&client_from("127.0.0.1"), &url, wrong).await, 401);
    let log = env.data_dir().join("logs").join("proxy.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("authentication failed")) {
            assert!(
                !text.contains("Some("),
                "debug formatting in the log:\n{text}"
            );
            break l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no authentication failure logged:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["client_ip"], "127.0.0.1", "{line}");
    env.flm(&["proxy", "stop"]).await.ok();
}

// ---------------------------------------------------------------------------------------
// point 10: the admin API's guard
// ---------------------------------------------------------------------------------------

/// A local address that is not loopback (the interface that routes outwards).
fn non_loopback_address() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_guard_refuses_strangers_but_never_the_real_token() {
    let (env, _vllm) = vllm_env().await;
    let _guard = env.guard();
    let port = free_port();
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let state = env.state().unwrap();
    let admin_port = state["port"].as_u64().unwrap();
    let token = state["token"].as_str().unwrap().to_owned();
    let url = format!("http://127.0.0.1:{admin_port}/admin/health");
    let http = client_from("127.0.0.1");
    let call = |token: String, host: Option<&'static str>| {
        let mut req = http.get(&url).bearer_auth(token);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };

    let (s, b) = call(token.clone(), None).await;
    assert_eq!((s, &b["status"]), (200, &Value::from("ok")), "{b}");
    // Wrong Host (DNS rebinding), even with the right token.
    let (s, b) = call(token.clone(), Some("evil.example")).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{b}"
    );
    // Wrong token.
    let (s, b) = call("0".repeat(64), None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_admin_token")),
        "{b}"
    );
    // A local process hammering bad tokens gets locked out...
    let mut locked = false;
    for i in 0..12 {
        let (s, b) = call(format!("{i:064}"), None).await;
        match s {
            401 => {}
            429 => {
                assert_eq!(b["error"]["code"], "ip_blocked", "{b}");
                locked = true;
            }
            other => panic!("bad token #{i}: {other} {b}"),
        }
    }
    assert!(locked, "repeated bad tokens are locked out");
    // ...but the real token still works, and so does the CLI.
    let (s, b) = call(token.clone(), None).await;
    assert_eq!(s, 200, "the real token after a lockout: {b}");
    let st = env.flm(&["proxy", "status"]).await.ok();
    assert_eq!(st["proxies"][0]["port"], port, "{st}");
    let (s, _) = call("bad".into(), None).await;
    assert_eq!(s, 401, "a success resets the count");

    // A peer that is not loopback, even with the right token and Host.
    match non_loopback_address() {
        None => eprintln!("SKIPPED non-loopback peer: this machine has no non-loopback address"),
        Some(ip) => {
            let stranger = reqwest::Client::builder()
                .no_proxy()
                .local_address(ip)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            match stranger
                .get(&url)
                .bearer_auth(&token)
                .header("host", format!("127.0.0.1:{admin_port}"))
                .send()
                .await
            {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let b: Value = r.json().await.unwrap_or(Value::Null);
                    assert_eq!(
                        (s, b["error"]["code"].as_str()),
                        (403, Some("forbidden")),
                        "{b}"
                    );
                }
                Err(e) => eprintln!(
                    "SKIPPED non-loopback peer: cannot connect from {ip} to 127.0.0.1 ({e})"
                ),
            }
        }
    }
    env.flm(&["proxy", "stop"]).await.ok();
}

// ---------------------------------------------------------------------------------------
// point 10: `flm chat` reads the key from the environment, a file or standard input
// ---------------------------------------------------------------------------------------

/// `flm args` with `input` on standard input.
async fn flm_with_stdin(env: &Env, args: &[&str], input: &str) -> common::Out {
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    common::Out {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout,
    }
}

/// `flm chat` against the proxy on `port`, with `extra` arguments and `input` on
/// standard input.
async fn chat(env: &Env, port: &str, extra: &[&str], input: Option<&str>) -> common::Out {
    let mut args = vec![
        "chat",
        "--model",
        "flm://vllm-1/test-model",
        "--prompt",
        "hi",
        "--json",
        "--port",
        port,
    ];
    args.extend_from_slice(extra);
    match input {
        Some(i) => flm_with_stdin(env, &args, i).await,
        None => env.flm(&args).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_takes_the_key_from_env_file_or_stdin() {
    let (mut env, _vllm) = vllm_env().await;
    let fg = Foreground::start(&env).await;
    let port = fg.base.rsplit(':').next().unwrap().to_owned();
    let ok = |out: common::Out, how: &str| {
        assert_eq!(out.code, 0, "{how}: {} {}", out.stdout, out.stderr);
        assert_eq!(
            out.json["object"], "chat.completion",
            "{how}: {}",
            out.stdout
        );
        assert!(!out.stderr.contains(&fg.key), "{how}: the key was echoed");
    };
    let refused = |out: common::Out, how: &str, code: &str| {
        assert_ne!(out.code, 0, "{how}: {}", out.stdout);
        assert_eq!(
            out.json["error"]["code"], code,
            "{how}: {} {}",
            out.stdout, out.stderr
        );
    };

    // No key at all: a foreground proxy has no machine key.
    refused(
        chat(&env, &port, &[], None).await,
        "no key",
        "INVALID_ARGUMENT",
    );

    // A file (its first line), right, wrong, empty, missing.
    let file = env.dir.path().join("key.txt");
    std::fs::write(&file, format!("{}\n# comment\n", fg.key)).unwrap();
    let f = file.display().to_string();
    ok(
        chat(&env, &port, &["--api-key-file", &f], None).await,
        "--api-key-file",
    );
    let wrong = env.dir.path().join("wrong.txt");
    std::fs::write(
        &wrong,
        "flm_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345\n",
    )
    .unwrap();
    let w = wrong.display().to_string();
    refused(
        chat(&env, &port, &["--api-key-file", &w], None).await,
        "a wrong key file",
        "invalid_api_key",
    );
    let empty = env.dir.path().join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    let e = empty.display().to_string();
    refused(
        chat(&env, &port, &["--api-key-file", &e], None).await,
        "an empty key file",
        "INVALID_ARGUMENT",
    );
    refused(
        chat(&env, &port, &["--api-key-file", "/nonexistent/key"], None).await,
        "a missing key file",
        "INVALID_ARGUMENT",
    );

    // Standard input, both spellings.
    let line = format!("{}\n", fg.key);
    ok(
        chat(&env, &port, &["--api-key-stdin"], Some(&line)).await,
        "--api-key-stdin",
    );
    ok(
        chat(&env, &port, &["--api-key", "-"], Some(&line)).await,
        "--api-key -",
    );
    refused(
        chat(&env, &port, &["--api-key-stdin"], Some("")).await,
        "empty standard input",
        "INVALID_ARGUMENT",
    );

    // The environment.
    env.set("FLM_API_KEY", &fg.key);
    ok(chat(&env, &port, &[], None).await, "FLM_API_KEY");
    fg.stop().await;
}
