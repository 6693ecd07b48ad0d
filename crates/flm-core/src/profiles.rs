//! Model profiles and prompt templates (spec 20-cli §4.11–4.12, 30-proxy §4.6).
//!
//! - A **model profile** is a named set of sampling parameters for one engine model.
//!   Clients use it as a model id, `profile/<label>`: the proxy routes to the
//!   profile's model and merges its parameters *under* the client's own (a parameter
//!   the client sent wins).
//! - A **prompt template** is a system prompt for every request of one API key, of
//!   one model, or of everyone (the default). Only the most specific one applies:
//!   the key's, else the model's, else the default. The proxy inserts it as the
//!   first message of a chat request; a system message the client sent follows it.
//!
//! Both live in `security.db` (`model_profiles`, `api_prompts`) with change-marker
//! triggers, so that every running proxy applies a change within a second.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{CoreError, ModelId, RepoError, MODEL_ID_SCHEME};

/// Prefix of a profile's model id: `profile/<label>`.
pub const PROFILE_PREFIX: &str = "profile/";
/// Longest profile label.
pub const MAX_LABEL_CHARS: usize = 64;
/// Longest prompt template, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 16_384;
/// Current schema version of profiles and templates.
pub const SCHEMA_VERSION: i64 = 1;

/// A stored model profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelProfile {
    /// `mp_<12 hex>`.
    pub id: String,
    /// The engine of the model, or empty for a bare model name (any engine serving it).
    pub engine_id: String,
    /// The model as the engine names it.
    pub model_id: String,
    /// Unique name; clients use `profile/<label>` as the model id.
    pub label: String,
    /// Sampling parameters (validated by [`validate_parameters`]).
    pub parameters: Map<String, Value>,
    /// Schema version.
    pub version: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl ModelProfile {
    /// The model id clients send to use this profile: `profile/<label>`.
    pub fn client_model_id(&self) -> String {
        format!("{PROFILE_PREFIX}{}", self.label)
    }

    /// The model the profile routes to: `flm://{engine}/{model}`, or the bare name.
    pub fn target(&self) -> String {
        if self.engine_id.is_empty() {
            self.model_id.clone()
        } else {
            format!("{MODEL_ID_SCHEME}{}/{}", self.engine_id, self.model_id)
        }
    }
}

/// What a template applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "target", rename_all = "snake_case")]
pub enum PromptScope {
    /// Every request that neither its key nor its model has a template for.
    Default,
    /// Requests for this model (`flm://engine/model` or a bare model name).
    Model(String),
    /// Requests made with this API key id (`key_…`).
    Key(String),
}

impl PromptScope {
    /// The stored id (`api_prompts.api_id`): `default`, `model:<model>`, `key:<id>`.
    pub fn api_id(&self) -> String {
        match self {
            PromptScope::Default => "default".to_owned(),
            PromptScope::Model(m) => format!("model:{m}"),
            PromptScope::Key(k) => format!("key:{k}"),
        }
    }

    /// Parses a stored id (see [`PromptScope::api_id`]).
    pub fn from_api_id(raw: &str) -> Result<Self, CoreError> {
        if raw == "default" {
            return Ok(PromptScope::Default);
        }
        if let Some(m) = raw.strip_prefix("model:") {
            return PromptScope::model(m);
        }
        if let Some(k) = raw.strip_prefix("key:") {
            return PromptScope::key(k);
        }
        Err(CoreError::InvalidInput(format!(
            "unknown template id `{raw}`: expected `default`, `model:<model>` or `key:<key id>`"
        )))
    }

    /// A model scope, validated.
    pub fn model(raw: &str) -> Result<Self, CoreError> {
        Ok(PromptScope::Model(normalise_model(raw)?))
    }

    /// A key scope, validated (`key_` followed by letters and digits).
    pub fn key(raw: &str) -> Result<Self, CoreError> {
        let k = raw.trim();
        let ok = k.len() > 4
            && k.len() <= 64
            && k.starts_with("key_")
            && k[4..].chars().all(|c| c.is_ascii_alphanumeric());
        if !ok {
            return Err(CoreError::InvalidInput(format!(
                "`{k}` is not an API key id: expected `key_…` as shown by `flm api-keys list`"
            )));
        }
        Ok(PromptScope::Key(k.to_owned()))
    }

