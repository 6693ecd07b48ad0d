//! Request and response bodies of the session, dashboard, engines, proxy, models and
//! config endpoints, and the payloads of the live event stream.
//!
//! These structs are the wire format: the app's TypeScript types
//! (`ui/src/api/generated/`) are generated from them (see `crate::ui_api::ts`), so a
//! field changed here changes the app's types, and a stale generated file fails
//! `cargo test`.

use flm_core::alerts::AlertEventType;
use flm_core::engine::EngineKind;
use flm_core::security::{AuditSeverity, SecurityWarning};
use serde::{Deserialize, Serialize};

/// Display language of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    Ja,
}

impl Language {
    /// The stored `preferred_language` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "en" => Some(Self::En),
            "ja" => Some(Self::Ja),
            _ => None,
        }
    }
}

/// Colour theme of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    Light,
    Dark,
    System,
}

impl Theme {
    /// The stored `ui.theme` value; anything else is `system`.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "light" => Self::Light,
            "dark" => Self::Dark,
            _ => Self::System,
        }
    }
}

/// `GET /session`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SessionView {
    /// Send it as `X-FLM-CSRF` on every non-GET call.
    pub csrf_token: String,
    /// When the session ends if unused (idle limit), RFC 3339.
    pub expires_at: String,
    /// FLM's version.
    pub version: String,
    /// `preferred_language` when the user has set it; `null` otherwise, so the app
    /// picks the browser's language (Japanese when that is neither).
    pub language: Option<Language>,
    pub theme: Theme,
}

/// TLS certificate of the running proxy.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CertificateView {
    pub subject: String,
    pub not_after: String,
    pub days_left: i64,
    pub self_signed: bool,
}

/// The proxy (`running: false` and nulls when none runs).
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ProxyView {
    pub running: bool,
    /// `local-http`, `dev-selfsigned`, `https-acme`, `packaged-ca`.
    pub mode: Option<String>,
    pub listen: Option<String>,
    pub port: Option<u16>,
    pub https_port: Option<u16>,
    pub acme_domain: Option<String>,
    /// `direct`, `tor://…`, `socks5://…`.
    pub egress: Option<String>,
    pub certificate: Option<CertificateView>,
    pub started_at: Option<String>,
}

/// Where a user-facing URL of the proxy is reachable from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum EndpointScope {
    ThisPc,
    Lan,
    Internet,
}

/// A URL clients use (never a wildcard address).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EndpointUrl {
    pub scope: EndpointScope,
    pub url: String,
}

/// A missing protection, with the app route whose form fixes it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SecurityWarningView {
    pub code: SecurityWarning,
    pub fix_route: String,
}

/// Engine health as the app shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum EngineHealth {
    Healthy,
    Degraded,
    Down,
    InstalledOnly,
}

/// What a model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ModelCapability {
    Chat,
    ChatStream,
    Embeddings,
    VisionInputs,
    AudioInputs,
    Tools,
    Reasoning,
}

/// A model of an engine.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EngineModel {
    /// `flm://engine/model`.
    pub id: String,
    pub name: String,
    pub capabilities: Vec<ModelCapability>,
}

/// An engine.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EngineView {
    pub id: String,
    pub kind: EngineKind,
    pub name: String,
    pub base_url: String,
    pub status: EngineHealth,
    pub latency_ms: Option<u64>,
    pub checked_at: Option<String>,
    pub models: Vec<EngineModel>,
    /// The engine's capability flags that are on (`chat`, `vision_inputs`, …).
    pub capabilities: Vec<String>,
    /// Why it is degraded or down.
    pub error: Option<String>,
}

/// `GET /dashboard`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DashboardView {
    pub proxy: ProxyView,
    pub engines: Vec<EngineView>,
    pub endpoints: Vec<EndpointUrl>,
    pub warnings: Vec<SecurityWarningView>,
    /// Active (unrevoked) API keys.
    pub key_count: usize,
}

/// `POST /engines/detect`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EngineList {
    pub engines: Vec<EngineView>,
}

/// `POST /proxy/start` (an empty body is `{}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ProxyStartRequest {
    /// Default `local-http`.
    #[cfg_attr(test, ts(optional))]
    pub mode: Option<String>,
    /// Default: the `proxy.port` setting.
    #[cfg_attr(test, ts(optional))]
    pub port: Option<u16>,
    /// Default `127.0.0.1`.
    #[cfg_attr(test, ts(optional))]
    pub listen: Option<String>,
}

/// A model, for the chat tester's picker.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ModelView {
    /// `flm://engine/model`.
    pub id: String,
    pub engine_id: String,
    pub name: String,
    pub capabilities: Vec<ModelCapability>,
}

/// `GET /models`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ModelList {
    pub models: Vec<ModelView>,
}

/// How a setting's value is edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    Int,
    Bool,
    /// Read-only, computed by FLM.
    String,
    Choice,
    Json,
}

