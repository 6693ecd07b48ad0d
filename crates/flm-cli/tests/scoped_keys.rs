//! Scoped and expiring API keys (issue 13), end to end: keys made with the real `flm`
//! binary, enforced by the real daemon over real sockets, in front of a real
//! llama-server (tiny chat model) and a vLLM emulator (a chat and an embedding model).
//! Covers: model scopes (200 on an allowed model, `403 model_not_allowed` on another,
//! `/v1/models` filtered), route scopes (`403 route_not_allowed`), expiry (refused
//! exactly like a revoked key), changes made while the daemon runs (applied within
//! about a second), precise errors for bad flag values, the audit rows of refusals,
//! and rotation keeping the limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::{Duration, Instant};

use common::{free_port, llama, Env};
use flm_testkit::llama::TinyModel;
use flm_testkit::{EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use serde_json::{json, Value};

const LLAMA: &str = "flm://llamacpp-default/tiny-llama";
const EMU_CHAT: &str = "flm://vllm-1/emu-chat";
const EMU_EMBED: &str = "flm://vllm-1/emu-embed";
/// "Within about a second" (the change poll runs every 250 ms).
const WITHIN: Duration = Duration::from_millis(1500);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(base: &str, path: &str, key: &str) -> (u16, Value) {
    let resp = http()
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn chat(base: &str, key: &str, model: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn embed(base: &str, key: &str, model: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/v1/embeddings"))
        .bearer_auth(key)
        .json(&json!({"model": model, "input": "hello"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn model_ids(models: &Value) -> Vec<String> {
    let mut ids: Vec<String> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `flm api-keys create` with extra flags: `(id, key, data)`.
async fn create(env: &Env, label: &str, extra: &[&str]) -> (String, String, Value) {
    let mut args = vec!["api-keys", "create", "--label", label];
    args.extend_from_slice(extra);
    let k = env.flm(&args).await.ok();
    (
        k["id"].as_str().unwrap().to_owned(),
        k["key"].as_str().unwrap().to_owned(),
        k,
    )
}

/// Polls `probe` until it returns `want`, failing after [`WITHIN`] from `since`.
async fn within<F, Fut>(what: &str, since: Instant, want: u16, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (u16, Value)>,
{
    loop {
        let (got, body) = probe().await;
        if got == want {
            eprintln!("{what}: {want} after {} ms", since.elapsed().as_millis());
            return;
        }
        assert!(
            since.elapsed() <= WITHIN,
            "{what}: still {got} {body} (want {want}) {} ms after the change",
            since.elapsed().as_millis()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `sqlite3` on `security.db`, as another process writing by hand; returns when done.
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

fn assert_error(body: &Value, code: &str, kind: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["request_id"].as_str().is_some(), "{body}");
}

/// Every audit row, newest first.
async fn audit_rows(env: &Env) -> Vec<Value> {
    env.flm(&[
        "--format",
        "json",
        "security",
        "audit-logs",
        "list",
        "--limit",
        "10000",
    ])
    .await
    .ok()
    .as_array()
    .unwrap()
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_and_expiring_keys_through_the_daemon() {
    let server = llama(TinyModel::Chat);
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([
            EmulatedModel::chat("emu-chat"),
            EmulatedModel::embedding("emu-embed"),
        ]),
    )
    .await
    .unwrap();
    let mut env = Env::new();
    env.set("LLAMA_CPP_PORT", &server.port().to_string());
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
    let _guard = env.guard();

    // A key stored before the scope migration (the schema is taken back to the one
    // before it, as an older FLM left it): the next command migrates the file, and
    // the key works unscoped, without expiry.
    let (_, unscoped, _) = create(&env, "all", &[]).await;
    sql(
        &env,
        "DROP INDEX idx_api_keys_expires_at; ALTER TABLE api_keys DROP COLUMN models; \
         ALTER TABLE api_keys DROP COLUMN routes; ALTER TABLE api_keys DROP COLUMN expires_at; \
         ALTER TABLE api_keys DROP COLUMN tpm; ALTER TABLE api_keys DROP COLUMN monthly_tokens; \
         DROP TABLE api_key_token_usage; \
         DELETE FROM _sqlx_migrations WHERE version = 20261206000100;",
    );
    let listed = env.flm(&["api-keys", "list"]).await.ok();
    assert_eq!(listed["keys"][0]["label"], "all", "{listed}");
    assert!(listed["keys"][0].get("models").is_none(), "{listed}");
    assert_eq!(listed["keys"][0]["expired"], false, "{listed}");

    // Keys made before the daemon starts.
    let (llama_id, llama_key, created) = create(
        &env,
        "llama-only",
        &["--models", "flm://llamacpp-default/*"],
    )
    .await;
    assert_eq!(created["models"], json!(["flm://llamacpp-default/*"]));
    assert!(created.get("routes").is_none(), "{created}");
    assert!(created.get("expires_at").is_none(), "{created}");
    let (_, embed_key, created) = create(
        &env,
        "embeddings-only",
        &["--routes", "embeddings", "--models", "*embed*"],
    )
    .await;
    assert_eq!(created["routes"], json!(["embeddings"]));
    assert_eq!(created["models"], json!(["*embed*"]));

    let port = free_port();
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    assert_eq!(started["status"], "running", "{started}");
    let base = format!("http://127.0.0.1:{port}");

    // An unscoped key behaves as before: every model listed and usable.
    let (code, models) = get(&base, "/v1/models", &unscoped).await;
    assert_eq!(code, 200, "{models}");
    assert_eq!(model_ids(&models), vec![LLAMA, EMU_CHAT, EMU_EMBED]);
    let (code, body) = chat(&base, &unscoped, EMU_CHAT).await;
    assert_eq!(code, 200, "{body}");

    // A model-scoped key: 200 on its model (the real llama-server), 403 elsewhere,
    // also for a bare name served only elsewhere and for a model that does not exist.
    let (code, body) = chat(&base, &llama_key, LLAMA).await;
    assert_eq!(code, 200, "{body}");
    assert!(body["choices"][0]["message"].is_object(), "{body}");
    let (code, body) = chat(&base, &llama_key, "tiny-llama").await;
    assert_eq!(code, 200, "bare name on an allowed engine: {body}");
    for other in [
        EMU_CHAT,
        "emu-chat",
        "flm://nowhere/secret-model",
        "no-such-model",
    ] {
        let (code, body) = chat(&base, &llama_key, other).await;
        assert_eq!(code, 403, "{other}: {body}");
        assert_error(&body, "model_not_allowed", "access_denied");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("may not use model"),
            "{body}"
        );
    }
    let (code, body) = embed(&base, &llama_key, EMU_EMBED).await;
    assert_eq!(code, 403, "{body}");
    assert_error(&body, "model_not_allowed", "access_denied");
    // `/v1/models` shows it only its models.
    let (code, models) = get(&base, "/v1/models", &llama_key).await;
    assert_eq!(code, 200, "{models}");
    assert_eq!(model_ids(&models), vec![LLAMA]);
    // The pass-through would reach every model of an engine: refused unless named.
    let (code, body) = get(&base, "/engine/vllm-1/v1/models", &llama_key).await;
    assert_eq!(code, 403, "{body}");
    assert_error(&body, "route_not_allowed", "access_denied");

    // A route-scoped key (embeddings only): refused on chat and on /v1/models.
    let (code, body) = embed(&base, &embed_key, EMU_EMBED).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = chat(&base, &embed_key, EMU_CHAT).await;
    assert_eq!(code, 403, "{body}");
    assert_error(&body, "route_not_allowed", "access_denied");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not use `chat` routes"),
        "{body}"
    );
    let (code, body) = get(&base, "/v1/models", &embed_key).await;
    assert_eq!(code, 403, "{body}");
    assert_error(&body, "route_not_allowed", "access_denied");
    let (code, body) = get(&base, "/metrics", &embed_key).await;
    assert_eq!(code, 403, "{body}");

    // Expiry: created while the daemon runs, works at once, then is refused exactly
    // like a revoked key (same status, code and type).
    let (_, short, created) = create(&env, "short", &["--expires-in", "2s"]).await;
    let expires_at: chrono::DateTime<chrono::Utc> =
        created["expires_at"].as_str().unwrap().parse().unwrap();
    let (code, body) = get(&base, "/v1/models", &short).await;
    assert_eq!(
        code, 200,
        "a new expiring key works before its expiry: {body}"
    );
    let (revoked_id, revoked, _) = create(&env, "to-revoke", &[]).await;
    env.flm(&["api-keys", "revoke", &revoked_id]).await.ok();
    let wait = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default()
        + Duration::from_millis(100);
    tokio::time::sleep(wait).await;
    let (code_expired, expired_body) = get(&base, "/v1/models", &short).await;
    let (code_revoked, revoked_body) = {
        let deadline = Instant::now();
        let mut r = get(&base, "/v1/models", &revoked).await;
        while r.0 != 401 && deadline.elapsed() < WITHIN {
            tokio::time::sleep(Duration::from_millis(25)).await;
            r = get(&base, "/v1/models", &revoked).await;
        }
        r
    };
    assert_eq!(code_expired, 401, "{expired_body}");
    assert_eq!(code_revoked, 401, "{revoked_body}");
    assert_eq!(expired_body["error"]["code"], revoked_body["error"]["code"]);
    assert_eq!(expired_body["error"]["type"], revoked_body["error"]["type"]);
    assert_error(&expired_body, "invalid_api_key", "authentication_error");
    // The list shows it expired.
    let listed = env.flm(&["api-keys", "list"]).await.ok();
    let row = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "short")
        .unwrap()
        .clone();
    assert_eq!(row["expired"], true, "{row}");
    assert_eq!(row["revoked"], false, "{row}");
    // And a rotation of an expired key needs a new lifetime.
    let short_id = row["id"].as_str().unwrap();
    let msg = env
        .flm(&["api-keys", "rotate", short_id])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("expired at"), "{msg}");

    // Changes while the daemon runs are applied within about a second.
    let out = env
        .flm(&["api-keys", "update", &llama_id, "--models", "*emu*"])
        .await
        .ok();
    let at = Instant::now();
    assert_eq!(out["models"], json!(["*emu*"]), "{out}");
    within("update --models", at, 403, || {
        chat(&base, &llama_key, LLAMA)
    })
    .await;
    let (code, body) = chat(&base, &llama_key, EMU_CHAT).await;
    assert_eq!(code, 200, "{body}");
    let out = env
        .flm(&["api-keys", "update", &llama_id, "--routes", "embeddings"])
        .await
        .ok();
    let at = Instant::now();
    assert_eq!(
        out["models"],
        json!(["*emu*"]),
        "the models are kept: {out}"
    );
    within("update --routes", at, 403, || {
        chat(&base, &llama_key, EMU_CHAT)
    })
    .await;
    // Another process changes the scope by hand (no daemon notification): the change
    // markers carry it to the daemon all the same.
    let at = sql(
        &env,
        &format!("UPDATE api_keys SET routes = '[\"chat\"]' WHERE id = '{llama_id}'"),
    );
    within("SQL update of routes", at, 200, || {
        chat(&base, &llama_key, EMU_CHAT)
    })
    .await;
    env.flm(&["api-keys", "update", &llama_id, "--expires-in", "1s"])
        .await
        .ok();
    let at = Instant::now();
    within("update --expires-in 1s", at, 401, || {
        embed(&base, &llama_key, EMU_EMBED)
    })
    .await;
    env.flm(&[
        "api-keys",
        "update",
        &llama_id,
        "--all-models",
        "--all-routes",
        "--no-expiry",
    ])
    .await
    .ok();
    let at = Instant::now();
    within("update back to unscoped", at, 200, || {
        chat(&base, &llama_key, LLAMA)
    })
    .await;
    let (_, models) = get(&base, "/v1/models", &llama_key).await;
    assert_eq!(model_ids(&models).len(), 3, "{models}");

    // Rotation keeps the scope and the expiry.
    let (scoped_id, _, created) = create(
        &env,
        "rotated",
        &[
            "--models",
            EMU_CHAT,
            "--routes",
            "chat,models",
            "--expires-in",
            "30d",
        ],
    )
    .await;
    let rotated = env.flm(&["api-keys", "rotate", &scoped_id]).await.ok();
    assert_eq!(rotated["old_key_id"], scoped_id.as_str());
    assert_eq!(rotated["models"], created["models"]);
    assert_eq!(rotated["routes"], json!(["chat", "models"]));
    assert_eq!(rotated["expires_at"], created["expires_at"]);
    let new_key = rotated["key"].as_str().unwrap();
    let (code, body) = chat(&base, new_key, EMU_CHAT).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = chat(&base, new_key, LLAMA).await;
    assert_eq!(code, 403, "{body}");

    // Refusals are audited with the authentication failures, with their reason.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let rows = audit_rows(&env).await;
        let reasons: Vec<String> = rows
            .iter()
            .filter(|r| r["event_type"] == "auth_failure")
            .map(|r| r["details"].to_string())
            .collect();
        let has = |r: &str| reasons.iter().any(|d| d.contains(r));
        if has("model_not_allowed") && has("route_not_allowed") && has("expired_api_key") {
            let scoped_row = rows
                .iter()
                .find(|r| r["details"].to_string().contains("model_not_allowed"))
                .unwrap();
            assert_eq!(scoped_row["status"], 403, "{scoped_row}");
            assert!(scoped_row["api_key_id"].as_str().is_some(), "{scoped_row}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "audit rows never showed the refusals: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The table output shows the limits.
    let out = env.flm(&["--format", "text", "api-keys", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for want in [
        "MODELS",
        "ROUTES",
        "EXPIRES",
        "expired",
        "chat,models",
        "flm://vllm-1/emu-chat",
    ] {
        assert!(
            out.stdout.contains(want),
            "{want} missing in:\n{}",
            out.stdout
        );
    }

    env.flm(&["proxy", "stop"]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_budgets_refuse_with_429_and_monthly_counts_survive_a_restart() {
    let server = llama(TinyModel::Chat);
    let mut env = Env::new();
    env.set("LLAMA_CPP_PORT", &server.port().to_string());
    let _guard = env.guard();
    let (monthly_id, monthly, created) = create(&env, "monthly", &["--monthly-tokens", "60"]).await;
    assert_eq!(created["monthly_tokens"], 60, "{created}");
    let (_, per_minute, created) = create(&env, "tpm", &["--tpm", "40"]).await;
    assert_eq!(created["tpm"], 40, "{created}");
    let port = free_port();
    let start = |port: u16| {
        let env = &env;
        async move {
            let started = env
                .flm(&["proxy", "start", "--port", &port.to_string()])
                .await
                .ok();
            assert_eq!(started["status"], "running", "{started}");
        }
    };
    start(port).await;
    let base = format!("http://127.0.0.1:{port}");

    // Monthly quota: requests pass until the real engine's usage reaches it.
    let mut ok = 0;
    let refused = loop {
        let (code, body) = chat(&base, &monthly, LLAMA).await;
        if code == 429 {
            break body;
        }
        assert_eq!(code, 200, "{body}");
        assert!(
            body["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
            "{body}"
        );
        ok += 1;
        assert!(ok < 30, "never refused after {ok} requests");
    };
    assert!(ok >= 1, "the first request is admitted");
    assert_error(&refused, "monthly_quota_exceeded", "rate_limit_error");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used its 60 tokens"),
        "{refused}"
    );
    // Routes that spend no tokens still work.
    let (code, _) = get(&base, "/v1/models", &monthly).await;
    assert_eq!(code, 200);

    // Tokens per minute: a burst is refused with Retry-After.
    let mut ok = 0;
    let resp = loop {
        let resp = http()
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&per_minute)
            .json(&json!({"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 429 {
            break resp;
        }
        assert_eq!(resp.status().as_u16(), 200);
        let _ = resp.bytes().await;
        ok += 1;
        assert!(ok < 10, "never refused after {ok} requests");
    };
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert_error(&body, "token_rate_limit_exceeded", "rate_limit_error");

    // The monthly count survives a restart of the daemon.
    env.flm(&["proxy", "stop"]).await.ok();
    let port = free_port();
    start(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let (code, body) = chat(&base, &monthly, LLAMA).await;
    assert_eq!(code, 429, "still exhausted after the restart: {body}");
    assert_error(&body, "monthly_quota_exceeded", "rate_limit_error");
    // A rotation does not reset it either.
    let rotated = env.flm(&["api-keys", "rotate", &monthly_id]).await.ok();
    assert_eq!(rotated["monthly_tokens"], 60, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    let (code, body) = chat(&base, &new_key, LLAMA).await;
    assert_eq!(
        code, 429,
        "the rotated key inherits the month's count: {body}"
    );
    // Raising the quota applies within about a second.
    let new_id = rotated["id"].as_str().unwrap().to_owned();
    env.flm(&["api-keys", "update", &new_id, "--monthly-tokens", "100000"])
        .await
        .ok();
    let at = Instant::now();
    within("update --monthly-tokens", at, 200, || {
        chat(&base, &new_key, LLAMA)
    })
    .await;
    // Refusals are audited as rate limits of the key.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let rows = audit_rows(&env).await;
        let found = rows.iter().any(|r| {
            r["event_type"] == "rate_limit"
                && r["details"].to_string().contains("monthly_quota_exceeded")
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no rate_limit audit row");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = env.flm(&["--format", "text", "api-keys", "list"]).await;
    assert!(out.stdout.contains("100000/month"), "{}", out.stdout);
    assert!(out.stdout.contains("40/min"), "{}", out.stdout);
    env.flm(&["proxy", "stop"]).await.ok();
}

#[tokio::test]
async fn bad_limit_values_are_precise_errors() {
    let env = Env::new();
    let bad = [
        (
            vec!["--expires-in", "30x"],
            "invalid duration `30x`: unknown unit `x`",
        ),
        (vec!["--expires-in", "30"], "the unit is missing"),
        (vec!["--expires-in", "0d"], "greater than zero"),
        (vec!["--expires-in", "1.5h"], "not a whole number"),
        (vec!["--expires-in", "9999d"], "longer than 3650 days"),
        (
            vec!["--routes", "chat,chats"],
            "unknown route class `chats`; expected one of: chat, completions, embeddings, models, responses, audio, images, passthrough, metrics",
        ),
        (vec!["--models", "flm://engine-only"], "is not a model id"),
        (vec!["--models", ""], "empty model pattern"),
        (vec!["--models", "http://x/y"], "scheme other than flm://"),
        (vec!["--tpm", "0"], "--tpm must be at least 1"),
        (vec!["--monthly-tokens", "0"], "--monthly-tokens must be at least 1"),
        (vec!["--tpm", "lots"], "invalid value 'lots' for '--tpm <TOKENS>'"),
    ];
    for (flags, want) in bad {
        let mut args = vec!["api-keys", "create", "--label", "x"];
        args.extend_from_slice(&flags);
        let msg = env.flm(&args).await.err("INVALID_ARGUMENT", 1);
        assert!(msg.contains(want), "{flags:?}: {msg}");
    }
    // Nothing was stored by the refused commands.
    let listed = env.flm(&["api-keys", "list"]).await.ok();
    assert_eq!(listed["keys"], json!([]), "{listed}");

    let (id, _, _) = create(&env, "k", &[]).await;
    let msg = env
        .flm(&["api-keys", "update", &id])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("nothing to change"), "{msg}");
    let msg = env
        .flm(&["api-keys", "update", &id, "--expires-in", "soon"])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("invalid duration `soon`"), "{msg}");
    let msg = env
        .flm(&["api-keys", "update", "key_ffffffffffffffff", "--no-expiry"])
        .await
        .err("API_KEY_NOT_FOUND", 1);
    assert!(msg.contains("no API key"), "{msg}");
    // Contradictory flags are refused before anything runs.
    let msg = env
        .flm(&["api-keys", "update", &id, "--models", "a", "--all-models"])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("cannot be used with"), "{msg}");
}
