//! Session, dashboard, proxy, engines, models and config endpoints of the app API.
//! Thin: the logic is in the core services (warnings, settings validation), the
//! manager (proxy handles and their user-facing URLs) and the engine service.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use flm_core::config::{SettingType, SETTINGS};
use flm_core::engine::{EngineState, EngineStatus, ModelInfo};
use flm_core::proxy::{ProxyConfig, ProxyHandle, ProxyMode};
use flm_core::security::{security_warnings, ExposureFacts};
use flm_core::services::engine_service::DetectOptions;
use flm_core::CoreError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Session, UiState};
use crate::ui_api::{FieldError, UiError};
use crate::StopTarget;

type St = State<Arc<UiState>>;

pub(crate) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route("/session", get(session))
        .route("/logout", post(logout))
        .route("/dashboard", get(dashboard))
        .route("/engines/detect", post(detect))
        .route("/proxy/start", post(proxy_start))
        .route("/proxy/stop", post(proxy_stop))
        .route("/models", get(models))
        .route("/config", get(config_list))
        .route("/config/{key}", put(config_set))
        .route("/events", get(super::events::stream))
        .route("/chat/completions", post(super::chat::completions))
}

/// A core error as an app error (user errors 409/422-ish, failures 500).
fn core(e: CoreError) -> UiError {
    match e.exit_code() {
        2 => UiError::internal(e),
        _ => UiError::new(StatusCode::CONFLICT, "core_error", e.to_string()).with_code(e.code()),
    }
}