    /// `default`, `model` or `key`.
    pub fn kind(&self) -> &'static str {
        match self {
            PromptScope::Default => "default",
            PromptScope::Model(_) => "model",
            PromptScope::Key(_) => "key",
        }
    }
}

/// A stored prompt template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTemplate {
    /// What it applies to.
    pub scope: PromptScope,
    /// The system prompt.
    pub template_text: String,
    /// Schema version.
    pub version: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Storage of profiles and templates (`security.db`).
#[async_trait]
pub trait ProfileRepository: Send + Sync {
    /// Every profile, by label.
    async fn list_profiles(&self) -> Result<Vec<ModelProfile>, RepoError>;
    /// Inserts or replaces (by id) a profile. A label used by another profile is
    /// `RepoError::Validation`.
    async fn save_profile(&self, profile: &ModelProfile) -> Result<(), RepoError>;
    /// Deletes by id; `false` when there was none.
    async fn delete_profile(&self, id: &str) -> Result<bool, RepoError>;
    /// Every template.
    async fn list_prompts(&self) -> Result<Vec<PromptTemplate>, RepoError>;
    /// Inserts or replaces the template of its scope.
    async fn set_prompt(&self, prompt: &PromptTemplate) -> Result<(), RepoError>;
    /// Deletes the template of `scope`; `false` when there was none.
    async fn delete_prompt(&self, scope: &PromptScope) -> Result<bool, RepoError>;
}

fn normalise_model(raw: &str) -> Result<String, CoreError> {
    let m = raw.trim();
    if m.is_empty() {
        return Err(CoreError::InvalidInput(
            "the model must not be empty".into(),
        ));
    }
    if m.chars().count() > 512 || m.chars().any(char::is_control) {
        return Err(CoreError::InvalidInput(format!(
            "`{m}` is not a model id: at most 512 characters, no control characters"
        )));
    }
    if m.starts_with(PROFILE_PREFIX) {
        return Err(CoreError::InvalidInput(format!(
            "`{m}` is a profile id; give the engine model (flm://engine/model or a bare name)"
        )));
    }
    if m.starts_with(MODEL_ID_SCHEME) {
        ModelId::parse(m)?;
    }
    Ok(m.to_owned())
}

