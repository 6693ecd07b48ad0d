//! End-to-end tests of the `flm` binary: real processes, real SQLite files, real
//! engines (the llama.cpp `llama-server` and the testkit emulators) on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{closed_port, llama, Env};
use flm_testkit::llama::{LlamaServer, TinyModel};
use flm_testkit::{Behavior, EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use serde_json::Value;

fn engine<'a>(data: &'a Value, id: &str) -> &'a Value {
    data["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("engine {id} in {data}"))
}

#[tokio::test]
async fn help_reads_like_a_polished_tool() {
    let env = Env::new();
    let out = env.flm(&["--help"]).await;
    assert_eq!(out.code, 0);
    for needle in [
        "engines",
        "models",
        "config",
        "--format",
        "--data-dir",
        "flm://",
        "proxy",
        "api-keys",
        "chat",
    ] {
        assert!(
            out.stdout.contains(needle),
            "--help lacks {needle}: {}",
            out.stdout
        );
    }
    for sub in [
        &["engines", "detect", "--help"][..],
        &["engines", "add", "--help"],
        &["models", "list", "--help"],
        &["config", "set", "--help"],
        &["proxy", "start", "--help"],
        &["api-keys", "create", "--help"],
        &["chat", "--help"],
    ] {
        let out = env.flm(sub).await;
        assert_eq!(out.code, 0, "{sub:?}");
        assert!(out.stdout.contains("Usage: flm"), "{sub:?}: {}", out.stdout);
    }
}

#[tokio::test]
async fn nothing_running_gives_an_empty_list_fast() {
    let env = Env::new();
    let started = Instant::now();
    let data = env.flm(&["engines", "detect", "--fresh"]).await.ok();
    assert_eq!(data["engines"], Value::Array(vec![]));
    assert_eq!(data["cached"], false);
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = env.flm(&["engines", "detect", "--format", "text"]).await;
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("No engines found"), "{}", text.stdout);
}

#[tokio::test]
async fn files_are_private_and_wal() {
    let env = Env::new();
    env.flm(&["config", "list"]).await.ok();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&env.data_dir()), 0o700);
        assert_eq!(mode(&env.data_dir().join("config.db")), 0o600);
        assert_eq!(mode(&env.data_dir().join("security.db")), 0o600);
    }
    // --data-dir wins over FLM_HOME.
    let other = env.dir.path().join("other");
    env.flm(&["--data-dir", other.to_str().unwrap(), "config", "list"])
        .await
        .ok();
    assert!(other.join("config.db").is_file());
}

