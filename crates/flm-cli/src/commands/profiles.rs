//! `flm model-profiles list|save|delete` and `flm api prompts list|show|set|delete`.
//!
//! No notification is needed: every running proxy (daemon, `--no-daemon`) follows
//! the store's `profiles` change marker and applies a change within a second.

use flm_core::profiles::{
    self, describe, ModelProfile, ProfileDraft, ProfileService, PromptScope, PromptTemplate,
};
use flm_core::CoreError;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::cli::{ApiCmd, ModelProfilesCmd};
use crate::cli_profiles::{PromptTarget, PromptsCmd, SaveProfileArgs};
use crate::output::{table, CliError, Printer};

fn service(app: &App) -> ProfileService {
    ProfileService::new(app.store.profiles())
}

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn params_text(p: &Map<String, Value>) -> String {
    if p.is_empty() {
        "-".to_owned()
    } else {
        Value::Object(p.clone()).to_string()
    }
}

fn profile_json(p: &ModelProfile) -> Value {
    json!({
        "id": p.id,
        "label": p.label,
        "model_id": p.client_model_id(),
        "target": p.target(),
        "engine_id": p.engine_id,
        "model": p.model_id,
        "parameters": p.parameters,
        "version": p.version,
        "updated_at": p.updated_at,
    })
}

fn read_params(args: &SaveProfileArgs) -> Result<Map<String, Value>, CliError> {
    let (text, source) = match (&args.params, &args.params_json) {
        (Some(path), _) => (
            std::fs::read_to_string(path).map_err(|e| {
                CliError::user(
                    "INVALID_ARGUMENT",
                    format!("cannot read --params {}: {e}", path.display()),
                )
            })?,
            format!("--params {}", path.display()),
        ),
        (None, Some(j)) => (j.clone(), "--params-json".to_owned()),
        (None, None) => return Ok(Map::new()),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::user(
            "INVALID_ARGUMENT",
            format!(
                "{source} must hold a JSON object, e.g. {{\"temperature\":0.7,\"max_tokens\":512}}"
            ),
        )),
        Err(e) => Err(CliError::user(
            "INVALID_ARGUMENT",
            format!("{source} is not valid JSON: {e}"),
        )),
    }
}

pub(crate) async fn run_profiles(
    app: &App,
    cmd: ModelProfilesCmd,
    printer: &Printer,
) -> Result<(), CliError> {
    let svc = service(app);
    match cmd {
        ModelProfilesCmd::List { engine, model } => {
            let list = svc
                .list_profiles(engine.as_deref(), model.as_deref())
                .await?;
            let data: Vec<Value> = list.iter().map(profile_json).collect();
            printer.success(&json!({ "profiles": data }), || {
                if list.is_empty() {
                    return "No model profiles. Create one with `flm model-profiles save --label <name> --model <model> --params-json '{\"temperature\":0.7}'`.".to_owned();
                }
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.id.clone(),
                            p.client_model_id(),
                            p.target(),
                            params_text(&p.parameters),
                            when(&p.updated_at),
                        ]
                    })
                    .collect();
                table(&["ID", "MODEL ID", "TARGET", "PARAMETERS", "UPDATED"], &rows)
            })
        }
        ModelProfilesCmd::Save(args) => {
            let draft = ProfileDraft {
                id: args.id.clone(),
                engine_id: args.engine.clone(),
                model: args.model.clone(),
                label: args.label.clone(),
                parameters: read_params(&args)?,
            };
            let p = svc.save_profile(&draft).await?;
            printer.success(&profile_json(&p), || {
                format!(
                    "Saved model profile {} ({}): clients use the model id `{}` for {} with {}.\nA running proxy applies it within a second.",
                    p.label,
                    p.id,
                    p.client_model_id(),
                    p.target(),
                    params_text(&p.parameters)
                )
            })
        }
        ModelProfilesCmd::Delete { id } => {
            let p = svc.delete_profile(&id).await?;
            printer.success(&profile_json(&p), || {
                format!(
                    "Deleted model profile {} ({}); `{}` is no longer a model id.",
                    p.label,
                    p.id,
                    p.client_model_id()
                )
            })
        }
    }
}

fn prompt_json(p: &PromptTemplate) -> Value {
    json!({
        "api_id": p.scope.api_id(),
        "scope": p.scope,
        "template_text": p.template_text,
        "chars": p.template_text.chars().count(),
        "version": p.version,
        "updated_at": p.updated_at,
    })
}

