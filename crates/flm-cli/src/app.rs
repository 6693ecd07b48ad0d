//! Composition root shared by `flm` and `flm-proxy`: resolves the data directory,
//! opens the store and wires the concrete adapters into the core services and the
//! proxy's dependencies.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flm_core::ports::SystemClock;
use flm_core::services::{
    ConfigService, EngineService, EngineServiceParts, KeyService, SecurityService,
    SecurityServiceParts,
};
use flm_engines::discovery::{process_env, EnvLookup};
use flm_engines::{default_targets, BinaryFinder, HttpClient, HttpProber, Registry};
use flm_proxy::ProxyDeps;
use flm_store::{Store, StorePaths};

use crate::output::CliError;

/// Everything a command (or the daemon) needs.
pub struct App {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Opened store.
    pub store: Store,
    /// Settings.
    pub config: ConfigService,
    /// Engines.
    pub engines: EngineService,
    /// API keys.
    pub keys: KeyService,
    /// Security policy, blocklist and security records.
    pub security: SecurityService,
}

/// Data directory: `--data-dir`, then `$FLM_HOME`, then `$FLM_DATA_DIR`, then the OS
/// configuration directory (`~/.config/flm` on Linux). Made absolute, so that a
/// daemon started from here finds the same files.
pub fn resolve_data_dir(flag: Option<PathBuf>, env: &EnvLookup) -> Result<PathBuf, CliError> {
    let dir = if let Some(p) = flag {
        p
    } else if let Some(p) = env("FLM_HOME").or_else(|| env("FLM_DATA_DIR")) {
        PathBuf::from(p)
    } else {
        dirs::config_dir().map(|d| d.join("flm")).ok_or_else(|| {
            CliError::user(
                "IO_ERROR",
                "cannot find the OS configuration directory; pass --data-dir or set FLM_HOME",
            )
        })?
    };
    std::path::absolute(&dir).map_err(|e| {
        CliError::internal(
            "IO_ERROR",
            format!("cannot resolve the data directory {}: {e}", dir.display()),
        )
    })
}

/// The engine service over `client` (detection probes and adapters share it).
fn engine_service(store: &Store, config: &ConfigService, client: HttpClient) -> EngineService {
    let env = process_env();
    EngineService::new(EngineServiceParts {
        prober: Arc::new(HttpProber::new(
            client.clone(),
            BinaryFinder::new(env.clone()),
        )),
        factory: Arc::new(Registry::new(client)),
        cache: store.engine_cache(),
        endpoints: store.endpoints(),
        config: config.clone(),
        clock: Arc::new(SystemClock),
        default_targets: default_targets(&env),
    })
}

/// Engine services for proxies whose egress goes through Tor/SOCKS5 (spec 30-proxy
/// §11): the same engines, with clients built by [`HttpClient::with_egress`].
fn egress_engines(store: Store, config: ConfigService) -> flm_proxy::EgressEngines {
    Arc::new(move |egress| {
        let client = HttpClient::with_egress(egress).map_err(|e| {
            flm_core::CoreError::from(flm_core::proxy::ProxyError::InvalidConfig(e.to_string()))
        })?;
        Ok(engine_service(&store, &config, client))
    })
}

/// ACME settings from the environment: the directory is read by the proxy
/// (`FLM_ACME_DIRECTORY`, `FLM_ACME_USE_PROD`); `FLM_ACME_ROOT_CA=<pem file>` adds a
/// trust root for the ACME server's own HTTPS (a private CA, or pebble in tests).
fn acme_deps() -> Result<flm_proxy::AcmeDeps, CliError> {
    let root_ca_pem = match std::env::var_os("FLM_ACME_ROOT_CA").filter(|v| !v.is_empty()) {
        Some(path) => Some(std::fs::read(&path).map_err(|e| {
            CliError::user(
                "PROXY_INVALID_CONFIG",
                format!(
                    "cannot read FLM_ACME_ROOT_CA ({}): {e}",
                    std::path::Path::new(&path).display()
                ),
            )
        })?),
        None => None,
    };
    Ok(flm_proxy::AcmeDeps {
        directory_url: None,
        root_ca_pem,
    })
}

/// The security service over `security.db`, validating with the guard's rules.
pub fn security_service(store: &Store) -> SecurityService {
    SecurityService::new(SecurityServiceParts {
        policy: store.policy(),
        blocklist: store.blocklist(),
        audit: store.audit(),
        events: store.security_events(),
        rate_limits: store.rate_limit_states(),
        rules: Arc::new(flm_proxy::policy_rules::GuardPolicyRules),
        clock: Arc::new(SystemClock),
    })
}

/// The app's security endpoints over `store` (`/api/v1/keys`, `/api/v1/security/*`).
pub fn security_api_deps(store: &Store) -> flm_proxy::ui_api::security::SecurityApiDeps {
    flm_proxy::ui_api::security::SecurityApiDeps::new(
        KeyService::new(store.api_keys(), Arc::new(SystemClock)),
        security_service(store),
    )
}