/// Checks a profile label: 1–64 characters, letters, digits, `.`, `_`, `-`, starting
/// with a letter or digit.
pub fn validate_label(raw: &str) -> Result<String, CoreError> {
    let l = raw.trim();
    let ok = !l.is_empty()
        && l.chars().count() <= MAX_LABEL_CHARS
        && l.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(CoreError::InvalidInput(format!(
            "invalid profile label `{l}`: 1-{MAX_LABEL_CHARS} characters, letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )));
    }
    Ok(l.to_owned())
}

/// The parameters a profile may set, with their rules.
const PARAMETERS: &[(&str, Rule)] = &[
    ("temperature", Rule::Number(0.0, 2.0)),
    ("top_p", Rule::Number(0.0, 1.0)),
    ("min_p", Rule::Number(0.0, 1.0)),
    ("top_k", Rule::Integer(0, 1_000)),
    ("max_tokens", Rule::Integer(1, 1_000_000)),
    ("max_completion_tokens", Rule::Integer(1, 1_000_000)),
    ("presence_penalty", Rule::Number(-2.0, 2.0)),
    ("frequency_penalty", Rule::Number(-2.0, 2.0)),
    ("repeat_penalty", Rule::Number(0.0, 10.0)),
    ("seed", Rule::Integer(i64::MIN, i64::MAX)),
    ("stop", Rule::Stop),
];

#[derive(Clone, Copy)]
enum Rule {
    Number(f64, f64),
    Integer(i64, i64),
    /// A string or up to 4 strings (the OpenAI limit).
    Stop,
}

/// Names of the parameters a profile may set.
pub fn parameter_names() -> Vec<&'static str> {
    PARAMETERS.iter().map(|(n, _)| *n).collect()
}

/// Checks a profile's parameters: known names, types and ranges. The error names
/// the parameter, the rule and the value given.
pub fn validate_parameters(params: &Map<String, Value>) -> Result<(), CoreError> {
    if params.contains_key("max_tokens") && params.contains_key("max_completion_tokens") {
        return Err(CoreError::InvalidInput(
            "set `max_tokens` or `max_completion_tokens`, not both".into(),
        ));
    }
    for (name, value) in params {
        let Some((_, rule)) = PARAMETERS.iter().find(|(n, _)| n == name) else {
            return Err(CoreError::InvalidInput(format!(
                "unknown parameter `{name}`; a profile may set: {}",
                parameter_names().join(", ")
            )));
        };
        let problem = match *rule {
            Rule::Number(lo, hi) => match value.as_f64() {
                Some(v) if v.is_finite() && (lo..=hi).contains(&v) => None,
                _ => Some(format!("must be a number from {lo} to {hi}")),
            },
            Rule::Integer(lo, hi) => match value.as_i64() {
                Some(v) if (lo..=hi).contains(&v) => None,
                _ if lo == i64::MIN => Some("must be an integer".to_owned()),
                _ => Some(format!("must be an integer from {lo} to {hi}")),
            },
            Rule::Stop => match value {
                Value::String(s) if !s.is_empty() => None,
                Value::Array(a)
                    if !a.is_empty()
                        && a.len() <= 4
                        && a.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty())) =>
                {
                    None
                }
                _ => {
                    Some("must be a non-empty string or a list of 1 to 4 non-empty strings".into())
                }
            },
        };
        if let Some(p) = problem {
            return Err(CoreError::InvalidInput(format!(
                "parameter `{name}` {p} (got {value})"
            )));
        }
    }
    Ok(())
}

/// Checks a template's text: not blank, at most [`MAX_TEMPLATE_CHARS`] characters.
pub fn validate_template(text: &str) -> Result<(), CoreError> {
    if text.trim().is_empty() {
        return Err(CoreError::InvalidInput(
            "the template is empty; give the system prompt text".into(),
        ));
    }
    let n = text.chars().count();
    if n > MAX_TEMPLATE_CHARS {
        return Err(CoreError::InvalidInput(format!(
            "the template is too long: {n} characters, at most {MAX_TEMPLATE_CHARS}"
        )));
    }
    Ok(())
}

/// A profile as a user asks to save it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileDraft {
    /// Replace this profile (by id); `None` creates one.
    #[serde(default)]
    pub id: Option<String>,
    /// Engine id; empty or `None` with a `flm://` model takes the model's engine.
    #[serde(default)]
    pub engine_id: Option<String>,
    /// `flm://engine/model` or the model's name.
    pub model: String,
    /// Unique name.
    pub label: String,
    /// Parameters.
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// Model profiles and prompt templates: validation and storage.
#[derive(Clone)]
pub struct ProfileService {
    repo: std::sync::Arc<dyn ProfileRepository>,
}

impl ProfileService {
    /// Over a repository.
    pub fn new(repo: std::sync::Arc<dyn ProfileRepository>) -> Self {
        Self { repo }
    }

    /// Every profile, optionally filtered by engine and model.
    pub async fn list_profiles(
        &self,
        engine: Option<&str>,
        model: Option<&str>,
    ) -> Result<Vec<ModelProfile>, CoreError> {
        let mut all = self.repo.list_profiles().await?;
        all.retain(|p| {
            engine.is_none_or(|e| p.engine_id == e)
                && model.is_none_or(|m| p.model_id == m || p.target() == m)
        });
        Ok(all)
    }