trait WithCode {
    fn with_code(self, code: &'static str) -> Self;
}

impl WithCode for UiError {
    /// Keeps the core's stable code (lower-cased codes are the app's own).
    fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

async fn session(st: St, Extension(s): Extension<Session>) -> Result<Json<Value>, UiError> {
    let language = st
        .deps
        .config
        .get("preferred_language")
        .await
        .ok()
        .filter(|e| e.source == flm_core::services::config_service::ValueSource::Set)
        .map(|e| e.value);
    let theme = st.deps.config.get("ui.theme").await.map_err(core)?.value;
    Ok(Json(json!({
        "csrf_token": s.csrf_token,
        "expires_at": s.expires_at(&st.sessions.timing(), Instant::now()).to_rfc3339(),
        "version": env!("CARGO_PKG_VERSION"),
        "language": language,
        "theme": theme,
    })))
}

async fn logout(st: St, Extension(s): Extension<Session>) -> Response {
    st.sessions.end(&s.id);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        axum::http::header::SET_COOKIE,
        axum::http::HeaderValue::from_static(
            "flm_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    resp
}

fn proxy_view(handles: &[ProxyHandle]) -> Value {
    let Some(h) = handles.first() else {
        return json!({"running": false, "mode": null, "listen": null, "port": null,
            "https_port": null, "acme_domain": null, "egress": null, "certificate": null,
            "started_at": null});
    };
    let certificate = h.tls.as_ref().map(|t| {
        let days_left = chrono::DateTime::parse_from_rfc3339(&t.not_after)
            .map(|na| (na.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days())
            .unwrap_or(0);
        json!({
            "subject": t.sans.first().cloned().unwrap_or_default(),
            "not_after": t.not_after,
            "days_left": days_left,
            "self_signed": h.mode == ProxyMode::DevSelfsigned,
        })
    });
    json!({
        "running": h.running,
        "mode": h.mode.slug(),
        "listen": h.listen_addr,
        "port": h.port,
        "https_port": h.https_port,
        "acme_domain": h.acme_domain,
        "egress": h.egress.display_url(),
        "certificate": certificate,
        "started_at": h.started_at,
    })
}

/// The handle's user-facing URLs (computed by the manager; never a wildcard).
fn endpoints(handles: &[ProxyHandle]) -> Vec<Value> {
    let mut v = Vec::new();
    for h in handles {
        v.push(json!({"scope": "this_pc", "url": h.endpoints.localhost}));
        if let Some(u) = &h.endpoints.local_network {
            v.push(json!({"scope": "lan", "url": u}));
        }
        if let Some(u) = &h.endpoints.external {
            v.push(json!({"scope": "internet", "url": u}));
        }
    }
    v
}

fn model_caps(m: &ModelInfo) -> Vec<&'static str> {
    let mut c = Vec::new();
    for (on, name) in [
        (m.supports_chat, "chat"),
        (m.supports_streaming, "chat_stream"),
        (m.supports_embeddings, "embeddings"),
        (m.vision, "vision_inputs"),
        (m.audio_inputs, "audio_inputs"),
        (m.tools, "tools"),
        (m.reasoning, "reasoning"),
    ] {
        if on {
            c.push(name);
        }
    }
    c
}

fn engine_view(e: &EngineState, models: &[ModelInfo]) -> Value {
    let (status, latency, error) = match &e.status {
        EngineStatus::InstalledOnly => ("installed_only", None, None),
        EngineStatus::RunningHealthy { latency_ms } => ("healthy", Some(*latency_ms), None),
        EngineStatus::RunningDegraded { latency_ms, reason } => {
            ("degraded", Some(*latency_ms), Some(reason.clone()))
        }
        EngineStatus::ErrorNetwork { reason, .. } => ("down", None, Some(reason.clone())),
        EngineStatus::ErrorApi { reason, .. } => ("down", None, Some(reason.clone())),
    };
    let caps = serde_json::to_value(&e.capabilities)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|o| {
            o.into_iter()
                .filter(|(_, v)| v == &Value::Bool(true))
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let models: Vec<Value> = models
        .iter()
        .filter(|m| m.engine_id == e.id)
        .map(|m| json!({"id": m.id.to_string(), "name": m.display_name, "capabilities": model_caps(m)}))
        .collect();
    json!({
        "id": e.id.to_string(),
        "kind": e.kind,
        "name": e.name,
        "base_url": e.base_url.clone().unwrap_or_default(),
        "status": status,
        "latency_ms": latency,
        "checked_at": e.checked_at.to_rfc3339(),
        "models": models,
        "capabilities": caps,
        "error": error,
    })
}

async fn engines(st: &UiState, fresh: bool) -> Result<Vec<Value>, UiError> {
    let report = st
        .deps
        .engines
        .detect(&DetectOptions {
            filter: None,
            fresh,
        })
        .await
        .map_err(core)?;
    // Models of engines that answer; an engine that fails to list shows none.
    let models = match st.deps.engines.list_models(None).await {
        Ok(l) => l.models,
        Err(e) => {
            tracing::warn!(error = %e, "app: listing models failed");
            Vec::new()
        }
    };
    Ok(report
        .engines
        .iter()
        .map(|e| engine_view(e, &models))
        .collect())
}

async fn dashboard(st: St) -> Result<Json<Value>, UiError> {
    let handles = st.deps.manager.status();
    let keys = st.deps.keys.list().await.map_err(core)?;
    let active_keys = keys.iter().filter(|k| !k.revoked).count();
    let (allow_list, rate_limit) = match &st.deps.security {
        Some(sec) => match sec.policy.load().await.map_err(UiError::internal)? {
            Some(p) => match flm_guard::SecurityPolicy::from_json_str(&p.policy_json) {
                Ok(p) => (!p.ip_whitelist.is_empty(), p.rate_limit.is_some()),
                Err(_) => (false, false),
            },
            None => (false, false),
        },
        None => (false, false),
    };
    let exposed: Vec<&ProxyHandle> = handles
        .iter()
        .filter(|h| {
            h.listen_addr
                .parse::<IpAddr>()
                .map_or(true, |ip| !ip.is_loopback())
        })
        .collect();
    let facts = ExposureFacts {
        active_keys,
        allow_list,
        rate_limit,
        exposed: !exposed.is_empty(),
        exposed_plain_http: exposed.iter().any(|h| h.mode == ProxyMode::LocalHttp),
    };
    let warnings: Vec<Value> = security_warnings(&facts)
        .into_iter()
        .map(|w| json!({"code": w, "fix_route": w.fix_route()}))
        .collect();
    Ok(Json(json!({
        "proxy": proxy_view(&handles),
        "engines": engines(&st, false).await?,
        "endpoints": endpoints(&handles),
        "warnings": warnings,
        "key_count": active_keys,
    })))
}

async fn detect(st: St) -> Result<Json<Value>, UiError> {
    Ok(Json(json!({"engines": engines(&st, true).await?})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartBody {
    mode: Option<String>,
    port: Option<u16>,
    listen: Option<String>,
}

async fn proxy_start(st: St, body: axum::body::Bytes) -> Result<Json<Value>, UiError> {
    let b: StartBody = if body.is_empty() {
        StartBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| UiError::bad_request("invalid_body", format!("invalid request: {e}")))?
    };
    let port = match b.port {
        Some(p) => p,
        None => {
            let v = st.deps.config.get("proxy.port").await.map_err(core)?.value;
            v.parse().map_err(|_| {
                UiError::new(
                    StatusCode::CONFLICT,
                    "invalid_setting",
                    format!("the proxy.port setting `{v}` is not a port"),
                )
            })?
        }
    };
    let config: ProxyConfig = serde_json::from_value(json!({
        "mode": b.mode.unwrap_or_else(|| "local-http".into()),
        "port": port,
        "listen_addr": b.listen.unwrap_or_else(|| "127.0.0.1".into()),
    }))
    .map_err(|e| {
        UiError::invalid(
            "invalid_proxy_config",
            "invalid proxy settings",
            vec![FieldError {
                path: "mode".into(),
                message: e.to_string(),
            }],
        )
    })?;
    config.validate().map_err(|e| {
        UiError::invalid(
            "invalid_proxy_config",
            e.to_string(),
            vec![FieldError {
                path: "listen".into(),
                message: e.to_string(),
            }],
        )
    })?;
    st.deps.manager.start(config).await.map_err(core)?;
    tracing::info!(port, "app: proxy started");
    Ok(Json(proxy_view(&st.deps.manager.status())))
}

async fn proxy_stop(st: St) -> Result<Json<Value>, UiError> {
    st.deps
        .manager
        .stop(&StopTarget::default())
        .await
        .map_err(core)?;
    tracing::info!("app: proxy stopped");
    Ok(Json(proxy_view(&st.deps.manager.status())))
}

async fn models(st: St) -> Result<Json<Value>, UiError> {
    let listing = st.deps.engines.list_models(None).await.map_err(core)?;
    let models: Vec<Value> = listing
        .models
        .iter()
        .map(|m| {
            json!({"id": m.id.to_string(), "engine_id": m.engine_id.to_string(),
                "name": m.display_name, "capabilities": model_caps(m)})
        })
        .collect();
    Ok(Json(json!({"models": models})))
}

fn setting_view(key: &str, value: &str) -> Option<Value> {
    let spec = SETTINGS.iter().find(|s| s.key == key)?;
    let (kind, choices) = match spec.ty {
        SettingType::Int { .. } => ("int", None),
        SettingType::Bool => ("bool", None),
        SettingType::Choice(c) => ("choice", Some(c.to_vec())),
        SettingType::Json => ("json", None),
        SettingType::ReadOnly => ("string", None),
    };
    Some(
        json!({"key": key, "value": value, "default": spec.default, "help": spec.help,
        "kind": kind, "choices": choices}),
    )
}

async fn config_list(st: St) -> Result<Json<Value>, UiError> {
    let entries = st.deps.config.list().await.map_err(core)?;
    let settings: Vec<Value> = entries
        .iter()
        .filter_map(|e| setting_view(&e.key, &e.value))
        .collect();
    Ok(Json(json!({"settings": settings})))
}

#[derive(Deserialize)]
struct SetBody {
    value: String,
}

async fn config_set(
    st: St,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, UiError> {
    let b: SetBody = serde_json::from_slice(&body).map_err(|e| {
        UiError::bad_request(
            "invalid_body",
            format!("expected {{\"value\": \"…\"}}: {e}"),
        )
    })?;
    let entry = st
        .deps
        .config
        .set(&key, &b.value)
        .await
        .map_err(|e| match e {
            CoreError::InvalidSetting { ref problems, .. } => UiError::invalid(
                "invalid_setting",
                e.to_string(),
                problems
                    .iter()
                    .map(|p| FieldError {
                        path: p.field.clone(),
                        message: p.message.clone(),
                    })
                    .collect(),
            ),
            CoreError::InvalidInput(m) | CoreError::ConfigNotSet(m) => UiError::invalid(
                "invalid_setting",
                m.clone(),
                vec![FieldError {
                    path: key.clone(),
                    message: m,
                }],
            ),
            other => core(other),
        })?;
    st.events.publish("config", json!({"key": entry.key}));
    setting_view(&entry.key, &entry.value)
        .map(Json)
        .ok_or_else(|| UiError::internal(format!("setting {key} has no spec")))
}
