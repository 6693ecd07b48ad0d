//! Composition root: resolves the data directory, opens the store and wires the
//! concrete adapters into the core services.

use std::path::PathBuf;
use std::sync::Arc;

use flm_core::ports::SystemClock;
use flm_core::services::{ConfigService, EngineService, EngineServiceParts};
use flm_engines::discovery::{process_env, EnvLookup};
use flm_engines::{default_targets, BinaryFinder, HttpClient, HttpProber, Registry};
use flm_store::{Store, StorePaths};

use crate::output::CliError;

/// Everything a command needs.
pub struct App {
    /// Opened store.
    pub store: Store,
    /// Settings.
    pub config: ConfigService,
    /// Engines.
    pub engines: EngineService,
}

/// Data directory: `--data-dir`, then `$FLM_HOME`, then `$FLM_DATA_DIR`, then the OS
/// configuration directory (`~/.config/flm` on Linux).
pub fn resolve_data_dir(flag: Option<PathBuf>, env: &EnvLookup) -> Result<PathBuf, CliError> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = env("FLM_HOME").or_else(|| env("FLM_DATA_DIR")) {
        return Ok(PathBuf::from(p));
    }
    dirs::config_dir().map(|d| d.join("flm")).ok_or_else(|| {
        CliError::user(
            "IO_ERROR",
            "cannot find the OS configuration directory; pass --data-dir or set FLM_HOME",
        )
    })
}

impl App {
    /// Opens the store in `data_dir` and builds the services.
    pub async fn open(data_dir: PathBuf) -> Result<Self, CliError> {
        let paths = StorePaths::in_dir(data_dir);
        let store = Store::open(&paths).await?;
        if let Some(reason) = store.read_only_reason() {
            tracing::warn!(%reason, "store is read-only");
        }
        let config = ConfigService::new(
            store.settings(),
            store.paths().config_db.display().to_string(),
        );
        let env = process_env();
        let client =
            HttpClient::new().map_err(|e| CliError::internal("INTERNAL", e.to_string()))?;
        let engines = EngineService::new(EngineServiceParts {
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
        });
        Ok(Self {
            store,
            config,
            engines,
        })
    }
}