    /// Validates and stores a profile. A new label that another profile has is a
    /// conflict; an unknown id is an error.
    pub async fn save_profile(&self, draft: &ProfileDraft) -> Result<ModelProfile, CoreError> {
        let label = validate_label(&draft.label)?;
        let model = normalise_model(&draft.model)?;
        let engine = draft
            .engine_id
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        let (engine_id, model_id) = match (engine, model.starts_with(MODEL_ID_SCHEME)) {
            (e, true) => {
                let id = ModelId::parse(&model)?;
                if let Some(e) = e {
                    if e != id.engine_id.as_str() {
                        return Err(CoreError::InvalidInput(format!(
                            "--engine `{e}` differs from the engine of `{model}`; give one of them"
                        )));
                    }
                }
                (id.engine_id.as_str().to_owned(), id.model)
            }
            (Some(e), false) => (crate::EngineId::parse(e)?.as_str().to_owned(), model),
            (None, false) => (String::new(), model),
        };
        validate_parameters(&draft.parameters)?;
        let existing = self.repo.list_profiles().await?;
        let id = match draft.id.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
            Some(id) => {
                if !existing.iter().any(|p| p.id == id) {
                    return Err(CoreError::InvalidInput(format!(
                        "no model profile with id `{id}`; see `flm model-profiles list`"
                    )));
                }
                id.to_owned()
            }
            None => new_profile_id(),
        };
        if let Some(other) = existing.iter().find(|p| p.label == label && p.id != id) {
            return Err(CoreError::Conflict(format!(
                "a model profile named `{label}` already exists ({}); choose another label or update it with --id {}",
                other.id, other.id
            )));
        }
        let profile = ModelProfile {
            id,
            engine_id,
            model_id,
            label,
            parameters: draft.parameters.clone(),
            version: SCHEMA_VERSION,
            updated_at: Utc::now(),
        };
        self.repo.save_profile(&profile).await?;
        Ok(profile)
    }

    /// Deletes a profile by id or label.
    pub async fn delete_profile(&self, id_or_label: &str) -> Result<ModelProfile, CoreError> {
        let wanted = id_or_label.trim();
        let found = self
            .repo
            .list_profiles()
            .await?
            .into_iter()
            .find(|p| p.id == wanted || p.label == wanted)
            .ok_or_else(|| {
                CoreError::Repo(RepoError::NotFound(format!(
                    "no model profile `{wanted}`; see `flm model-profiles list`"
                )))
            })?;
        self.repo.delete_profile(&found.id).await?;
        Ok(found)
    }

    /// Every template.
    pub async fn list_prompts(&self) -> Result<Vec<PromptTemplate>, CoreError> {
        Ok(self.repo.list_prompts().await?)
    }

    /// The template of exactly `scope`.
    pub async fn prompt(&self, scope: &PromptScope) -> Result<PromptTemplate, CoreError> {
        self.repo
            .list_prompts()
            .await?
            .into_iter()
            .find(|p| &p.scope == scope)
            .ok_or_else(|| not_found(scope))
    }

    /// Validates and stores the template of `scope` (replacing any).
    pub async fn set_prompt(
        &self,
        scope: PromptScope,
        text: &str,
    ) -> Result<PromptTemplate, CoreError> {
        validate_template(text)?;
        let p = PromptTemplate {
            scope,
            template_text: text.to_owned(),
            version: SCHEMA_VERSION,
            updated_at: Utc::now(),
        };
        self.repo.set_prompt(&p).await?;
        Ok(p)
    }

    /// Deletes the template of `scope`; unknown → not found.
    pub async fn delete_prompt(&self, scope: &PromptScope) -> Result<PromptTemplate, CoreError> {
        let p = self.prompt(scope).await?;
        self.repo.delete_prompt(scope).await?;
        Ok(p)
    }

    /// A snapshot for the proxy.
    pub async fn snapshot(&self) -> Result<ProfileSet, CoreError> {
        Ok(ProfileSet::new(
            self.repo.list_profiles().await?,
            self.repo.list_prompts().await?,
        ))
    }
}

fn not_found(scope: &PromptScope) -> CoreError {
    CoreError::Repo(RepoError::NotFound(format!(
        "no prompt template for {}; see `flm api prompts list`",
        describe(scope)
    )))
}

