//! Model profiles and prompt templates on the request path (see
//! [`flm_core::profiles`] and docs/guides/profiles-and-prompts.md).
//!
//! Called once, at the entry of the chat and completion handlers, before the
//! request is validated:
//! - a model id `profile/<label>` is replaced by the profile's model, and the
//!   profile's parameters are merged under the client's (the client's win);
//! - on chat only, the template that applies (the key's, else the model's, else the
//!   default) becomes the first message; a client's own system message follows it.
//!   Raw completion prompts get no template.
//!
//! Scoped keys: a profile is only as wide as its model. A key may use (and sees in
//! `/v1/models`) a profile only if its scope allows the profile's target model; a
//! profile the key may not use is refused exactly like an unknown one (`403
//! model_not_allowed` for a scoped key), so a scoped key learns nothing about it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use flm_core::keys::KeyGrant;
use flm_core::profiles::{self, ModelProfile, ProfileSet, PROFILE_PREFIX};
use serde_json::{json, Map, Value};

use crate::app::SharedState;
use crate::error::ApiError;
use crate::routing::{model_not_allowed, Routes};

/// The in-memory profiles and templates, swapped on a change of the store.
pub(crate) type SharedProfiles = Arc<ArcSwap<ProfileSet>>;

/// Which route the request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v1/chat/completions` (and what is bridged through it): profile + template.
    Chat,
    /// `/v1/completions`: profile parameters only.
    Completions,
}

/// Applies the profile named by the request's model and, on chat, the template.
/// Leaves the request alone when there is nothing to apply (the common path costs
/// one atomic load).
pub(crate) async fn apply(
    st: &SharedState,
    grant: &KeyGrant,
    route: Route,
    request: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let set = st.profiles.load();
    let Some(model) = request.get("model").and_then(Value::as_str) else {
        return Ok(()); // the request's validation reports the missing model
    };
    if set.is_empty() && !model.starts_with(PROFILE_PREFIX) {
        return Ok(());
    }
    let model = model.to_owned();
    let routes = st.router.routes(st.first_check_wait).await;
    if let Some(found) = set.profile_for(&model) {
        let profile = usable_profile(&routes, grant, &model, found)?;
        request.insert("model".into(), Value::String(profile.target()));
        profiles::merge_under(request, &profile.parameters);
    }
    if route == Route::Chat && set.has_prompts() {
        let target = request.get("model").and_then(Value::as_str).unwrap_or("");
        if let Some(text) = template_in(&set, &routes, grant, target) {
            profiles::inject_system(request, text);
        }
    }
    Ok(())
}

/// The profile `found` if the key may use it; the refusal otherwise.
fn usable_profile<'a>(
    routes: &Routes,
    grant: &KeyGrant,
    model: &str,
    found: Option<&'a ModelProfile>,
) -> Result<&'a ModelProfile, ApiError> {
    let scoped = grant.scope.models().is_some();
    let Some(profile) = found else {
        return Err(if scoped {
            model_not_allowed(model)
        } else {
            unknown_profile(model)
        });
    };
    if scoped && !allowed(routes, grant, profile) {
        return Err(model_not_allowed(model));
    }
    Ok(profile)
}

fn unknown_profile(model: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "model_not_found",
        "invalid_request_error",
        format!(
            "no model profile `{}`; GET /v1/models lists the profiles (profile/<label>) and models this key may use",
            model.trim_start_matches(PROFILE_PREFIX)
        ),
    )
}

/// Whether the key's scope allows the profile's target model on at least one
/// engine that serves it (a profile whose model is served nowhere counts as not
/// allowed for a scoped key).
fn allowed(routes: &Routes, grant: &KeyGrant, profile: &ModelProfile) -> bool {
    routes.resolve(&profile.target(), &grant.scope).is_ok()
}

/// The template for a request with `grant` for `model` (a client model id after
/// profile substitution): the key's, else the model's (matched on its canonical id
/// `flm://engine/model` and on its bare name), else the default.
fn template_in<'a>(
    set: &'a ProfileSet,
    routes: &Routes,
    grant: &KeyGrant,
    model: &str,
) -> Option<&'a str> {
    let mut ids: Vec<String> = vec![model.to_owned()];
    if let Ok(r) = routes.resolve(model, &grant.scope) {
        if let Some(first) = r.candidates.first() {
            ids.push(flm_core::ModelId::new(first.id.clone(), r.model.as_str()).to_string());
        }
        ids.push(r.model);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    set.template_for(&grant.id, &refs).map(|(_, t)| t)
}

/// The template text that applies to a request made with `grant` for `model`
/// (a client model id; a `profile/<label>` id is looked through to its model), for
/// routes that carry it another way (the native `/v1/responses` relay sends it as
/// `instructions`). `None` when no template applies.
#[allow(dead_code)] // wired by the /v1/responses relay
pub(crate) async fn template_for(
    st: &SharedState,
    grant: &KeyGrant,
    model: &str,
) -> Option<String> {
    let set = st.profiles.load();
    if !set.has_prompts() {
        return None;
    }
    let routes = st.router.routes(st.first_check_wait).await;
    let target = match set.profile_for(model) {
        Some(Some(p)) => p.target(),
        _ => model.to_owned(),
    };
    template_in(&set, &routes, grant, &target).map(str::to_owned)
}

/// `/v1/models` with the profiles the key may use appended (`profile/<label>`,
/// `owned_by: "flm-profile"`, the target under `flm.profile_of`).
pub(crate) fn with_profiles(
    st: &SharedState,
    routes: &Routes,
    grant: &KeyGrant,
    body: Bytes,
) -> Bytes {
    let set = st.profiles.load();
    let usable: Vec<&ModelProfile> = set
        .profiles()
        .into_iter()
        .filter(|p| allowed(routes, grant, p))
        .collect();
    if usable.is_empty() {
        return body;
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    if let Some(data) = v.get_mut("data").and_then(Value::as_array_mut) {
        for p in usable {
            data.push(json!({
                "id": p.client_model_id(),
                "object": "model",
                "created": p.updated_at.timestamp(),
                "owned_by": "flm-profile",
                "flm": {
                    "profile_of": p.target(),
                    "parameters": p.parameters,
                }
            }));
        }
    }
    Bytes::from(v.to_string())
}
