//! # flm-store — FLM's SQLite storage
//!
//! SQLite (through `sqlx`) implementations of the storage ports of `flm-core`
//! ([`SettingsRepository`], [`EngineCacheRepository`], [`EndpointRepository`],
//! [`ApiKeyRepository`]) and the two embedded migration sets. The composition roots (CLI, daemon, desktop backend)
//! open a [`Store`] once and hand its repositories around as `Arc<dyn Trait>`.
//!
//! ## Design choices
//!
//! - **Two files** (spec 50-data §1): `config.db` (settings, detection cache, engine
//!   endpoints, health logs…) and `security.db` (security policy, API keys, and later
//!   audit logs, bans…). Writes to one never wait on the other, and the secrets-bearing
//!   file can be backed up, restored and protected on its own. Each file has its own
//!   migration set, `migrations/config/` and `migrations/security/`, embedded in the
//!   binary with `sqlx::migrate!` and applied on every [`Store::open`].
//! - **WAL journal, `synchronous=NORMAL`, `foreign_keys=ON`, 5 s busy timeout**: readers
//!   never block the writer, several short-lived CLI processes and the daemon can share
//!   the files, and a commit costs no `fsync` of the main file. Pools are small (at most
//!   four connections, opened lazily; SQLite connections each own a worker thread).
//! - **Private files**: the data directory is created 0700 and each database file is
//!   created 0600 *before* SQLite opens it, so it is never readable by other users, not
//!   even briefly; looser permissions found on an existing file are tightened.
//! - **Safe mode** (spec 50-data §5): when migrating a file fails — it was written by a
//!   newer FLM, an applied migration changed, a table conflicts — FLM does not refuse to
//!   start. It logs a warning and reopens that file read-only: reads keep working, every
//!   write returns [`RepoError::ReadOnlyMode`] without touching the database, and
//!   [`Store::read_only_reason`] tells the user how to recover. Only when even the
//!   read-only open fails does [`Store::open`] return [`RepoError::MigrationFailed`].
//! - **Timestamps** are RFC 3339 UTC text with milliseconds (`2026-11-25T10:00:00.123Z`,
//!   also the SQL column defaults), so text order is time order; reading also accepts
//!   SQLite's `datetime('now')` form ([`parse_ts`]).
//! - **API keys** (`security.db` → `api_keys`, [`Store::api_keys`]): keys are
//!   `flm_<id>_<secret>` tokens (DESIGN.md §3.2); the table holds the id, the label,
//!   the SHA-256 digest of the whole key as 64 lower-case hex characters (`hash`,
//!   unique), `created_at` and `revoked_at` (NULL while active). The plaintext is never
//!   written: not to the table, not to the WAL, not to logs (a test scans the raw
//!   files). Rotation revokes the old key and inserts the new one in one transaction.
//!   Rows whose `hash` is not a 64-hex digest (e.g. a legacy Argon2 PHC string) or whose
//!   timestamps are unreadable are skipped with a warning when listing, so such a key
//!   is never accepted. [`ApiKeyRepository::fingerprint`] is one aggregate query
//!   (counts, latest timestamps) the proxy polls to reload its key table.
//! - **Errors** always name the file and say what to do (`move it aside or restore a
//!   backup`, `run flm check`…); the CLI prints them as they are.

use std::path::PathBuf;
use std::sync::Arc;

use flm_core::ports::{
    ApiKeyRepository, EndpointRepository, EngineCacheRepository, SettingsRepository,
};
use flm_core::RepoError;
use sqlx::migrate::Migrator;
use sqlx::SqlitePool;

mod api_keys;
mod db;
mod endpoints;
mod engine_cache;
mod open;
mod settings;
pub mod time;

pub use db::map_sqlx_error;
pub use time::{format_ts, parse_ts};

use db::Db;

/// Migrations of `config.db`.
pub static CONFIG_MIGRATOR: Migrator = sqlx::migrate!("./migrations/config");

/// Migrations of `security.db`.
pub static SECURITY_MIGRATOR: Migrator = sqlx::migrate!("./migrations/security");

/// File name of the configuration database.
pub const CONFIG_DB_FILE: &str = "config.db";

/// File name of the security database.
pub const SECURITY_DB_FILE: &str = "security.db";

/// Where the store keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePaths {
    /// The data directory (spec 20-cli §6; `FLM_DATA_DIR` overrides it).
    pub data_dir: PathBuf,
    /// `config.db` (usually inside `data_dir`; `--db-path-config` overrides it).
    pub config_db: PathBuf,
    /// `security.db` (usually inside `data_dir`; `--db-path-security` overrides it).
    pub security_db: PathBuf,
}

impl StorePaths {
    /// `config.db` and `security.db` inside `data_dir`.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            config_db: data_dir.join(CONFIG_DB_FILE),
            security_db: data_dir.join(SECURITY_DB_FILE),
            data_dir,
        }
    }
}

/// Which of the two database files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFile {
    /// `config.db`.
    Config,
    /// `security.db`.
    Security,
}