/// `the default`, `model \`x\``, `API key \`key_…\``.
pub fn describe(scope: &PromptScope) -> String {
    match scope {
        PromptScope::Default => "the default".to_owned(),
        PromptScope::Model(m) => format!("model `{m}`"),
        PromptScope::Key(k) => format!("API key `{k}`"),
    }
}

fn new_profile_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("mp_{:012x}", n & 0xffff_ffff_ffff)
}

/// Everything the proxy needs, in memory: profiles by label, templates by scope.
#[derive(Debug, Clone, Default)]
pub struct ProfileSet {
    profiles: HashMap<String, ModelProfile>,
    prompts: HashMap<PromptScope, String>,
}

impl ProfileSet {
    /// From stored rows.
    pub fn new(profiles: Vec<ModelProfile>, prompts: Vec<PromptTemplate>) -> Self {
        Self {
            profiles: profiles.into_iter().map(|p| (p.label.clone(), p)).collect(),
            prompts: prompts
                .into_iter()
                .map(|p| (p.scope, p.template_text))
                .collect(),
        }
    }

    /// Whether there is neither a profile nor a template (the proxy's fast path).
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty() && self.prompts.is_empty()
    }

    /// Whether there is any template.
    pub fn has_prompts(&self) -> bool {
        !self.prompts.is_empty()
    }

    /// The profile a client model id names (`profile/<label>`), if it names one.
    /// `None`: not a profile id. `Some(None)`: a profile id of no profile.
    pub fn profile_for(&self, model: &str) -> Option<Option<&ModelProfile>> {
        model
            .strip_prefix(PROFILE_PREFIX)
            .map(|label| self.profiles.get(label))
    }

    /// Every profile, by label.
    pub fn profiles(&self) -> Vec<&ModelProfile> {
        let mut v: Vec<&ModelProfile> = self.profiles.values().collect();
        v.sort_by(|a, b| a.label.cmp(&b.label));
        v
    }

    /// The template that applies to a request made with `key_id` for a model known
    /// by any of `model_ids` (its canonical id and its bare name): the key's, else
    /// the model's, else the default. With the scope it came from.
    pub fn template_for(&self, key_id: &str, model_ids: &[&str]) -> Option<(PromptScope, &str)> {
        let key = PromptScope::Key(key_id.to_owned());
        if let Some(t) = self.prompts.get(&key) {
            return Some((key, t));
        }
        for m in model_ids {
            let scope = PromptScope::Model((*m).to_owned());
            if let Some(t) = self.prompts.get(&scope) {
                return Some((scope, t));
            }
        }
        self.prompts
            .get(&PromptScope::Default)
            .map(|t| (PromptScope::Default, t.as_str()))
    }
}

/// Merges `defaults` under `request`: a parameter the request has is kept;
/// `max_tokens` and `max_completion_tokens` count as one.
pub fn merge_under(request: &mut Map<String, Value>, defaults: &Map<String, Value>) {
    let has_max =
        request.contains_key("max_tokens") || request.contains_key("max_completion_tokens");
    for (k, v) in defaults {
        let is_max = k == "max_tokens" || k == "max_completion_tokens";
        if (is_max && has_max) || request.contains_key(k) {
            continue;
        }
        request.insert(k.clone(), v.clone());
    }
}

/// Inserts `template` as the first message of a chat `messages` array (a system
/// message the client sent stays, after it). Does nothing if `messages` is not an
/// array (the request's validation reports that).
pub fn inject_system(request: &mut Map<String, Value>, template: &str) {
    if let Some(Value::Array(messages)) = request.get_mut("messages") {
        messages.insert(
            0,
            serde_json::json!({"role": "system", "content": template}),
        );
    }
}