#[tokio::test]
async fn real_llama_server_is_detected_and_lists_its_model() {
    let server = llama(TinyModel::Chat);
    let mut env = Env::new();
    env.set("LLAMA_CPP_PORT", &server.port().to_string());
    let data = env.flm(&["engines", "detect", "--fresh"]).await.ok();
    let e = engine(&data, "llamacpp-default");
    assert_eq!(e["kind"], "llamacpp");
    assert_eq!(e["status"], "RunningHealthy", "{e}");
    assert!(e["latency_ms"].as_u64().is_some());
    assert_eq!(e["model_count"], 1);
    assert_eq!(e["source"], "default");

    let models = env.flm(&["models", "list"]).await.ok();
    let m = &models["models"][0];
    assert_eq!(m["id"], "flm://llamacpp-default/tiny-llama");
    assert_eq!(m["context_length"], 256);
    assert_eq!(m["supports_chat"], true);

    let filtered = env
        .flm(&["models", "list", "--engine", "llamacpp-default"])
        .await
        .ok();
    assert_eq!(filtered["models"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn loading_llama_server_is_degraded() {
    let server = LlamaServer::start_loading().expect("loading llama-server");
    let mut env = Env::new();
    env.set("LLAMA_CPP_PORT", &server.port().to_string());
    let data = env.flm(&["engines", "detect", "--fresh"]).await.ok();
    let e = engine(&data, "llamacpp-default");
    assert_eq!(e["status"], "RunningDegraded", "{e}");
    assert!(
        e["reason"].as_str().unwrap().contains("Loading model"),
        "{e}"
    );
}

#[tokio::test]
async fn every_kind_is_detected_and_none_is_taken_for_another() {
    let server = llama(TinyModel::Chat);
    let ollama = Emulator::start(
        EmulatedKind::Ollama,
        EmulatorOptions::with_models([
            EmulatedModel::chat("llama3.2"),
            EmulatedModel::embedding("all-minilm"),
        ]),
    )
    .await
    .unwrap();
    let lmstudio = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    let vllm = Emulator::start(
        EmulatedKind::Vllm,
        EmulatorOptions::with_models([
            EmulatedModel::chat("meta-llama/Llama-3.1-8B-Instruct").with_context_length(131072)
        ]),
    )
    .await
    .unwrap();
    let mut env = Env::new();
    env.set("OLLAMA_BASE_URL", &ollama.base_url());
    env.set("LMSTUDIO_API_HOST", &lmstudio.addr().to_string());
    env.set("VLLM_PORT", &vllm.addr().port().to_string());
    env.set("LLAMA_CPP_PORT", &server.port().to_string());
    let data = env.flm(&["engines", "detect", "--fresh"]).await.ok();
    for (id, kind) in [
        ("ollama-default", "ollama"),
        ("lmstudio-default", "lmstudio"),
        ("vllm-default", "vllm"),
        ("llamacpp-default", "llamacpp"),
    ] {
        let e = engine(&data, id);
        assert_eq!(e["kind"], kind);
        assert_eq!(e["status"], "RunningHealthy", "{e}");
    }
    assert_eq!(engine(&data, "ollama-default")["version"], "0.12.6");

    let models = env.flm(&["models", "list"]).await.ok();
    let ids: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for want in [
        "flm://ollama-default/llama3.2:latest",
        "flm://ollama-default/all-minilm:latest",
        "flm://vllm-default/meta-llama/Llama-3.1-8B-Instruct",
        "flm://llamacpp-default/tiny-llama",
    ] {
        assert!(ids.contains(&want), "{want} missing in {ids:?}");
    }
    let vm = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["engine_id"] == "vllm-default")
        .unwrap();
    assert_eq!(vm["context_length"], 131072);
    let emb = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "all-minilm:latest")
        .unwrap();
    assert_eq!(emb["supports_embeddings"], true);

    // Only llama.cpp on every port: no other kind may claim it.
    let mut env = Env::new();
    for (k, v) in [
        ("OLLAMA_BASE_URL", server.base_url()),
        ("LMSTUDIO_API_HOST", format!("127.0.0.1:{}", server.port())),
        ("VLLM_PORT", server.port().to_string()),
        ("LLAMA_CPP_PORT", ollama.addr().port().to_string()),
    ] {
        env.set(k, &v);
    }
    let data = env.flm(&["engines", "detect", "--fresh"]).await.ok();
    assert_eq!(
        data["engines"],
        Value::Array(vec![]),
        "misidentified: {data}"
    );
}

#[tokio::test]
async fn configured_endpoints_are_detected_like_defaults() {
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let env = Env::new();
    let added = env
        .flm(&[
            "engines",
            "add",
            "--kind",
            "vllm",
            "--url",
            &format!("{}/v1", vllm.base_url()),
        ])
        .await
        .ok();
    assert_eq!(added["id"], "vllm-1");
    assert_eq!(added["base_url"], vllm.base_url());
    let listed = env.flm(&["engines", "list"]).await.ok();
    assert_eq!(listed["endpoints"][0]["id"], "vllm-1");
    let data = env.flm(&["engines", "detect"]).await.ok();
    let e = engine(&data, "vllm-1");
    assert_eq!(e["status"], "RunningHealthy");
    assert_eq!(e["source"], "configured");
    let models = env
        .flm(&["models", "list", "--engine", "vllm-1"])
        .await
        .ok();
    assert_eq!(models["models"][0]["id"], "flm://vllm-1/test-model");

    // Duplicates and unknown ids are refused precisely.
    let msg = env
        .flm(&[
            "engines",
            "add",
            "--kind",
            "vllm",
            "--url",
            &vllm.base_url(),
        ])
        .await
        .err("ALREADY_EXISTS", 1);
    assert!(msg.contains("vllm-1"), "{msg}");
    let msg = env
        .flm(&["engines", "add", "--kind", "gpt", "--url", "http://x"])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("unknown engine kind"), "{msg}");
    let msg = env
        .flm(&["engines", "add", "--kind", "vllm", "--url", "ftp://x"])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("only http:// and https://"), "{msg}");
    env.flm(&["engines", "remove", "nope"])
        .await
        .err("ENGINE_NOT_FOUND", 1);
    env.flm(&["engines", "remove", "vllm-1"]).await.ok();
    let data = env.flm(&["engines", "detect"]).await.ok();
    assert_eq!(data["engines"], Value::Array(vec![]));
}