/// The open store: both databases, migrated (or read-only in safe mode).
///
/// Cheap to clone; clones share the connection pools.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    paths: StorePaths,
    config: Arc<Db>,
    security: Arc<Db>,
    read_only_reason: Option<String>,
}

impl Store {
    /// Opens (creating when missing) both databases and applies pending migrations.
    ///
    /// Creates the data directory (0700) and the database files (0600) first. A file
    /// whose migration fails is opened read-only instead (see the crate docs).
    ///
    /// # Errors
    ///
    /// - [`RepoError::Io`] when a directory or file cannot be created;
    /// - [`RepoError::Database`] when a file is not a SQLite database or is corrupt;
    /// - [`RepoError::MigrationFailed`] when migration failed and the read-only
    ///   fallback failed too.
    pub async fn open(paths: &StorePaths) -> Result<Store, RepoError> {
        open::ensure_dir(&paths.data_dir, "data directory")?;
        for (db, name) in [
            (&paths.config_db, CONFIG_DB_FILE),
            (&paths.security_db, SECURITY_DB_FILE),
        ] {
            if let Some(parent) = db.parent() {
                if !parent.as_os_str().is_empty() && parent != paths.data_dir {
                    open::ensure_dir(parent, &format!("directory of {name}"))?;
                }
            }
            open::ensure_db_file(db)?;
        }

        let (config, security) = tokio::join!(
            open::open_db(CONFIG_DB_FILE, &paths.config_db, &CONFIG_MIGRATOR),
            open::open_db(SECURITY_DB_FILE, &paths.security_db, &SECURITY_MIGRATOR),
        );
        let (config, security) = match (config, security) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), other) => {
                if let Ok(s) = other {
                    s.pool.close().await;
                }
                return Err(e);
            }
            (Ok(c), Err(e)) => {
                c.pool.close().await;
                return Err(e);
            }
        };

        let reasons: Vec<&str> = [&config.read_only, &security.read_only]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let read_only_reason = (!reasons.is_empty()).then(|| reasons.join(" "));

        Ok(Store {
            inner: Arc::new(Inner {
                paths: paths.clone(),
                config: Arc::new(config),
                security: Arc::new(security),
                read_only_reason,
            }),
        })
    }

    /// The paths the store was opened with.
    pub fn paths(&self) -> &StorePaths {
        &self.inner.paths
    }

    /// `Some(message)` when at least one database runs read-only (safe mode); the
    /// message says which, why, and how to recover.
    pub fn read_only_reason(&self) -> Option<&str> {
        self.inner.read_only_reason.as_deref()
    }

    /// Why `file` is read-only, if it is (safe mode is per file).
    pub fn read_only_reason_of(&self, file: DbFile) -> Option<&str> {
        self.db(file).read_only.as_deref()
    }

    /// `Err(RepoError::ReadOnlyMode)` when `file` is read-only: repositories built on
    /// [`Store::config_pool`] / [`Store::security_pool`] call this before every write.
    pub fn ensure_writable(&self, file: DbFile) -> Result<(), RepoError> {
        self.db(file).ensure_writable()
    }

    /// Settings (`config.db` → `settings`).
    pub fn settings(&self) -> Arc<dyn SettingsRepository> {
        Arc::new(settings::SqliteSettings {
            db: Arc::clone(&self.inner.config),
        })
    }

    /// Detection cache (`config.db` → `engines_cache`, `engines_cache_meta`).
    pub fn engine_cache(&self) -> Arc<dyn EngineCacheRepository> {
        Arc::new(engine_cache::SqliteEngineCache {
            db: Arc::clone(&self.inner.config),
        })
    }

    /// Configured engine endpoints (`config.db` → `engine_endpoints`).
    pub fn endpoints(&self) -> Arc<dyn EndpointRepository> {
        Arc::new(endpoints::SqliteEndpoints {
            db: Arc::clone(&self.inner.config),
        })
    }

    /// API keys (`security.db` → `api_keys`): digests only, never plaintext.
    pub fn api_keys(&self) -> Arc<dyn ApiKeyRepository> {
        Arc::new(api_keys::SqliteApiKeys {
            db: Arc::clone(&self.inner.security),
        })
    }

    /// The pool of `config.db` (read-only connections in safe mode).
    pub fn config_pool(&self) -> &SqlitePool {
        &self.inner.config.pool
    }

    /// The pool of `security.db` (read-only connections in safe mode).
    pub fn security_pool(&self) -> &SqlitePool {
        &self.inner.security.pool
    }

    /// Closes both pools, waiting for connections in use to be returned. SQLite then
    /// checkpoints the WAL into the main files. Further use of the store fails.
    pub async fn close(&self) {
        tokio::join!(
            self.inner.config.pool.close(),
            self.inner.security.pool.close()
        );
    }

    fn db(&self, file: DbFile) -> &Db {
        match file {
            DbFile::Config => &self.inner.config,
            DbFile::Security => &self.inner.security,
        }
    }
}