/// One setting with its effective value.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SettingView {
    pub key: String,
    pub value: String,
    pub default: String,
    pub help: String,
    pub kind: SettingKind,
    /// The allowed values of a `choice`.
    pub choices: Option<Vec<String>>,
}

/// `GET /config`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SettingList {
    pub settings: Vec<SettingView>,
}

/// `PUT /config/{key}`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SetSettingRequest {
    pub value: String,
}

// ---------------------------------------------------------------------------------------
// live events
// ---------------------------------------------------------------------------------------

/// `engine`: an engine the running proxy routes to came or went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EngineEvent {
    pub engine_id: String,
    pub status: EngineHealth,
}

/// `proxy`: a proxy started or stopped (however requested).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ProxyEvent {
    pub running: bool,
}

/// `ban`: an address or range is blocked (by hand or by the proxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BanEvent {
    pub ip: String,
    /// End of a temporary block (RFC 3339).
    pub until: Option<String>,
    pub permanent: bool,
}

/// `unblock`: an address or range is no longer blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UnblockEvent {
    pub ip: String,
}

/// `config`: a setting was changed in the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ConfigEvent {
    pub key: String,
}

/// `alert`: an alert rule fired (setting `alert_rules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AlertEvent {
    pub rule_id: String,
    /// What the rule watches (`intrusion`, `anomaly`, `rate_limit`, `api_error`,
    /// `auth_failure`, `ip_blocked`).
    pub event_type: AlertEventType,
    /// The rule's severity (the least severe event that counts).
    pub severity: AuditSeverity,
    /// The most severe matching event in the window.
    pub max_severity: AuditSeverity,
    /// Matching events in the window when it fired.
    pub count: u32,
    pub threshold: u32,
    pub window_secs: u32,
    /// Matching events during the cool-down before this alert (not alerted then).
    pub suppressed: u64,
    /// For a human (English; the app shows its own text).
    pub message: String,
    /// When it fired (RFC 3339).
    pub at: String,
    /// The address of the last matching event, when known.
    pub ip: Option<String>,
}

/// The payload of events that only say "refetch" (`keys`, `policy`): `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Changed {}

/// An event of `GET /events`: on the wire `event: <kind>` and `data: <data as JSON>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum AppEvent {
    Engine(EngineEvent),
    Proxy(ProxyEvent),
    Ban(BanEvent),
    Unblock(UnblockEvent),
    Keys(Changed),
    Policy(Changed),
    Config(ConfigEvent),
    Alert(AlertEvent),
}

impl AppEvent {
    /// The SSE `event:` name: the serde tag (a unit test keeps the two equal).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Engine(_) => "engine",
            Self::Proxy(_) => "proxy",
            Self::Ban(_) => "ban",
            Self::Unblock(_) => "unblock",
            Self::Keys(_) => "keys",
            Self::Policy(_) => "policy",
            Self::Config(_) => "config",
            Self::Alert(_) => "alert",
        }
    }

    /// The SSE `data:` payload.
    pub fn data(&self) -> serde_json::Value {
        let data = match self {
            Self::Engine(d) => serde_json::to_value(d),
            Self::Proxy(d) => serde_json::to_value(d),
            Self::Ban(d) => serde_json::to_value(d),
            Self::Unblock(d) => serde_json::to_value(d),
            Self::Keys(d) | Self::Policy(d) => serde_json::to_value(d),
            Self::Config(d) => serde_json::to_value(d),
            Self::Alert(d) => serde_json::to_value(d),
        };
        // Plain structs of strings and booleans always serialise.
        data.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_kind_is_its_serde_tag_and_its_data_the_payload() {
        let all = [
            AppEvent::Engine(EngineEvent {
                engine_id: "e".into(),
                status: EngineHealth::Down,
            }),
            AppEvent::Proxy(ProxyEvent { running: true }),
            AppEvent::Ban(BanEvent {
                ip: "203.0.113.9".into(),
                until: None,
                permanent: true,
            }),
            AppEvent::Unblock(UnblockEvent { ip: "*".into() }),
            AppEvent::Keys(Changed {}),
            AppEvent::Policy(Changed {}),
            AppEvent::Config(ConfigEvent {
                key: "ui.theme".into(),
            }),
            AppEvent::Alert(AlertEvent {
                rule_id: "intrusion".into(),
                event_type: AlertEventType::Intrusion,
                severity: AuditSeverity::High,
                max_severity: AuditSeverity::Critical,
                count: 1,
                threshold: 1,
                window_secs: 60,
                suppressed: 0,
                message: "m".into(),
                at: "2026-12-05T00:00:00Z".into(),
                ip: None,
            }),
        ];
        for ev in all {
            let v = serde_json::to_value(&ev).unwrap();
            assert_eq!(v["kind"], ev.kind(), "{v}");
            assert_eq!(v["data"], ev.data(), "{v}");
        }
        assert_eq!(AppEvent::Keys(Changed {}).data().to_string(), "{}");
    }
}
