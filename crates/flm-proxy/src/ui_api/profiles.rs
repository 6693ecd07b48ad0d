//! Model profiles and prompt templates for the app (paths relative to `/api/v1`):
//!
//! - `GET /model-profiles`: every profile, with the parameter names a profile may set;
//! - `POST /model-profiles` `{id?, engine_id?, model, label, parameters}`: create, or
//!   replace by `id`; `422` with the field (`label`, `model`, `parameters`) on bad
//!   input, `409 already_exists` for a label in use;
//! - `DELETE /model-profiles/{id}`: `204`, `404 not_found` for an unknown one;
//! - `GET /prompts`: every template, with the length limit;
//! - `PUT /prompts` `{scope, target?, text}`: create or replace (`422` on `target` or
//!   `text`);
//! - `DELETE /prompts/{api_id}` (`default`, `model:<model>`, `key:<key id>`,
//!   URL-encoded): `204`, `404 not_found`;
//! - `POST /prompts/preview` `{text, message}`: the messages a chat request would
//!   reach the engine with.
//!
//! Thin: validation and storage are [`ProfileService`]'s. A running proxy follows the
//! change markers, so a change applies within a second without a notification.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use flm_core::keys::ApiKeyRecord;
use flm_core::ports::ApiKeyRepository;
use flm_core::profiles::{
    self, ModelProfile, ProfileDraft, ProfileRepository, ProfileService, PromptScope,
    PromptTemplate, MAX_TEMPLATE_CHARS,
};
use flm_core::CoreError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{FieldError, UiError};

/// One model profile.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileView {
    /// `mp_…`.
    pub id: String,
    /// Unique name.
    pub label: String,
    /// The model id clients send: `profile/<label>`.
    pub model_id: String,
    /// What it routes to: `flm://engine/model` or a bare name.
    pub target: String,
    /// Engine id; empty for a bare model name.
    pub engine_id: String,
    /// The engine's model name.
    pub model: String,
    /// Sampling parameters.
    #[cfg_attr(test, ts(type = "Record<string, unknown>"))]
    pub parameters: Map<String, Value>,
    /// RFC 3339.
    pub updated_at: String,
}

/// `GET /model-profiles`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileList {
    /// By label.
    pub profiles: Vec<ProfileView>,
    /// The parameters a profile may set.
    pub parameter_names: Vec<String>,
}

/// `POST /model-profiles`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaveProfileRequest {
    /// Replace this profile; absent creates one.
    #[serde(default)]
    pub id: Option<String>,
    /// Engine id when `model` is a bare name.
    #[serde(default)]
    pub engine_id: Option<String>,
    /// `flm://engine/model` or the model's name.
    pub model: String,
    /// Unique name.
    pub label: String,
    /// Sampling parameters.
    #[serde(default)]
    #[cfg_attr(test, ts(type = "Record<string, unknown>"))]
    pub parameters: Map<String, Value>,
}

/// What a template applies to.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptScopeKind {
    /// Every request without a key or model template.
    Default,
    /// One model.
    Model,
    /// One API key.
    Key,
}

/// One prompt template.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptView {
    /// `default`, `model:<model>` or `key:<key id>`.
    pub api_id: String,
    /// What it applies to.
    pub scope: PromptScopeKind,
    /// The model or key id; `null` for the default.
    pub target: Option<String>,
    /// The key's label, for a key template whose key exists.
    pub key_label: Option<String>,
    /// The system prompt.
    pub text: String,
    /// Its length in characters.
    pub chars: u32,
    /// RFC 3339.
    pub updated_at: String,
}

/// `GET /prompts`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptList {
    /// Default first, then by id.
    pub prompts: Vec<PromptView>,
    /// Longest template, in characters.
    pub max_chars: u32,
}

/// `PUT /prompts`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetPromptRequest {
    /// What it applies to.
    pub scope: PromptScopeKind,
    /// The model or key id (not for the default).
    #[serde(default)]
    pub target: Option<String>,
    /// The system prompt.
    pub text: String,
}

