//! Known configuration keys, their defaults and validation.
//!
//! Keys are `<category>.<name>` (spec 20-cli §4.7). Only known keys can be set: a typo
//! is refused with the list of valid keys instead of being stored and silently ignored.

use std::time::Duration;

use crate::error::CoreError;

/// Value type of a setting, used for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingType {
    /// Integer in an inclusive range.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// `true` / `false`.
    Bool,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// Any JSON document.
    Json,
    /// Computed by FLM; cannot be set.
    ReadOnly,
}

/// Description of one known key.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    /// Key.
    pub key: &'static str,
    /// Default value as text (empty for read-only keys).
    pub default: &'static str,
    /// Type.
    pub ty: SettingType,
    /// One-line description.
    pub help: &'static str,
}

/// The values of `log.level`, least detailed first.
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// Every key `flm config` accepts.
pub const SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: "engine.health_latency_threshold_ms",
        default: "1500",
        ty: SettingType::Int {
            min: 1,
            max: 600_000,
        },
        help: "Latency at or above which a running engine is reported RunningDegraded",
    },
    SettingSpec {
        key: "engine.max_network_failures",
        default: "3",
        ty: SettingType::Int { min: 1, max: 100 },
        help: "Consecutive failed checks before the proxy stops offering an engine",
    },
    SettingSpec {
        key: "engine.detect_timeout_ms",
        default: "5000",
        ty: SettingType::Int {
            min: 50,
            max: 60_000,
        },
        help: "Upper bound for probing one engine during detection",
    },
    SettingSpec {
        key: "engine.request_timeout_secs",
        default: "30",
        ty: SettingType::Int { min: 1, max: 3600 },
        help: "Timeout of non-streaming engine requests (model listing, embeddings, chat)",
    },
    SettingSpec {
        key: "engine.cache_ttl_secs",
        default: "300",
        ty: SettingType::Int {
            min: 0,
            max: 86_400,
        },
        help: "How long `flm engines detect` reuses cached results",
    },
    SettingSpec {
        key: "engine.probe_default_ports",
        default: "true",
        ty: SettingType::Bool,
        help: "Probe each engine kind's default address in addition to configured endpoints",
    },
    SettingSpec {
        key: "proxy.port",
        default: "8780",
        ty: SettingType::Int {
            min: 1,
            max: 65_535,
        },
        help: "Default HTTP port of the proxy (HTTPS uses port+1)",
    },
    SettingSpec {
        key: "proxy.request_timeout_secs",
        default: "60",
        ty: SettingType::Int { min: 1, max: 3600 },
        help: "Timeout of non-streaming proxy requests (408 request_timeout)",
    },
    SettingSpec {
        key: "proxy.stream_timeout_secs",
        default: "1800",
        ty: SettingType::Int { min: 1, max: 86_400 },
        help: "Ceiling of one streaming response; there is no idle timeout, so a slow first token is never cut",
    },
    SettingSpec {
        key: "proxy.max_body_bytes",
        default: "10485760",
        ty: SettingType::Int { min: 1024, max: 1_073_741_824 },
        help: "Largest request body the proxy accepts (413 payload_too_large)",
    },
    SettingSpec {
        key: "proxy.passthrough",
        default: "read-only",
        ty: SettingType::Choice(PassthroughMode::CHOICES),
        help: "Engine pass-through /engine/{id}/*: read-only (model lists, info, inference), full (every engine route, for every key), off",
    },
    SettingSpec {
        key: "proxy.engine_check_interval_secs",
        default: "5",
        ty: SettingType::Int { min: 1, max: 3600 },
        help: "How often the running proxy re-checks engines",
    },
    SettingSpec {
        key: "proxy.shutdown_grace_secs",
        default: "10",
        ty: SettingType::Int { min: 0, max: 3600 },
        help: "How long `flm proxy stop` lets in-flight requests and streams finish",
    },
    SettingSpec {
        key: "proxy.max_connections_per_ip",
        default: "128",
        ty: SettingType::Int { min: 1, max: 65_535 },
        help: "Open connections one client address (IPv6: one /64) may hold; more are closed at accept. Trusted proxies are exempt",
    },
    SettingSpec {
        key: "proxy.send_timeout_secs",
        default: "30",
        ty: SettingType::Int { min: 1, max: 3600 },
        help: "A response write that makes no progress this long (the client stopped reading) closes the connection and cancels the engine request",
    },
    SettingSpec {
        key: "audit.retention_days",
        default: "7",
        ty: SettingType::Int { min: 1, max: 36_500 },
        help: "The running proxy moves audit events older than this into compressed archive files",
    },
    SettingSpec {
        key: "audit.max_db_mb",
        default: "2048",
        ty: SettingType::Int { min: 0, max: 1_048_576 },
        help: "Size cap of security.db: above it the oldest audit events are archived early (0: no cap)",
    },
    SettingSpec {
        key: "audit.min_free_disk_mb",
        default: "1024",
        ty: SettingType::Int { min: 0, max: 1_048_576 },
        help: "Below this much free disk space for security.db the proxy warns (log, audit event, flm check)",
    },
    SettingSpec {
        key: "preferred_language",
        default: "en",
        ty: SettingType::Choice(&["en", "ja"]),
        help: "Language of the desktop UI",
    },
    SettingSpec {
        key: "ui.port",
        default: "8782",
        ty: SettingType::Int { min: 0, max: 65_535 },
        help: "Loopback port of the app (`flm ui`); 0 or a taken port = a random free port",
    },
    SettingSpec {
        key: "ui.theme",
        default: "system",
        ty: SettingType::Choice(&["light", "dark", "system"]),
        help: "Colour theme of the app",
    },
    SettingSpec {
        key: "alert_rules",
        default: crate::alerts::DEFAULT_RULES_JSON,
        ty: SettingType::Json,
        help: "Alert rules: {\"rules\":[{id, eventType, severity, threshold, windowSecs, cooldownSecs, enabled, notifyUI, notifyLog}]} (see docs/guides/configuration.md)",
    },
    SettingSpec {
        key: "log.level",
        default: "info",
        ty: SettingType::Choice(LOG_LEVELS),
        help: "Detail of the daemon's log (logs/proxy.log); applied within a second, no restart. RUST_LOG, when set, wins",
    },
    SettingSpec {
        key: "log.access",
        default: "true",
        ty: SettingType::Bool,
        help: "One JSON line per proxied request in the daemon's log (target flm::access, at info); applied within a second",
    },
    SettingSpec {
        key: "log.max_size_mb",
        default: "50",
        ty: SettingType::Int { min: 1, max: 1_048_576 },
        help: "The daemon's log (logs/proxy.log) is rotated when it grows past this size; applied within a second",
    },
    SettingSpec {
        key: "log.max_files",
        default: "5",
        ty: SettingType::Int { min: 0, max: 100 },
        help: "Rotated logs kept (proxy.log.1 is the newest); 0: the log is truncated instead",
    },
    SettingSpec {
        key: "paths.config",
        default: "",
        ty: SettingType::ReadOnly,
        help: "Location of config.db (diagnostic, read-only)",
    },
];

