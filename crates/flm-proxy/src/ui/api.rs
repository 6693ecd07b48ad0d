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
use flm_core::services::ValueSource;
use flm_core::CoreError;
use serde_json::json;

use super::types::{
    AppEvent, CertificateView, ConfigEvent, DashboardView, EndpointScope, EndpointUrl,
    EngineHealth, EngineList, EngineModel, EngineView, Language, ModelCapability, ModelList,
    ModelView, ProxyStartRequest, ProxyView, SecurityWarningView, SessionView, SetSettingRequest,
    SettingKind, SettingList, SettingView, Theme,
};
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

async fn session(st: St, Extension(s): Extension<Session>) -> Result<Json<SessionView>, UiError> {
    // Only a language the user chose: the built-in default would hide the browser's.
    let language = st
        .deps
        .config
        .get("preferred_language")
        .await
        .map_err(UiError::from)?;
    let language = match language.source {
        ValueSource::Set => Language::parse(&language.value),
        ValueSource::Default | ValueSource::Computed => None,
    };
    let theme = st.deps.config.get("ui.theme").await?.value;
    Ok(Json(SessionView {
        csrf_token: s.csrf_token.clone(),
        expires_at: s
            .expires_at(&st.sessions.timing(), Instant::now())
            .to_rfc3339(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        language,
        theme: Theme::parse(&theme),
    }))
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

fn proxy_view(handles: &[ProxyHandle]) -> ProxyView {
    let Some(h) = handles.first() else {
        return ProxyView::default();
    };
    let certificate = h.tls.as_ref().map(|t| {
        let days_left = chrono::DateTime::parse_from_rfc3339(&t.not_after)
            .map(|na| (na.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days())
            .unwrap_or(0);
        CertificateView {
            subject: t.sans.first().cloned().unwrap_or_default(),
            not_after: t.not_after.clone(),
            days_left,
            self_signed: h.mode == ProxyMode::DevSelfsigned,
        }
    });
    ProxyView {
        running: h.running,
        mode: Some(h.mode.slug().to_owned()),
        listen: Some(h.listen_addr.clone()),
        port: Some(h.port),
        https_port: h.https_port,
        acme_domain: h.acme_domain.clone(),
        egress: Some(h.egress.display_url()),
        certificate,
        started_at: Some(h.started_at.clone()),
    }
}

/// The handle's user-facing URLs (computed by the manager; never a wildcard).
fn endpoints(handles: &[ProxyHandle]) -> Vec<EndpointUrl> {
    let mut v = Vec::new();
    for h in handles {
        let url = |scope, url: &String| EndpointUrl {
            scope,
            url: url.clone(),
        };
        v.push(url(EndpointScope::ThisPc, &h.endpoints.localhost));
        if let Some(u) = &h.endpoints.local_network {
            v.push(url(EndpointScope::Lan, u));
        }
        if let Some(u) = &h.endpoints.external {
            v.push(url(EndpointScope::Internet, u));
        }
    }
    v
}

fn model_caps(m: &ModelInfo) -> Vec<ModelCapability> {
    let mut c = Vec::new();
    for (on, cap) in [
        (m.supports_chat, ModelCapability::Chat),
        (m.supports_streaming, ModelCapability::ChatStream),
        (m.supports_embeddings, ModelCapability::Embeddings),
        (m.vision, ModelCapability::VisionInputs),
        (m.audio_inputs, ModelCapability::AudioInputs),
        (m.tools, ModelCapability::Tools),
        (m.reasoning, ModelCapability::Reasoning),
    ] {
        if on {
            c.push(cap);
        }
    }
    c
}

fn engine_view(e: &EngineState, models: &[ModelInfo]) -> EngineView {
    let (status, latency, error) = match &e.status {
        EngineStatus::InstalledOnly => (EngineHealth::InstalledOnly, None, None),
        EngineStatus::RunningHealthy { latency_ms } => {
            (EngineHealth::Healthy, Some(*latency_ms), None)
        }
        EngineStatus::RunningDegraded { latency_ms, reason } => (
            EngineHealth::Degraded,
            Some(*latency_ms),
            Some(reason.clone()),
        ),
        EngineStatus::ErrorNetwork { reason, .. } | EngineStatus::ErrorApi { reason, .. } => {
            (EngineHealth::Down, None, Some(reason.clone()))
        }
    };
    // The flags that are on, by their serialised names (`chat`, `vision_inputs`, …).
    let capabilities = serde_json::to_value(&e.capabilities)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|o| {
            o.into_iter()
                .filter(|(_, v)| v == &serde_json::Value::Bool(true))
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let models = models
        .iter()
        .filter(|m| m.engine_id == e.id)
        .map(|m| EngineModel {
            id: m.id.to_string(),
            name: m.display_name.clone(),
            capabilities: model_caps(m),
        })
        .collect();
    EngineView {
        id: e.id.to_string(),
        kind: e.kind,
        name: e.name.clone(),
        base_url: e.base_url.clone().unwrap_or_default(),
        status,
        latency_ms: latency,
        checked_at: Some(e.checked_at.to_rfc3339()),
        models,
        capabilities,
        error,
    }
}

async fn engines(st: &UiState, fresh: bool) -> Result<Vec<EngineView>, UiError> {
    let report = st
        .deps
        .engines
        .detect(&DetectOptions {
            filter: None,
            fresh,
        })
        .await?;
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

async fn dashboard(st: St) -> Result<Json<DashboardView>, UiError> {
    let handles = st.deps.manager.status();
    let keys = st.deps.keys.list().await?;
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
    let warnings = security_warnings(&facts)
        .into_iter()
        .map(|w| SecurityWarningView {
            code: w,
            fix_route: w.fix_route().to_owned(),
        })
        .collect();
    Ok(Json(DashboardView {
        proxy: proxy_view(&handles),
        engines: engines(&st, false).await?,
        endpoints: endpoints(&handles),
        warnings,
        key_count: active_keys,
    }))
}

async fn detect(st: St) -> Result<Json<EngineList>, UiError> {
    Ok(Json(EngineList {
        engines: engines(&st, true).await?,
    }))
}

async fn proxy_start(st: St, body: axum::body::Bytes) -> Result<Json<ProxyView>, UiError> {
    let b: ProxyStartRequest = if body.is_empty() {
        ProxyStartRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| UiError::bad_request("invalid_body", format!("invalid request: {e}")))?
    };
    let port = match b.port {
        Some(p) => p,
        None => {
            let v = st.deps.config.get("proxy.port").await?.value;
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
    st.deps.manager.start(config).await?;
    tracing::info!(port, "app: proxy started");
    Ok(Json(proxy_view(&st.deps.manager.status())))
}

async fn proxy_stop(st: St) -> Result<Json<ProxyView>, UiError> {
    st.deps.manager.stop(&StopTarget::default()).await?;
    tracing::info!("app: proxy stopped");
    Ok(Json(proxy_view(&st.deps.manager.status())))
}

async fn models(st: St) -> Result<Json<ModelList>, UiError> {
    let listing = st.deps.engines.list_models(None).await?;
    let models = listing
        .models
        .iter()
        .map(|m| ModelView {
            id: m.id.to_string(),
            engine_id: m.engine_id.to_string(),
            name: m.display_name.clone(),
            capabilities: model_caps(m),
        })
        .collect();
    Ok(Json(ModelList { models }))
}

fn setting_view(key: &str, value: &str) -> Option<SettingView> {
    let spec = SETTINGS.iter().find(|s| s.key == key)?;
    let (kind, choices) = match spec.ty {
        SettingType::Int { .. } => (SettingKind::Int, None),
        SettingType::Bool => (SettingKind::Bool, None),
        SettingType::Choice(c) => (
            SettingKind::Choice,
            Some(c.iter().map(|c| (*c).to_owned()).collect()),
        ),
        SettingType::Json => (SettingKind::Json, None),
        SettingType::ReadOnly => (SettingKind::String, None),
    };
    Some(SettingView {
        key: key.to_owned(),
        value: value.to_owned(),
        default: spec.default.to_owned(),
        help: spec.help.to_owned(),
        kind,
        choices,
    })
}

async fn config_list(st: St) -> Result<Json<SettingList>, UiError> {
    let entries = st.deps.config.list().await?;
    let settings = entries
        .iter()
        .filter_map(|e| setting_view(&e.key, &e.value))
        .collect();
    Ok(Json(SettingList { settings }))
}

async fn config_set(
    st: St,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<SettingView>, UiError> {
    let b: SetSettingRequest = serde_json::from_slice(&body).map_err(|e| {
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
            other => other.into(),
        })?;
    st.events.emit(AppEvent::Config(ConfigEvent {
        key: entry.key.clone(),
    }));
    setting_view(&entry.key, &entry.value)
        .map(Json)
        .ok_or_else(|| UiError::internal(format!("setting {key} has no spec")))
}