/// The message list a chat request would reach the engine with: the template
/// (if any) first, then the client's messages.
pub fn preview_messages(template: Option<&str>, client: &[Value]) -> Vec<Value> {
    let mut req = Map::new();
    req.insert("messages".into(), Value::Array(client.to_vec()));
    if let Some(t) = template {
        inject_system(&mut req, t);
    }
    match req.remove("messages") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn parameters_are_checked_with_precise_messages() {
        assert!(validate_parameters(&obj(
            json!({"temperature": 0.7, "top_p": 1, "max_tokens": 5, "stop": ["a"], "seed": -3})
        ))
        .is_ok());
        let e = validate_parameters(&obj(json!({"temperature": 2.5}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter `temperature` must be a number from 0 to 2 (got 2.5)"
        );
        let e = validate_parameters(&obj(json!({"max_tokens": 0}))).unwrap_err();
        assert!(
            e.to_string()
                .contains("`max_tokens` must be an integer from 1"),
            "{e}"
        );
        let e = validate_parameters(&obj(json!({"stream": true}))).unwrap_err();
        assert!(
            e.to_string().starts_with("unknown parameter `stream`"),
            "{e}"
        );
        let e = validate_parameters(&obj(json!({"stop": ["a","b","c","d","e"]}))).unwrap_err();
        assert!(e.to_string().contains("1 to 4"), "{e}");
        let e = validate_parameters(&obj(json!({"seed": 1.5}))).unwrap_err();
        assert!(e.to_string().contains("`seed` must be an integer"), "{e}");
        assert!(
            validate_parameters(&obj(json!({"max_tokens": 1, "max_completion_tokens": 2})))
                .is_err()
        );
    }

    #[test]
    fn labels_and_templates_are_checked() {
        assert_eq!(validate_label(" fast-1 ").unwrap(), "fast-1");
        assert!(validate_label("").is_err());
        assert!(validate_label("a/b").is_err());
        assert!(validate_label(&"x".repeat(65)).is_err());
        assert!(validate_template("  ").is_err());
        assert!(validate_template(&"x".repeat(MAX_TEMPLATE_CHARS)).is_ok());
        let e = validate_template(&"x".repeat(MAX_TEMPLATE_CHARS + 1)).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }

    #[test]
    fn scopes_round_trip() {
        for s in [
            PromptScope::Default,
            PromptScope::model("flm://llama/tiny").unwrap(),
            PromptScope::model("tiny").unwrap(),
            PromptScope::key("key_0123abcd").unwrap(),
        ] {
            assert_eq!(PromptScope::from_api_id(&s.api_id()).unwrap(), s);
        }
        assert!(PromptScope::key("nope").is_err());
        assert!(PromptScope::model("profile/x").is_err());
        assert!(PromptScope::from_api_id("chat").is_err());
    }

    #[test]
    fn client_parameters_win_and_max_tokens_aliases_count_as_one() {
        let mut req = obj(json!({"temperature": 0.1, "max_completion_tokens": 9}));
        merge_under(
            &mut req,
            &obj(json!({"temperature": 1.5, "top_p": 0.5, "max_tokens": 100})),
        );
        assert_eq!(
            Value::Object(req),
            json!({"temperature": 0.1, "max_completion_tokens": 9, "top_p": 0.5})
        );
    }

    #[test]
    fn the_most_specific_template_applies_first_in_the_list() {
        let t = |scope, text: &str| PromptTemplate {
            scope,
            template_text: text.into(),
            version: 1,
            updated_at: Utc::now(),
        };
        let set = ProfileSet::new(
            vec![],
            vec![
                t(PromptScope::Default, "D"),
                t(PromptScope::Model("tiny".into()), "M"),
                t(PromptScope::Key("key_a".into()), "K"),
            ],
        );
        assert_eq!(
            set.template_for("key_a", &["flm://x/tiny", "tiny"])
                .unwrap()
                .1,
            "K"
        );
        assert_eq!(
            set.template_for("key_b", &["flm://x/tiny", "tiny"])
                .unwrap()
                .1,
            "M"
        );
        assert_eq!(set.template_for("key_b", &["other"]).unwrap().1, "D");
        let msgs = preview_messages(
            Some("K"),
            &[
                json!({"role":"system","content":"mine"}),
                json!({"role":"user","content":"hi"}),
            ],
        );
        assert_eq!(msgs[0], json!({"role":"system","content":"K"}));
        assert_eq!(msgs[1]["content"], "mine");
        assert_eq!(msgs.len(), 3);
    }
}