/// `POST /prompts/preview`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewRequest {
    /// The template text.
    pub text: String,
    /// The sample user message.
    pub message: String,
}

/// One chat message of a preview.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewMessage {
    /// `system` or `user`.
    pub role: String,
    /// Its text.
    pub content: String,
}

/// The messages a chat request reaches the engine with.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewView {
    /// Template first, then the client's.
    pub messages: Vec<PreviewMessage>,
}

/// What the routes use.
#[derive(Clone)]
pub struct ProfilesApiDeps {
    service: ProfileService,
    keys: Arc<dyn ApiKeyRepository>,
}

impl ProfilesApiDeps {
    /// Over the store's profiles and API keys (key templates name existing keys):
    /// `ProfilesApiDeps::new(store.profiles(), store.api_keys())`.
    pub fn new(repo: Arc<dyn ProfileRepository>, keys: Arc<dyn ApiKeyRepository>) -> Self {
        Self {
            service: ProfileService::new(repo),
            keys,
        }
    }
}

type Deps = State<Arc<ProfilesApiDeps>>;

/// The routes, state applied.
pub fn router(deps: ProfilesApiDeps) -> Router {
    Router::new()
        .route("/model-profiles", get(list_profiles).post(save_profile))
        .route("/model-profiles/{id}", delete(delete_profile))
        .route("/prompts", get(list_prompts).put(set_prompt))
        .route("/prompts/preview", post(preview))
        .route("/prompts/{api_id}", delete(delete_prompt))
        .with_state(Arc::new(deps))
}

fn field(code: &'static str, path: &str, message: impl Into<String>) -> UiError {
    let message = message.into();
    UiError::invalid(
        code,
        message.clone(),
        vec![FieldError {
            path: path.to_owned(),
            message,
        }],
    )
}

fn body<T>(r: Result<Json<T>, JsonRejection>) -> Result<T, UiError> {
    r.map(|Json(v)| v)
        .map_err(|e| UiError::bad_request("invalid_body", e.body_text()))
}

fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn profile_view(p: &ModelProfile) -> ProfileView {
    ProfileView {
        id: p.id.clone(),
        label: p.label.clone(),
        model_id: p.client_model_id(),
        target: p.target(),
        engine_id: p.engine_id.clone(),
        model: p.model_id.clone(),
        parameters: p.parameters.clone(),
        updated_at: ts(&p.updated_at),
    }
}

fn prompt_view(p: &PromptTemplate, keys: &[ApiKeyRecord]) -> PromptView {
    let (scope, target) = match &p.scope {
        PromptScope::Default => (PromptScopeKind::Default, None),
        PromptScope::Model(m) => (PromptScopeKind::Model, Some(m.clone())),
        PromptScope::Key(k) => (PromptScopeKind::Key, Some(k.clone())),
    };
    let key_label = match &p.scope {
        PromptScope::Key(k) => keys.iter().find(|m| &m.id == k).map(|m| m.label.clone()),
        _ => None,
    };
    PromptView {
        api_id: p.scope.api_id(),
        scope,
        target,
        key_label,
        text: p.template_text.clone(),
        chars: p.template_text.chars().count() as u32,
        updated_at: ts(&p.updated_at),
    }
}

async fn list_profiles(State(d): Deps) -> Result<Json<ProfileList>, UiError> {
    let profiles = d.service.list_profiles(None, None).await?;
    Ok(Json(ProfileList {
        profiles: profiles.iter().map(profile_view).collect(),
        parameter_names: profiles::parameter_names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }))
}

