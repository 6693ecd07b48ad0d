//! `flm model-profiles list|save|delete` and `flm api prompts list|show|set|delete`:
//! every subcommand with good and bad input (real `flm` binary, JSON envelope), and a
//! running daemon and a `--no-daemon` proxy that apply a saved profile, a template and
//! their removal within a second (a vLLM emulator records the body the engine receives).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::{Duration, Instant};

use common::{free_port, Env};
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_profiles_commands_and_their_errors() {
    let env = Env::new();
    let saved = env
        .flm(&[
            "model-profiles",
            "save",
            "--label",
            "precise",
            "--model",
            "flm://vllm-default/test-model",
            "--params-json",
            r#"{"temperature":0.2,"max_tokens":64,"stop":["END"]}"#,
            "--format",
            "json",
        ])
        .await
        .ok();
    assert_eq!(saved["model_id"], "profile/precise");
    assert_eq!(saved["target"], "flm://vllm-default/test-model");
    assert_eq!(saved["engine_id"], "vllm-default");
    assert_eq!(saved["parameters"]["max_tokens"], 64);
    let id = saved["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("mp_"), "{id}");

    // From a file, a bare model with --engine.
    let file = env.data_dir().join("params.json");
    std::fs::write(&file, r#"{"top_p":0.9,"seed":42}"#).unwrap();
    let other = env
        .flm(&[
            "model-profiles",
            "save",
            "--label",
            "creative",
            "--engine",
            "ollama-default",
            "--model",
            "llama3.2",
            "--params",
            file.to_str().unwrap(),
            "--format",
            "json",
        ])
        .await
        .ok();
    assert_eq!(other["target"], "flm://ollama-default/llama3.2");

    let list = env
        .flm(&["model-profiles", "list", "--format", "json"])
        .await
        .ok();
    let labels: Vec<&str> = list["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["creative", "precise"]);
    let filtered = env
        .flm(&[
            "model-profiles",
            "list",
            "--engine",
            "vllm-default",
            "--format",
            "json",
        ])
        .await
        .ok();
    assert_eq!(filtered["profiles"].as_array().unwrap().len(), 1);
    let text = env
        .flm(&["model-profiles", "list", "--format", "text"])
        .await;
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("profile/precise"), "{}", text.stdout);

    // Replace by id: same label allowed, new parameters.
    let replaced = env
        .flm(&[
            "model-profiles",
            "save",
            "--id",
            &id,
            "--label",
            "precise",
            "--model",
            "flm://vllm-default/test-model",
            "--params-json",
            r#"{"temperature":0.3}"#,
            "--format",
            "json",
        ])
        .await
        .ok();
    assert_eq!(replaced["id"], id.as_str());
    assert_eq!(replaced["parameters"], json!({"temperature": 0.3}));

    // Bad input: each with its precise code and message.
    let m = env
        .flm(&[
            "model-profiles",
            "save",
            "--label",
            "precise",
            "--model",
            "x",
            "--format",
            "json",
        ])
        .await
        .err("ALREADY_EXISTS", 1);
    assert!(
        m.contains("a model profile named `precise` already exists"),
        "{m}"
    );
    let m = env
        .flm(&[
            "model-profiles",
            "save",
            "--label",
            "hot",
            "--model",
            "x",
            "--params-json",
            r#"{"temperature":2.5}"#,
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert_eq!(
        m,
        "parameter `temperature` must be a number from 0 to 2 (got 2.5)"
    );
    let m = env
        .flm(&[
            "model-profiles",
            "save",
            "--label",
            "s",
            "--model",
            "x",
            "--params-json",
            r#"{"stream":true}"#,
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(
        m.starts_with("unknown parameter `stream`; a profile may set:"),
        "{m}"
    );
    let m = env
        .flm(&[
            "model-profiles",
            "save",
            "--label",
            "s",
            "--model",
            "x",
            "--params-json",
            "[1]",
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(m.contains("must hold a JSON object"), "{m}");
    let m = env
        .flm(&[
            "model-profiles",
            "save",
            "--label",
            "s",
            "--model",
            "x",
            "--params-json",
            "{oops",
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(m.contains("is not valid JSON"), "{m}");
    let m = env
        .flm(&[
            "model-profiles",
            "save",
            "--label",
            "a/b",
            "--model",
            "x",
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(m.contains("invalid profile label `a/b`"), "{m}");
    let m = env
        .flm(&[
            "model-profiles",
            "save",
            "--label",
            "p2",
            "--model",
            "profile/precise",
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(m.contains("is a profile id"), "{m}");
    let m = env
        .flm(&[
            "model-profiles",
            "save",
            "--id",
            "mp_000000000000",
            "--label",
            "z",
            "--model",
            "x",
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(
        m.contains("no model profile with id `mp_000000000000`"),
        "{m}"
    );
    let m = env
        .flm(&[
            "model-profiles",
            "delete",
            "--id",
            "nope",
            "--format",
            "json",
        ])
        .await
        .err("NOT_FOUND", 1);
    assert!(m.contains("no model profile `nope`"), "{m}");

    // Delete by label, then by id.
    env.flm(&[
        "model-profiles",
        "delete",
        "--id",
        "creative",
        "--format",
        "json",
    ])
    .await
    .ok();
    let gone = env
        .flm(&["model-profiles", "delete", "--id", &id, "--format", "json"])
        .await
        .ok();
    assert_eq!(gone["label"], "precise");
    let list = env
        .flm(&["model-profiles", "list", "--format", "json"])
        .await
        .ok();
    assert_eq!(list["profiles"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_template_commands_and_their_errors() {
    let env = Env::new();
    let key = env
        .flm(&[
            "api-keys", "create", "--label", "support", "--format", "json",
        ])
        .await
        .ok();
    let key_id = key["id"].as_str().unwrap().to_owned();

    let file = env.data_dir().join("rules.txt");
    std::fs::write(&file, "House rules.\nBe kind.").unwrap();
    let d = env
        .flm(&[
            "api",
            "prompts",
            "set",
            "--default",
            "--file",
            file.to_str().unwrap(),
            "--format",
            "json",
        ])
        .await
        .ok();
    assert_eq!(d["api_id"], "default");
    env.flm(&[
        "api",
        "prompts",
        "set",
        "--model",
        "tiny",
        "--text",
        "Model rules.",
        "--format",
        "json",
    ])
    .await
    .ok();
    env.flm(&[
        "api",
        "prompts",
        "set",
        "--key",
        &key_id,
        "--text",
        "Key rules.",
        "--format",
        "json",
    ])
    .await
    .ok();
    let list = env
        .flm(&["api", "prompts", "list", "--format", "json"])
        .await
        .ok();
    let ids: Vec<&str> = list["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["api_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["default", format!("key:{key_id}").as_str(), "model:tiny"]
    );

    // show: precedence key > model > default, with the message list previewed.
    let s = env
        .flm(&[
            "api",
            "prompts",
            "show",
            "--key",
            &key_id,
            "--model",
            "tiny",
            "--message",
            "Hi there",
            "--format",
            "json",
        ])
        .await
        .ok();
    assert_eq!(s["template_text"], "Key rules.");
    assert_eq!(
        s["preview"]["messages"],
        json!([{"role": "system", "content": "Key rules."}, {"role": "user", "content": "Hi there"}])
    );
    let s = env
        .flm(&[
            "api", "prompts", "show", "--model", "tiny", "--format", "json",
        ])
        .await
        .ok();
    assert_eq!(s["template_text"], "Model rules.");
    let s = env
        .flm(&[
            "api", "prompts", "show", "--model", "other", "--format", "json",
        ])
        .await
        .ok();
    assert_eq!(s["api_id"], "default");
    let t = env
        .flm(&["api", "prompts", "show", "--default", "--format", "text"])
        .await;
    assert_eq!(t.code, 0);
    assert!(
        t.stdout.contains("1. system: House rules.…") && t.stdout.contains("2. user: Hello"),
        "{}",
        t.stdout
    );

    // Bad input.
    let long = env.data_dir().join("long.txt");
    std::fs::write(&long, "x".repeat(16_385)).unwrap();
    let m = env
        .flm(&[
            "api",
            "prompts",
            "set",
            "--default",
            "--file",
            long.to_str().unwrap(),
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert_eq!(
        m,
        "the template is too long: 16385 characters, at most 16384"
    );
    let m = env
        .flm(&[
            "api",
            "prompts",
            "set",
            "--default",
            "--text",
            "   ",
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(m.contains("the template is empty"), "{m}");
    let bin = env.data_dir().join("bin.txt");
    std::fs::write(&bin, [0xff, 0xfe, 0x00]).unwrap();
    let m = env
        .flm(&[
            "api",
            "prompts",
            "set",
            "--default",
            "--file",
            bin.to_str().unwrap(),
            "--format",
            "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(m.contains("is not UTF-8 text"), "{m}");
    let m = env
        .flm(&[
            "api",
            "prompts",
            "set",
            "--key",
            "key_0000000000000000",
            "--text",
            "x",
            "--format",
            "json",
        ])
        .await
        .err("API_KEY_NOT_FOUND", 1);
    assert!(m.contains("no API key `key_0000000000000000`"), "{m}");
    let m = env
        .flm(&[
            "api", "prompts", "set", "--key", "laptop", "--text", "x", "--format", "json",
        ])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(m.contains("is not an API key id"), "{m}");
    let m = env
        .flm(&[
            "api", "prompts", "delete", "--model", "nope", "--format", "json",
        ])
        .await
        .err("NOT_FOUND", 1);
    assert_eq!(
        m,
        "no prompt template for model `nope`; see `flm api prompts list`"
    );
    // Neither or two selectors: a usage error from the grammar (exit 1).
    let u = env.flm(&["api", "prompts", "set", "--text", "x"]).await;
    assert_eq!(u.code, 1, "{}", u.stderr);
    let u = env
        .flm(&["api", "prompts", "delete", "--default", "--model", "tiny"])
        .await;
    assert_eq!(u.code, 1, "{}", u.stderr);

    // Deleting leaves the next one by precedence; with none left, show is an error.
    for args in [
        vec!["--key", key_id.as_str()],
        vec!["--model", "tiny"],
        vec!["--default"],
    ] {
        let mut a = vec!["api", "prompts", "delete", "--format", "json"];
        a.extend(args);
        env.flm(&a).await.ok();
    }
    let m = env
        .flm(&[
            "api", "prompts", "show", "--model", "tiny", "--format", "json",
        ])
        .await
        .err("NOT_FOUND", 1);
    assert!(
        m.contains("no prompt template applies to model `tiny`"),
        "{m}"
    );
}

async fn chat(http: &reqwest::Client, base: &str, key: &str, model: &str) -> u16 {
    http.post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls until `ok` holds; fails if that takes longer than [`WITHIN`] after `since`.
async fn within<F, Fut>(what: &str, since: Instant, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if ok().await {
            eprintln!("{what}: after {} ms", since.elapsed().as_millis());
            return;
        }
        assert!(
            since.elapsed() <= WITHIN,
            "{what}: not applied {} ms after the change",
            since.elapsed().as_millis()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Saves and deletes a profile and a template with the CLI while a proxy at `base`
/// runs; each change must apply within [`WITHIN`].
async fn follows_profile_changes(
    env: &Env,
    ctl: &flm_testkit::EmulatorControl,
    base: &str,
    key: &str,
) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // The engine is up once a plain request works.
    let deadline = Instant::now() + Duration::from_secs(10);
    while chat(&http, base, key, "test-model").await != 200 {
        assert!(Instant::now() < deadline, "the engine never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(chat(&http, base, key, "profile/fast").await, 404);

    env.flm(&[
        "model-profiles",
        "save",
        "--label",
        "fast",
        "--model",
        "test-model",
        "--params-json",
        r#"{"temperature":0.25}"#,
    ])
    .await
    .ok();
    let at = Instant::now();
    within("model-profiles save", at, || async {
        chat(&http, base, key, "profile/fast").await == 200
            && ctl
                .last_chat_body()
                .is_some_and(|b| b["temperature"] == 0.25)
    })
    .await;

    env.flm(&[
        "api",
        "prompts",
        "set",
        "--default",
        "--text",
        "Live rules.",
    ])
    .await
    .ok();
    let at = Instant::now();
    within("api prompts set", at, || async {
        chat(&http, base, key, "test-model").await == 200
            && ctl.last_chat_body().is_some_and(|b| {
                b["messages"][0] == json!({"role": "system", "content": "Live rules."})
            })
    })
    .await;

    env.flm(&["api", "prompts", "delete", "--default"])
        .await
        .ok();
    let at = Instant::now();
    within("api prompts delete", at, || async {
        chat(&http, base, key, "test-model").await == 200
            && ctl
                .last_chat_body()
                .is_some_and(|b: Value| b["messages"].as_array().is_some_and(|m| m.len() == 1))
    })
    .await;

    env.flm(&["model-profiles", "delete", "--id", "fast"])
        .await
        .ok();
    let at = Instant::now();
    within("model-profiles delete", at, || async {
        chat(&http, base, key, "profile/fast").await == 404
    })
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_applies_profile_and_template_changes_within_a_second() {
    let (env, vllm) = vllm_env().await;
    let _guard = env.guard();
    let k = env
        .flm(&["api-keys", "create", "--label", "app", "--format", "json"])
        .await
        .ok();
    let port = free_port();
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let base = format!("http://127.0.0.1:{port}");
    follows_profile_changes(&env, &vllm.control(), &base, k["key"].as_str().unwrap()).await;
    env.flm(&["proxy", "stop"]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreground_proxy_applies_profile_and_template_changes_within_a_second() {
    let (env, vllm) = vllm_env().await;
    let fg = common::Foreground::start(&env).await;
    follows_profile_changes(&env, &vllm.control(), &fg.base, &fg.key).await;
    fg.stop().await;
}