/// The spec of a known key.
pub fn spec(key: &str) -> Result<&'static SettingSpec, CoreError> {
    SETTINGS.iter().find(|s| s.key == key).ok_or_else(|| {
        let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        CoreError::ConfigNotSet(format!(
            "unknown config key `{key}`; known keys: {}",
            known.join(", ")
        ))
    })
}

/// Validates `value` for `key` and returns its normalised text form.
pub fn validate(key: &str, value: &str) -> Result<String, CoreError> {
    let spec = spec(key)?;
    let value = value.trim();
    match spec.ty {
        SettingType::Int { min, max } => {
            let n: i64 = value.parse().map_err(|_| {
                CoreError::InvalidInput(format!(
                    "invalid value `{value}` for `{key}`: expected an integer from {min} to {max}"
                ))
            })?;
            if n < min || n > max {
                return Err(CoreError::InvalidInput(format!(
                    "invalid value `{value}` for `{key}`: must be from {min} to {max}"
                )));
            }
            Ok(n.to_string())
        }
        SettingType::Bool => match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok("true".into()),
            "false" | "0" | "no" | "off" => Ok("false".into()),
            _ => Err(CoreError::InvalidInput(format!(
                "invalid value `{value}` for `{key}`: expected true or false"
            ))),
        },
        SettingType::Choice(options) => {
            if options.contains(&value) {
                Ok(value.to_owned())
            } else {
                Err(CoreError::InvalidInput(format!(
                    "invalid value `{value}` for `{key}`: expected one of {}",
                    options.join(", ")
                )))
            }
        }
        SettingType::Json if key == crate::alerts::SETTING_KEY => crate::alerts::normalise(value)
            .map_err(|problems| CoreError::InvalidSetting {
                key: key.to_owned(),
                problems,
            }),
        SettingType::Json => serde_json::from_str::<serde_json::Value>(value)
            .map(|v| v.to_string())
            .map_err(|e| CoreError::InvalidInput(format!("invalid JSON for `{key}`: {e}"))),
        SettingType::ReadOnly => Err(CoreError::InvalidInput(format!(
            "`{key}` is computed by FLM and cannot be set"
        ))),
    }
}