async fn save_profile(
    State(d): Deps,
    req: Result<Json<SaveProfileRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ProfileView>), UiError> {
    let req = body(req)?;
    // Each part on its own first, so that a problem names its field.
    profiles::validate_label(&req.label)
        .map_err(|e| field("invalid_label", "label", e.to_string()))?;
    PromptScope::model(&req.model).map_err(|e| field("invalid_model", "model", e.to_string()))?;
    profiles::validate_parameters(&req.parameters)
        .map_err(|e| field("invalid_parameters", "parameters", e.to_string()))?;
    let creating = req.id.as_deref().is_none_or(|i| i.trim().is_empty());
    let p = d
        .service
        .save_profile(&ProfileDraft {
            id: req.id,
            engine_id: req.engine_id,
            model: req.model,
            label: req.label,
            parameters: req.parameters,
        })
        .await
        .map_err(|e| match e {
            CoreError::Conflict(m) => UiError::new(StatusCode::CONFLICT, "profile_exists", m),
            CoreError::InvalidInput(m) if m.contains("no model profile") => {
                UiError::not_found("not_found", m)
            }
            CoreError::InvalidInput(m) => field("invalid_model", "model", m),
            other => other.into(),
        })?;
    tracing::info!(profile = %p.label, "model profile saved from the app");
    let status = if creating {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(profile_view(&p))))
}

async fn delete_profile(State(d): Deps, Path(id): Path<String>) -> Result<StatusCode, UiError> {
    let p = d.service.delete_profile(&id).await?;
    tracing::info!(profile = %p.label, "model profile deleted from the app");
    Ok(StatusCode::NO_CONTENT)
}

async fn list_prompts(State(d): Deps) -> Result<Json<PromptList>, UiError> {
    let mut prompts = d.service.list_prompts().await?;
    prompts.sort_by_key(|p| (p.scope != PromptScope::Default, p.scope.api_id()));
    let keys = d.keys.list().await.map_err(CoreError::from)?;
    Ok(Json(PromptList {
        prompts: prompts.iter().map(|p| prompt_view(p, &keys)).collect(),
        max_chars: MAX_TEMPLATE_CHARS as u32,
    }))
}

async fn set_prompt(
    State(d): Deps,
    req: Result<Json<SetPromptRequest>, JsonRejection>,
) -> Result<Json<PromptView>, UiError> {
    let req = body(req)?;
    let target = req.target.as_deref().unwrap_or("");
    let keys = d.keys.list().await.map_err(CoreError::from)?;
    let scope = match req.scope {
        PromptScopeKind::Default => PromptScope::Default,
        PromptScopeKind::Model => PromptScope::model(target)
            .map_err(|e| field("invalid_target", "target", e.to_string()))?,
        PromptScopeKind::Key => {
            let s = PromptScope::key(target)
                .map_err(|e| field("invalid_target", "target", e.to_string()))?;
            if !keys.iter().any(|k| k.id == target.trim()) {
                return Err(field(
                    "invalid_target",
                    "target",
                    format!("no API key `{}`", target.trim()),
                ));
            }
            s
        }
    };
    profiles::validate_template(&req.text)
        .map_err(|e| field("invalid_template", "text", e.to_string()))?;
    let p = d.service.set_prompt(scope, &req.text).await?;
    tracing::info!(template = %p.scope.api_id(), "prompt template saved from the app");
    Ok(Json(prompt_view(&p, &keys)))
}

async fn delete_prompt(State(d): Deps, Path(api_id): Path<String>) -> Result<StatusCode, UiError> {
    let scope = PromptScope::from_api_id(&api_id)
        .map_err(|e| UiError::not_found("not_found", e.to_string()))?;
    d.service.delete_prompt(&scope).await?;
    tracing::info!(template = %api_id, "prompt template deleted from the app");
    Ok(StatusCode::NO_CONTENT)
}

async fn preview(
    req: Result<Json<PreviewRequest>, JsonRejection>,
) -> Result<Json<PreviewView>, UiError> {
    let req = body(req)?;
    let text = req.text.trim();
    let messages = profiles::preview_messages(
        (!text.is_empty()).then_some(req.text.as_str()),
        &[serde_json::json!({"role": "user", "content": req.message})],
    );
    Ok(Json(PreviewView {
        messages: messages
            .iter()
            .map(|m| PreviewMessage {
                role: m["role"].as_str().unwrap_or("").to_owned(),
                content: m["content"].as_str().unwrap_or("").to_owned(),
            })
            .collect(),
    }))
}