#[tokio::test]
async fn bad_engines_give_precise_statuses() {
    let ollama = Emulator::start(EmulatedKind::Ollama, EmulatorOptions::default())
        .await
        .unwrap();
    let broken = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    broken.control().set_behavior(Behavior::MalformedJson);
    let hung = Emulator::start(EmulatedKind::LmStudio, EmulatorOptions::default())
        .await
        .unwrap();
    hung.control().set_behavior(Behavior::Hang);
    let env = Env::new();
    env.flm(&["config", "set", "engine.detect_timeout_ms", "400"])
        .await
        .ok();
    let gone = format!("http://127.0.0.1:{}", closed_port());
    for (kind, url, id) in [
        ("vllm", ollama.base_url(), "wrong"),
        ("openai", broken.base_url(), "broken"),
        ("lmstudio", hung.base_url(), "hung"),
        ("ollama", gone.clone(), "gone"),
    ] {
        env.flm(&["engines", "add", "--kind", kind, "--url", &url, "--id", id])
            .await
            .ok();
    }
    let started = Instant::now();
    let data = env.flm(&["engines", "detect", "--fresh"]).await.ok();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "probes are concurrent and bounded"
    );

    let wrong = engine(&data, "wrong");
    assert_eq!(wrong["status"], "ErrorApi");
    assert!(
        wrong["reason"].as_str().unwrap().contains("Ollama"),
        "{wrong}"
    );
    let broken_e = engine(&data, "broken");
    assert_eq!(broken_e["status"], "ErrorApi");
    assert!(
        broken_e["reason"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"),
        "{broken_e}"
    );
    let hung_e = engine(&data, "hung");
    assert_eq!(hung_e["status"], "ErrorNetwork");
    assert!(
        hung_e["reason"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{hung_e}"
    );
    let gone_e = engine(&data, "gone");
    assert_eq!(gone_e["status"], "ErrorNetwork");
    assert_eq!(gone_e["consecutive_failures"], 1);
    assert!(
        gone_e["reason"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{gone_e}"
    );

    // Failures are counted across checks.
    let data = env
        .flm(&["engines", "detect", "--fresh", "--engine", "gone"])
        .await
        .ok();
    assert_eq!(engine(&data, "gone")["consecutive_failures"], 2);

    // Asking a dead engine for its models is a user error with the right code.
    let msg = env
        .flm(&["models", "list", "--engine", "gone"])
        .await
        .err("ENGINE_NETWORK_ERROR", 1);
    assert!(msg.contains("not running"), "{msg}");
    env.flm(&["models", "list", "--engine", "nosuch"])
        .await
        .err("ENGINE_NOT_FOUND", 1);
    env.flm(&["engines", "detect", "--engine", "nosuch"])
        .await
        .err("ENGINE_NOT_FOUND", 1);
    // The listing of all models reports the failures without failing.
    let all = env.flm(&["models", "list"]).await.ok();
    assert_eq!(all["models"], Value::Array(vec![]));
}

#[tokio::test]
async fn cache_is_used_then_bypassed_and_expires() {
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let mut env = Env::new();
    env.set("VLLM_PORT", &vllm.addr().port().to_string());
    let first = env.flm(&["engines", "detect"]).await.ok();
    assert_eq!(first["cached"], false);
    let before = vllm.control().requests();
    let second = env.flm(&["engines", "detect"]).await.ok();
    assert_eq!(second["cached"], true);
    assert_eq!(second["engines"], first["engines"]);
    assert_eq!(
        vllm.control().requests(),
        before,
        "a cached detect contacts no engine"
    );
    // Filtering a cached result by kind.
    let only = env
        .flm(&["engines", "detect", "--engine", "vllm"])
        .await
        .ok();
    assert_eq!(only["engines"].as_array().unwrap().len(), 1);
    let fresh = env.flm(&["engines", "detect", "--fresh"]).await.ok();
    assert_eq!(fresh["cached"], false);
    assert!(vllm.control().requests() > before);
    env.flm(&["config", "set", "engine.cache_ttl_secs", "0"])
        .await
        .ok();
    assert_eq!(env.flm(&["engines", "detect"]).await.ok()["cached"], false);
}

#[tokio::test]
async fn installed_but_stopped_engine_is_installed_only() {
    let env = Env::new();
    let bin = env.dir.path().join("bin").join("ollama");
    std::fs::write(&bin, "#!/bin/sh\nexit 0\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let data = env.flm(&["engines", "detect", "--fresh"]).await.ok();
    let e = engine(&data, "ollama-default");
    assert_eq!(e["status"], "InstalledOnly");
    assert_eq!(e["binary_path"], bin.display().to_string());
}

#[tokio::test]
async fn config_get_set_list_and_errors() {
    let env = Env::new();
    let e = env
        .flm(&["config", "get", "engine.health_latency_threshold_ms"])
        .await
        .ok();
    assert_eq!(e["value"], "1500");
    assert_eq!(e["source"], "default");
    let e = env
        .flm(&["config", "set", "engine.health_latency_threshold_ms", "800"])
        .await
        .ok();
    assert_eq!(e["value"], "800");
    assert_eq!(e["source"], "set");
    let e = env
        .flm(&["config", "get", "engine.health_latency_threshold_ms"])
        .await
        .ok();
    assert_eq!(e["value"], "800");
    let list = env.flm(&["config", "list"]).await.ok();
    assert!(
        list["settings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"] == "paths.config"
                && s["value"].as_str().unwrap().ends_with("config.db"))
    );

    let msg = env
        .flm(&["config", "get", "engine.nope"])
        .await
        .err("CONFIG_NOT_SET", 1);
    assert!(msg.contains("known keys"), "{msg}");
    env.flm(&["config", "set", "engine.nope", "1"])
        .await
        .err("CONFIG_NOT_SET", 1);
    let msg = env
        .flm(&["config", "set", "engine.max_network_failures", "-3"])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("from 1 to 100"), "{msg}");
    env.flm(&["config", "set", "paths.config", "/tmp/x"])
        .await
        .err("INVALID_ARGUMENT", 1);
    // Text mode: one clear line on stderr.
    let out = env
        .flm(&["--format", "text", "config", "get", "engine.nope"])
        .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("error: unknown config key"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn bad_flags_are_user_errors() {
    let env = Env::new();
    let msg = env
        .flm(&["engines", "detect", "--bogus"])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("--bogus"), "{msg}");
    env.flm(&["--format", "yaml", "engines", "detect"]).await;
    let out = env.flm(&["--format", "yaml", "engines", "detect"]).await;
    assert_eq!(out.code, 1);
    env.flm(&["engines", "add", "--kind", "vllm"])
        .await
        .err("INVALID_ARGUMENT", 1);
}

#[tokio::test]
async fn storage_failures_are_precise_and_lose_nothing() {
    // Data dir below a regular file: cannot be created.
    let env = Env::new();
    let file = env.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("data");
    let msg = env
        .flm(&["--data-dir", bad.to_str().unwrap(), "config", "list"])
        .await
        .err("IO_ERROR", 2);
    assert!(msg.contains(bad.to_str().unwrap()), "{msg}");

    // A corrupt config.db: precise error, file untouched.
    let env = Env::new();
    std::fs::create_dir_all(env.data_dir()).unwrap();
    let garbage =
        b"this is not a database, it is a file full of text that SQLite cannot read".repeat(20);
    std::fs::write(env.data_dir().join("config.db"), &garbage).unwrap();
    let msg = env.flm(&["engines", "detect"]).await.err("DB_ERROR", 2);
    assert!(
        msg.contains("config.db") && msg.contains("not a valid SQLite database"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(env.data_dir().join("config.db")).unwrap(),
        garbage
    );
}

#[tokio::test]
async fn failed_migration_runs_read_only() {
    let env = Env::new();
    env.flm(&["config", "set", "proxy.port", "9000"]).await.ok();
    // Pretend a newer FLM migrated this database.
    let db = env.data_dir().join("config.db");
    let status = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99990101000000, 'from the future', '2099-01-01', 1, x'00', 0);")
        .status();
    let Ok(status) = status else {
        eprintln!("sqlite3 is not installed; skipping");
        return;
    };
    assert!(status.success());
    let before = std::fs::read(&db).unwrap();
    // Reads still work, with the stored value.
    let e = env.flm(&["config", "get", "proxy.port"]).await.ok();
    assert_eq!(e["value"], "9000");
    // Writes are refused with recovery advice; nothing changes on disk.
    let msg = env
        .flm(&["config", "set", "proxy.port", "9001"])
        .await
        .err("READ_ONLY_MODE", 1);
    assert!(msg.contains("read-only"), "{msg}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
    // Detection still works, without caching.
    env.flm(&["engines", "detect", "--fresh"]).await.ok();
}