/// `<data-dir>/run/proxy-daemon.json`: how CLI invocations find the daemon.
pub fn state_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join("run").join("proxy-daemon.json")
}

/// `<data-dir>/certs`: TLS certificates and the local CA (0700; keys 0600).
pub fn certs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("certs")
}

/// `<data-dir>/logs`: the daemon's log directory.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// `<data-dir>/logs/proxy.log`: the daemon's log (JSON lines).
pub fn proxy_log_path(data_dir: &Path) -> PathBuf {
    log_dir(data_dir).join("proxy.log")
}

impl App {
    /// Opens the store in `data_dir` and builds the services.
    pub async fn open(data_dir: PathBuf) -> Result<Self, CliError> {
        let paths = StorePaths::in_dir(data_dir.clone());
        let store = Store::open(&paths).await?;
        if let Some(reason) = store.read_only_reason() {
            tracing::warn!(%reason, "store is read-only");
        }
        let config = ConfigService::new(
            store.settings(),
            store.paths().config_db.display().to_string(),
        );
        let client =
            HttpClient::new().map_err(|e| CliError::internal("INTERNAL", e.to_string()))?;
        let engines = engine_service(&store, &config, client);
        let keys = KeyService::new(store.api_keys(), Arc::new(SystemClock));
        let security = security_service(&store);
        Ok(Self {
            data_dir,
            store,
            config,
            engines,
            keys,
            security,
        })
    }

    /// What a proxy instance needs: engines, settings, keys and `security.db`.
    pub async fn proxy_deps(&self) -> Result<ProxyDeps, CliError> {
        Ok(ProxyDeps {
            engines: self.engines.clone(),
            config: self.config.clone(),
            keys: self.store.api_keys(),
            changes: Some(self.store.change_markers()),
            security: {
                self.check_policy().await?;
                Some(flm_proxy::SecurityDeps {
                    policy: self.store.policy(),
                    blocklist: self.store.proxy_blocklist(),
                    events: self.store.security_events(),
                    rate_limits: self.store.rate_limit_states(),
                })
            },
            certs_dir: certs_dir(&self.data_dir),
            egress_engines: Some(egress_engines(self.store.clone(), self.config.clone())),
            acme: acme_deps()?,
            certificates: Some(self.store.certificates()),
            audit: Some(self.store.audit()),
        })
    }

    /// Refuses to start a proxy on a stored policy it could not use: the running proxy
    /// would fail closed (spec 40-security §3.3) and refuse everything, so saying so
    /// at start is kinder. A missing policy row is left to the proxy (it fails closed
    /// and says why on every request).
    pub async fn check_policy(&self) -> Result<(), CliError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT policy_json FROM security_policies WHERE id = 'default'")
                .fetch_optional(self.store.security_pool())
                .await
                .map_err(|e| {
                    CliError::from(flm_store::map_sqlx_error(
                        &self.store.paths().security_db,
                        "reading the security policy",
                        e,
                    ))
                })?;
        match row {
            Some(json) => check_policy_json(&json),
            None => Ok(()),
        }
    }

    /// Shown when the proxy is started with no API key and none can be created.
    pub fn read_only_reason(&self) -> Option<&str> {
        self.store.read_only_reason()
    }
}

/// Whether a stored policy document is usable; `POLICY_INVALID` says why not.
pub fn check_policy_json(policy_json: &str) -> Result<(), CliError> {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(policy_json) {
        return Err(CliError::user(
            "POLICY_INVALID",
            format!("the security policy is not valid JSON ({e}); fix it with `flm security policy set` before starting the proxy"),
        ));
    }
    flm_guard::SecurityPolicy::from_json_str(policy_json)
        .map(drop)
        .map_err(|e| {
            CliError::user(
                "POLICY_INVALID",
                format!("the stored security policy is invalid ({e}); fix it with `flm security policy set` before starting the proxy"),
            )
        })
}

/// The runtime of a process that serves the proxy: one worker per core by default;
/// `FLM_PROXY_WORKERS=<n>` overrides it (e.g. 1 on a machine whose other cores are
/// busy with the engines themselves).
pub fn proxy_runtime_builder() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(n) = std::env::var("FLM_PROXY_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        b.worker_threads(n);
    }
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stored_policies_are_checked_before_a_start() {
        assert!(check_policy_json(r#"{"cors":{"allowed_origins":[]}}"#).is_ok());
        assert!(check_policy_json("{}").is_ok());
        assert!(check_policy_json(
            r#"{"ip_whitelist":[],"cors":{"allowed_origins":[]},"rate_limit":{}}"#
        )
        .is_ok());
        assert_eq!(check_policy_json("{").unwrap_err().code, "POLICY_INVALID");
        assert_eq!(
            check_policy_json(r#"{"cors":{"allowed_origins":"x"}}"#)
                .unwrap_err()
                .code,
            "POLICY_INVALID"
        );
    }
}
