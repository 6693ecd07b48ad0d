//! `flm config get|set|list`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::{self, EngineSettings, ProxySettings, SettingType, SETTINGS};
use crate::error::CoreError;
use crate::ports::SettingsRepository;

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueSource {
    /// Stored with `flm config set`.
    Set,
    /// The built-in default.
    Default,
    /// Computed by FLM.
    Computed,
}

/// One key with its effective value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigEntry {
    /// Key.
    pub key: String,
    /// Effective value.
    pub value: String,
    /// Origin of the value.
    pub source: ValueSource,
    /// Last change, for stored values (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// Reads and writes validated settings.
#[derive(Clone)]
pub struct ConfigService {
    repo: Arc<dyn SettingsRepository>,
    config_path: String,
}

impl ConfigService {
    /// `config_path` is reported as the read-only `paths.config` key.
    pub fn new(repo: Arc<dyn SettingsRepository>, config_path: impl Into<String>) -> Self {
        Self {
            repo,
            config_path: config_path.into(),
        }
    }

    /// Effective value of a known key.
    pub async fn get(&self, key: &str) -> Result<ConfigEntry, CoreError> {
        let spec = config::spec(key)?;
        if spec.ty == SettingType::ReadOnly {
            return Ok(self.computed(key));
        }
        Ok(match self.repo.get(key).await? {
            Some(row) => ConfigEntry {
                key: row.key,
                value: row.value,
                source: ValueSource::Set,
                updated_at: Some(row.updated_at.to_rfc3339()),
            },
            None => ConfigEntry {
                key: key.to_owned(),
                value: spec.default.to_owned(),
                source: ValueSource::Default,
                updated_at: None,
            },
        })
    }

    /// Validates and stores a value; returns the stored entry.
    pub async fn set(&self, key: &str, value: &str) -> Result<ConfigEntry, CoreError> {
        let normalised = config::validate(key, value)?;
        self.repo.set(key, &normalised).await?;
        self.get(key).await
    }

    /// Every known key with its effective value, plus stored keys FLM no longer knows.
    pub async fn list(&self) -> Result<Vec<ConfigEntry>, CoreError> {
        let stored = self.repo.list().await?;
        let mut out = Vec::with_capacity(SETTINGS.len());
        for spec in SETTINGS {
            if spec.ty == SettingType::ReadOnly {
                out.push(self.computed(spec.key));
                continue;
            }
            match stored.iter().find(|r| r.key == spec.key) {
                Some(row) => out.push(ConfigEntry {
                    key: row.key.clone(),
                    value: row.value.clone(),
                    source: ValueSource::Set,
                    updated_at: Some(row.updated_at.to_rfc3339()),
                }),
                None => out.push(ConfigEntry {
                    key: spec.key.to_owned(),
                    value: spec.default.to_owned(),
                    source: ValueSource::Default,
                    updated_at: None,
                }),
            }
        }
        for row in stored {
            if config::spec(&row.key).is_err() {
                out.push(ConfigEntry {
                    key: row.key,
                    value: row.value,
                    source: ValueSource::Set,
                    updated_at: Some(row.updated_at.to_rfc3339()),
                });
            }
        }
        Ok(out)
    }

    /// Engine settings, typed. A stored value that no longer validates falls back to
    /// the default with a warning instead of failing every command.
    pub async fn engine_settings(&self) -> Result<EngineSettings, CoreError> {
        let rows = self.repo.list().await?;
        let int = |key: &str, default: u64| -> u64 {
            rows.iter()
                .find(|r| r.key == key)
                .and_then(|r| match config::validate(key, &r.value) {
                    Ok(v) => v.parse().ok(),
                    Err(e) => {
                        tracing::warn!(key, error = %e, "ignoring invalid stored setting");
                        None
                    }
                })
                .unwrap_or(default)
        };
        let d = EngineSettings::default();
        let probe_default_ports = rows
            .iter()
            .find(|r| r.key == "engine.probe_default_ports")
            .map(|r| r.value != "false")
            .unwrap_or(d.probe_default_ports);
        Ok(EngineSettings {
            health_latency_threshold_ms: int(
                "engine.health_latency_threshold_ms",
                d.health_latency_threshold_ms,
            ),
            max_network_failures: u32::try_from(int(
                "engine.max_network_failures",
                u64::from(d.max_network_failures),
            ))
            .unwrap_or(d.max_network_failures),
            detect_timeout: Duration::from_millis(int(
                "engine.detect_timeout_ms",
                millis(d.detect_timeout),
            )),
            request_timeout: Duration::from_secs(int(
                "engine.request_timeout_secs",
                d.request_timeout.as_secs(),
            )),
            cache_ttl: Duration::from_secs(int("engine.cache_ttl_secs", d.cache_ttl.as_secs())),
            probe_default_ports,
        })
    }

    /// Proxy settings, typed; invalid stored values fall back to defaults.
    pub async fn proxy_settings(&self) -> Result<ProxySettings, CoreError> {
        let rows = self.repo.list().await?;
        let int = |key: &str, default: u64| -> u64 {
            rows.iter()
                .find(|r| r.key == key)
                .and_then(|r| config::validate(key, &r.value).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let d = ProxySettings::default();
        Ok(ProxySettings {
            request_timeout: Duration::from_secs(int(
                "proxy.request_timeout_secs",
                d.request_timeout.as_secs(),
            )),
            stream_timeout: Duration::from_secs(int(
                "proxy.stream_timeout_secs",
                d.stream_timeout.as_secs(),
            )),
            max_body_bytes: usize::try_from(int("proxy.max_body_bytes", d.max_body_bytes as u64))
                .unwrap_or(d.max_body_bytes),
            passthrough: rows
                .iter()
                .find(|r| r.key == "proxy.passthrough")
                .and_then(|r| config::PassthroughMode::parse(r.value.trim()))
                .unwrap_or(d.passthrough),
            engine_check_interval: Duration::from_secs(int(
                "proxy.engine_check_interval_secs",
                d.engine_check_interval.as_secs(),
            )),
            shutdown_grace: Duration::from_secs(int(
                "proxy.shutdown_grace_secs",
                d.shutdown_grace.as_secs(),
            )),
            max_connections_per_ip: u32::try_from(int(
                "proxy.max_connections_per_ip",
                u64::from(d.max_connections_per_ip),
            ))
            .unwrap_or(d.max_connections_per_ip),
            send_timeout: Duration::from_secs(int(
                "proxy.send_timeout_secs",
                d.send_timeout.as_secs(),
            )),
        })
    }

    fn computed(&self, key: &str) -> ConfigEntry {
        ConfigEntry {
            key: key.to_owned(),
            value: match key {
                "paths.config" => self.config_path.clone(),
                _ => String::new(),
            },
            source: ValueSource::Computed,
            updated_at: None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
