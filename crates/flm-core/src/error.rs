//! Errors of the domain, each with a stable, language-neutral code.
//!
//! Codes map 1:1 to the CLI error table (spec 20-cli §3.3); [`CoreError::exit_code`]
//! gives the process exit code (1 = the user can fix it, 2 = internal).

use thiserror::Error;

/// Failures talking to an engine.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine is not registered or was not detected.
    #[error("{0}")]
    NotFound(String),
    /// The engine could not be reached (refused, reset, DNS…).
    #[error("{0}")]
    Network(String),
    /// The engine answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status of the engine's answer, when there was one.
        status_code: Option<u16>,
        /// The engine's own message, normalised to one line.
        message: String,
    },
    /// The engine did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// The engine answered something FLM cannot understand.
    #[error("{0}")]
    InvalidResponse(String),
    /// The engine cannot do this (no embeddings, no vision…).
    #[error("{0}")]
    Unsupported(String),
}

impl EngineError {
    /// Stable error code for the CLI / IPC envelope.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::NotFound(_) => "ENGINE_NOT_FOUND",
            EngineError::Network(_) => "ENGINE_NETWORK_ERROR",
            EngineError::Api { .. } | EngineError::InvalidResponse(_) => "ENGINE_API_ERROR",
            EngineError::Timeout(_) => "ENGINE_TIMEOUT",
            EngineError::Unsupported(_) => "ENGINE_UNSUPPORTED",
        }
    }
}

/// Failures of the storage layer.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepoError {
    /// A requested record or key does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A value was refused by validation or a constraint.
    #[error("{0}")]
    Validation(String),
    /// A schema migration failed.
    #[error("{0}")]
    MigrationFailed(String),
    /// The store runs read-only because its migration failed; writes are refused.
    #[error("{0}")]
    ReadOnlyMode(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// Any other database failure.
    #[error("{0}")]
    Database(String),
}

/// Everything a core service can fail with.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreError {
    /// An engine failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A storage failure.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A configuration key that FLM does not know.
    #[error("{0}")]
    ConfigNotSet(String),
    /// Bad input from the user (flag value, id, URL…).
    #[error("{0}")]
    InvalidInput(String),
    /// Something that already exists (engine id, URL…).
    #[error("{0}")]
    Conflict(String),
    /// No API key with that id.
    #[error("{0}")]
    KeyNotFound(String),
    /// A proxy lifecycle failure.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// A security policy document that does not validate: every problem, with the
    /// path of its field.
    #[error("{}", policy_message(.0))]
    InvalidPolicy(Vec<FieldProblem>),
    /// A structured setting (such as `alert_rules`) that does not validate: every
    /// problem, with the path of its field inside the value.
    #[error("{}", setting_message(key, problems))]
    InvalidSetting {
        /// The setting.
        key: String,
        /// What is wrong, field by field.
        problems: Vec<FieldProblem>,
    },
}

/// One invalid field of a document: `rate_limit.rpm`, `ip_whitelist[2]`, `$` for the
/// document itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldProblem {
    /// Path of the field.
    pub field: String,
    /// What is wrong, for a human.
    pub message: String,
}

fn policy_message(problems: &[FieldProblem]) -> String {
    let listed: Vec<String> = problems
        .iter()
        .map(|p| format!("`{}`: {}", p.field, p.message))
        .collect();
    format!("invalid security policy: {}", listed.join("; "))
}

fn setting_message(key: &str, problems: &[FieldProblem]) -> String {
    let listed: Vec<String> = problems
        .iter()
        .map(|p| format!("`{}`: {}", p.field, p.message))
        .collect();
    format!("invalid value for `{key}`: {}", listed.join("; "))
}

impl CoreError {
    /// Stable error code (spec 20-cli §3.3).
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Engine(e) => e.code(),
            CoreError::Repo(r) => match r {
                RepoError::NotFound(_) => "NOT_FOUND",
                RepoError::Validation(_) => "INVALID_ARGUMENT",
                RepoError::MigrationFailed(_) => "MIGRATION_FAILED",
                RepoError::ReadOnlyMode(_) => "READ_ONLY_MODE",
                RepoError::Io(_) => "IO_ERROR",
                RepoError::Database(_) => "DB_ERROR",
            },
            CoreError::ConfigNotSet(_) => "CONFIG_NOT_SET",
            CoreError::InvalidInput(_) => "INVALID_ARGUMENT",
            CoreError::Conflict(_) => "ALREADY_EXISTS",
            CoreError::KeyNotFound(_) => "API_KEY_NOT_FOUND",
            CoreError::Proxy(p) => p.code(),
            CoreError::InvalidPolicy(_) => "POLICY_INVALID",
            CoreError::InvalidSetting { .. } => "INVALID_ARGUMENT",
        }
    }

    /// Process exit code: 1 for errors the user can act on, 2 for internal ones.
    pub fn exit_code(&self) -> i32 {
        match self {
            CoreError::Repo(
                RepoError::MigrationFailed(_) | RepoError::Io(_) | RepoError::Database(_),
            ) => 2,
            CoreError::Proxy(crate::proxy::ProxyError::Daemon(_)) => 2,
            _ => 1,
        }
    }
}