fn first_line(t: &str, max: usize) -> String {
    let line = t.lines().next().unwrap_or("");
    if line.chars().count() > max || t.lines().nth(1).is_some() {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

async fn scope_of(app: &App, t: &PromptTarget) -> Result<PromptScope, CliError> {
    match (&t.model, &t.key, t.default) {
        (Some(m), _, _) => Ok(PromptScope::model(m)?),
        (None, Some(k), _) => {
            let scope = PromptScope::key(k)?;
            ensure_key(app, k.trim()).await?;
            Ok(scope)
        }
        _ => Ok(PromptScope::Default),
    }
}

async fn ensure_key(app: &App, id: &str) -> Result<(), CliError> {
    if app.keys.list().await?.iter().any(|k| k.id == id) {
        return Ok(());
    }
    Err(CoreError::KeyNotFound(format!("no API key `{id}`; see `flm api-keys list`")).into())
}

pub(crate) async fn run_api(app: &App, cmd: ApiCmd, printer: &Printer) -> Result<(), CliError> {
    let ApiCmd::Prompts(cmd) = cmd;
    let svc = service(app);
    match cmd {
        PromptsCmd::List => {
            let list = svc.list_prompts().await?;
            let data: Vec<Value> = list.iter().map(prompt_json).collect();
            printer.success(&json!({ "prompts": data }), || {
                if list.is_empty() {
                    return "No prompt templates. Set one with `flm api prompts set --default --file <path>`.".to_owned();
                }
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.scope.api_id(),
                            p.template_text.chars().count().to_string(),
                            first_line(&p.template_text, 48),
                            when(&p.updated_at),
                        ]
                    })
                    .collect();
                table(&["TEMPLATE", "CHARS", "TEXT", "UPDATED"], &rows)
            })
        }
        PromptsCmd::Show {
            model,
            key,
            default,
            message,
        } => {
            let set = svc.snapshot().await?;
            let found = if default {
                Some(svc.prompt(&PromptScope::Default).await?)
            } else {
                if let Some(k) = &key {
                    PromptScope::key(k)?;
                }
                if let Some(m) = &model {
                    PromptScope::model(m)?;
                }
                let models: Vec<&str> = model.iter().map(|m| m.trim()).collect();
                let source = set
                    .template_for(key.as_deref().map(str::trim).unwrap_or(""), &models)
                    .map(|(s, _)| s);
                match source {
                    Some(s) => Some(svc.prompt(&s).await?),
                    None => None,
                }
            };
            let Some(p) = found else {
                return Err(CoreError::Repo(flm_core::RepoError::NotFound(format!(
                    "no prompt template applies to {}; see `flm api prompts list`",
                    match (&key, &model) {
                        (Some(k), Some(m)) => format!("API key `{k}` with model `{m}`"),
                        (Some(k), None) => format!("API key `{k}`"),
                        (None, Some(m)) => format!("model `{m}`"),
                        (None, None) => "requests without a key or model template".to_owned(),
                    }
                )))
                .into());
            };
            let messages = profiles::preview_messages(
                Some(&p.template_text),
                &[json!({"role": "user", "content": message})],
            );
            let mut data = prompt_json(&p);
            data["preview"] = json!({ "messages": messages });
            printer.success(&data, || {
                let mut out = format!(
                    "Template for {} ({} characters, updated {}):\n{}\n\nA chat request reaches the engine with:",
                    describe(&p.scope),
                    p.template_text.chars().count(),
                    when(&p.updated_at),
                    p.template_text
                );
                for (i, m) in messages.iter().enumerate() {
                    out.push_str(&format!(
                        "\n  {}. {}: {}",
                        i + 1,
                        m["role"].as_str().unwrap_or(""),
                        first_line(m["content"].as_str().unwrap_or(""), 72)
                    ));
                }
                out
            })
        }
        PromptsCmd::Set { target, file, text } => {
            let scope = scope_of(app, &target).await?;
            let text = match (file, text) {
                (Some(path), _) => std::fs::read(&path)
                    .map_err(|e| {
                        CliError::user(
                            "INVALID_ARGUMENT",
                            format!("cannot read --file {}: {e}", path.display()),
                        )
                    })
                    .and_then(|b| {
                        String::from_utf8(b).map_err(|_| {
                            CliError::user(
                                "INVALID_ARGUMENT",
                                format!("--file {} is not UTF-8 text", path.display()),
                            )
                        })
                    })?,
                (None, Some(t)) => t,
                (None, None) => {
                    return Err(CliError::user(
                        "INVALID_ARGUMENT",
                        "give the template with --file <path> or --text <text>",
                    ))
                }
            };
            let p = svc.set_prompt(scope, &text).await?;
            printer.success(&prompt_json(&p), || {
                format!(
                    "Saved the prompt template for {} ({} characters). A running proxy applies it within a second.",
                    describe(&p.scope),
                    p.template_text.chars().count()
                )
            })
        }
        PromptsCmd::Delete { target } => {
            let scope = match (&target.model, &target.key) {
                (Some(m), _) => PromptScope::model(m)?,
                (None, Some(k)) => PromptScope::key(k)?,
                _ => PromptScope::Default,
            };
            let p = svc.delete_prompt(&scope).await?;
            printer.success(&prompt_json(&p), || {
                format!("Deleted the prompt template for {}.", describe(&p.scope))
            })
        }
    }
}
