//! Shared harness: a real proxy (in-process) in front of real engines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test code

use std::sync::Arc;
use std::time::{Duration, Instant};

use flm_core::ports::SystemClock;
use flm_core::proxy::ProxyConfig;
use flm_core::services::{ConfigService, EngineService, EngineServiceParts, KeyService};
use flm_core::EngineKind;
use flm_engines::discovery::EnvLookup;
use flm_engines::{BinaryFinder, HttpClient, HttpProber, Registry};
use flm_proxy::{ProxyDeps, ProxyManager, StopTarget};
use flm_store::{Store, StorePaths};
use flm_testkit::llama::{LlamaServer, TinyModel};
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use futures::StreamExt;
use serde_json::Value;
use tempfile::TempDir;

pub struct Harness {
    pub _dir: TempDir,
    pub store: Store,
    pub manager: ProxyManager,
    pub keys: KeyService,
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn engine_service(store: &Store, config: &ConfigService, client: HttpClient) -> EngineService {
    let env: EnvLookup = Arc::new(|_| None);
    EngineService::new(EngineServiceParts {
        prober: Arc::new(HttpProber::new(client.clone(), BinaryFinder::new(env))),
        factory: Arc::new(Registry::new(client)),
        cache: store.engine_cache(),
        endpoints: store.endpoints(),
        config: config.clone(),
        clock: Arc::new(SystemClock),
        default_targets: Vec::new(),
    })
}

pub fn egress_engines(store: Store, config: ConfigService) -> flm_proxy::EgressEngines {
    Arc::new(move |egress| {
        let client = HttpClient::with_egress(egress).map_err(|e| {
            flm_core::CoreError::from(flm_core::proxy::ProxyError::InvalidConfig(e.to_string()))
        })?;
        Ok(engine_service(&store, &config, client))
    })
}

pub fn security_deps(store: &Store) -> flm_proxy::SecurityDeps {
    flm_proxy::SecurityDeps {
        policy: store.policy(),
        blocklist: store.proxy_blocklist(),
        events: store.security_events(),
        rate_limits: store.rate_limit_states(),
    }
}

pub async fn harness(endpoints: &[(EngineKind, String, &str)]) -> Harness {
    harness_with(endpoints, Vec::new()).await
}

/// A harness whose proxy allows only `cors_origins` (empty = any).
pub async fn harness_with(
    endpoints: &[(EngineKind, String, &str)],
    cors_origins: Vec<String>,
) -> Harness {
    harness_full(endpoints, cors_origins, false, &[]).await
}

/// A harness whose proxy records usage and engine health history.
pub async fn harness_with_telemetry(endpoints: &[(EngineKind, String, &str)]) -> Harness {
    harness_full(endpoints, Vec::new(), true, &[]).await
}

/// A harness whose proxy starts with `settings` on top of the test defaults.
pub async fn harness_with_settings(
    endpoints: &[(EngineKind, String, &str)],
    settings: &[(&str, &str)],
) -> Harness {
    harness_full(endpoints, Vec::new(), false, settings).await
}

async fn harness_full(
    endpoints: &[(EngineKind, String, &str)],
    cors_origins: Vec<String>,
    telemetry: bool,
    settings: &[(&str, &str)],
) -> Harness {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
    let config = ConfigService::new(store.settings(), "config.db");
    for (k, v) in [
        ("engine.probe_default_ports", "false"),
        ("engine.detect_timeout_ms", "1500"),
        ("engine.request_timeout_secs", "5"),
        ("proxy.engine_check_interval_secs", "1"),
        ("proxy.request_timeout_secs", "5"),
        ("proxy.shutdown_grace_secs", "2"),
    ] {
        config.set(k, v).await.unwrap();
    }
    for (k, v) in settings {
        config.set(k, v).await.unwrap();
    }
    let engines = engine_service(&store, &config, HttpClient::new().unwrap());
    for (kind, url, id) in endpoints {
        engines.add_endpoint(*kind, url, Some(id)).await.unwrap();
    }
    let keys = KeyService::new(store.api_keys(), Arc::new(SystemClock));
    let key = keys.create("test").await.unwrap().key;
    if !cors_origins.is_empty() {
        let policy = serde_json::json!({"cors": {"allowed_origins": cors_origins}});
        store.policy().save(&policy.to_string()).await.unwrap();
    }
    let manager = ProxyManager::new(ProxyDeps {
        engines,
        config: config.clone(),
        keys: store.api_keys(),
        changes: Some(store.change_markers()),
        security: Some(security_deps(&store)),
        certs_dir: dir.path().join("certs"),
        egress_engines: Some(egress_engines(store.clone(), config.clone())),
        acme: flm_proxy::AcmeDeps::default(),
        certificates: Some(store.certificates()),
        audit: Some(store.audit()),
    });
    if telemetry {
        manager.start_telemetry(store.usage(), store.health_log());
    }
    let port = free_port();
    manager
        .start(ProxyConfig {
            port,
            ..ProxyConfig::default()
        })
        .await
        .unwrap();
    Harness {
        _dir: dir,
        store: store.clone(),
        manager,
        keys,
        base: format!("http://127.0.0.1:{port}"),
        key,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

/// A harness in front of one emulated vLLM engine (id `vllm`).
pub async fn vllm_with(opts: EmulatorOptions) -> (Emulator, Harness) {
    let engine = Emulator::start(EmulatedKind::Vllm, opts).await.unwrap();
    let h = harness(&[(EngineKind::Vllm, engine.base_url(), "vllm")]).await;
    (engine, h)
}

/// [`vllm_with`] with the emulator's defaults.
pub async fn vllm() -> (Emulator, Harness) {
    vllm_with(EmulatorOptions::default()).await
}

impl Harness {
    /// Stores `policy` and makes the running proxy apply it now.
    pub async fn set_policy(&self, policy: &Value) {
        self.store.policy().save(&policy.to_string()).await.unwrap();
        self.manager.reload_security().await.unwrap();
    }
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    pub async fn chat(&self, body: Value) -> (u16, Value) {
        let r = self
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn models(&self) -> Vec<String> {
        let v: Value = self
            .http
            .get(format!("{}/v1/models", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Reads an SSE response to the end (bounded) and returns the `data:` payloads.
    pub async fn stream(&self, body: Value) -> (u16, Vec<String>) {
        let r = self
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let mut bytes = r.bytes_stream();
        let mut text = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline.into(), bytes.next()).await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        let events = text
            .split("\n\n")
            .filter_map(|e| {
                e.lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .map(str::to_owned)
            })
            .collect();
        (status, events)
    }

    pub async fn stop(self) {
        self.manager.stop(&StopTarget::default()).await.unwrap();
    }
}

pub fn llama(model: TinyModel) -> LlamaServer {
    assert!(
        flm_testkit::llama::available(),
        "the real llama-server is missing: run scripts/setup-llama-server.sh"
    );
    LlamaServer::start(model).expect("llama-server starts")
}