/// Engine-related settings, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// Healthy/Degraded boundary.
    pub health_latency_threshold_ms: u64,
    /// Consecutive failures before an engine is taken out of service.
    pub max_network_failures: u32,
    /// Upper bound for one engine's probe.
    pub detect_timeout: Duration,
    /// Timeout of non-streaming engine requests.
    pub request_timeout: Duration,
    /// Detection cache lifetime.
    pub cache_ttl: Duration,
    /// Probe default addresses.
    pub probe_default_ports: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            health_latency_threshold_ms: 1500,
            max_network_failures: 3,
            detect_timeout: Duration::from_millis(5000),
            request_timeout: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(300),
            probe_default_ports: true,
        }
    }
}

/// Proxy settings, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySettings {
    /// Non-streaming request timeout.
    pub request_timeout: Duration,
    /// Ceiling of one streaming response.
    pub stream_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// What `/engine/{id}/*` may reach.
    pub passthrough: PassthroughMode,
    /// Engine re-check interval.
    pub engine_check_interval: Duration,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Open connections per client address (IPv6: per /64).
    pub max_connections_per_ip: u32,
    /// A response write without progress this long closes the connection.
    pub send_timeout: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            stream_timeout: Duration::from_secs(1800),
            max_body_bytes: 10 * 1024 * 1024,
            passthrough: PassthroughMode::ReadOnly,
            engine_check_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            max_connections_per_ip: 128,
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// What the engine pass-through (`/engine/{id}/*`) may reach (`proxy.passthrough`).
///
/// Global: it applies to every API key (per-key permissions do not exist yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassthroughMode {
    /// Only each engine kind's reads and inference routes (the default): an API key
    /// must not be enough to delete, fetch or reconfigure an engine's models.
    #[default]
    ReadOnly,
    /// Every engine route.
    Full,
    /// No pass-through at all.
    Off,
}

impl PassthroughMode {
    /// The accepted setting values.
    pub const CHOICES: &'static [&'static str] = &["read-only", "full", "off"];

    /// The setting value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Full => "full",
            Self::Off => "off",
        }
    }

    /// Parses a setting value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "read-only" => Some(Self::ReadOnly),
            "full" => Some(Self::Full),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        for s in SETTINGS {
            if s.ty != SettingType::ReadOnly {
                assert_eq!(validate(s.key, s.default).unwrap(), s.default, "{}", s.key);
            }
        }
    }

    #[test]
    fn bad_values_are_precise() {
        let e = validate("engine.max_network_failures", "zero").unwrap_err();
        assert!(
            e.to_string().contains("expected an integer from 1 to 100"),
            "{e}"
        );
        let e = validate("engine.nope", "1").unwrap_err();
        assert_eq!(e.code(), "CONFIG_NOT_SET");
        assert!(e.to_string().contains("engine.health_latency_threshold_ms"));
        assert_eq!(
            validate("engine.probe_default_ports", "OFF").unwrap(),
            "false"
        );
        assert!(validate("paths.config", "/x").is_err());
        assert!(validate("alert_rules", "{").is_err());
    }

    #[test]
    fn alert_rules_are_validated_field_by_field() {
        let e = validate(
            "alert_rules",
            r#"{"rules":[{"id":"x","eventType":"intrusion","severity":"loud"}]}"#,
        )
        .unwrap_err();
        match &e {
            CoreError::InvalidSetting { key, problems } => {
                assert_eq!(key, "alert_rules");
                assert_eq!(problems[0].field, "rules[0].severity");
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("`rules[0].severity`"), "{e}");
        // The legacy default (a bare empty array) is accepted and stored as an object.
        assert_eq!(validate("alert_rules", "[]").unwrap(), r#"{"rules":[]}"#);
    }

    #[test]
    fn log_level_is_a_choice() {
        assert_eq!(validate("log.level", "debug").unwrap(), "debug");
        let e = validate("log.level", "verbose").unwrap_err();
        assert!(
            e.to_string().contains("error, warn, info, debug, trace"),
            "{e}"
        );
    }

    #[test]
    fn passthrough_mode_is_a_checked_choice() {
        for v in PassthroughMode::CHOICES {
            assert_eq!(PassthroughMode::parse(v).unwrap().as_str(), *v);
        }
        let e = validate("proxy.passthrough", "rw").unwrap_err();
        assert!(e.to_string().contains("read-only, full, off"), "{e}");
        assert_eq!(
            spec("proxy.passthrough").unwrap().default,
            PassthroughMode::default().as_str()
        );
    }
}
