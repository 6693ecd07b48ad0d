//! Command-line grammar of `flm model-profiles …` and `flm api prompts …` (clap).
//! Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `flm model-profiles …`
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Clients use a profile as the model id profile/<label>: the proxy routes to the\nprofile's model and adds its parameters to the request, except those the client sent itself.\n\nExamples:\n  flm model-profiles save --label precise --model flm://llamacpp-default/tiny --params-json '{\"temperature\":0.2,\"max_tokens\":256}'\n  flm model-profiles save --label creative --engine ollama-default --model llama3.2 --params params.json\n  flm model-profiles list --model llama3.2\n  flm model-profiles delete --id precise\n\nParameters: temperature (0-2), top_p (0-1), min_p (0-1), top_k (0-1000), max_tokens or\nmax_completion_tokens (1-1000000), presence_penalty and frequency_penalty (-2-2),\nrepeat_penalty (0-10), seed (integer), stop (a string or up to 4 strings)."
)]
pub enum ModelProfilesCmd {
    /// List profiles (all, or those of one engine or model).
    List {
        /// Only profiles of this engine id.
        #[arg(long)]
        engine: Option<String>,
        /// Only profiles of this model (flm://engine/model or its name).
        #[arg(long)]
        model: Option<String>,
    },
    /// Create a profile, or replace one with --id. A running proxy applies it within
    /// a second.
    Save(SaveProfileArgs),
    /// Delete a profile; clients using profile/<label> get 404 from then on.
    Delete {
        /// Profile id (mp_…) or label.
        #[arg(long, value_name = "ID_OR_LABEL")]
        id: String,
    },
}

/// Options of `flm model-profiles save`.
#[derive(Debug, Args)]
pub struct SaveProfileArgs {
    /// Name of the profile, unique; clients use profile/<label>. Letters, digits, `.`,
    /// `_`, `-`, at most 64 characters.
    #[arg(long)]
    pub label: String,
    /// The model: flm://{engine_id}/{model}, or its name (with --engine, or alone for
    /// any engine serving it).
    #[arg(long)]
    pub model: String,
    /// Engine id, when --model is a bare name.
    #[arg(long)]
    pub engine: Option<String>,
    /// JSON file with the parameters, e.g. {"temperature":0.7,"max_tokens":512}.
    #[arg(long, value_name = "FILE", conflicts_with = "params_json")]
    pub params: Option<PathBuf>,
    /// The parameters as inline JSON.
    #[arg(long, value_name = "JSON")]
    pub params_json: Option<String>,
    /// Replace the profile with this id (mp_…) instead of creating one.
    #[arg(long)]
    pub id: Option<String>,
}

/// `flm api …`
#[derive(Debug, Subcommand)]
pub enum ApiCmd {
    /// System prompt templates the proxy puts first in every chat request.
    #[command(subcommand)]
    Prompts(PromptsCmd),
}

/// Which template: one of --model, --key, --default.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PromptTarget {
    /// The template of this model (flm://engine/model, or a bare name matching it on
    /// every engine).
    #[arg(long)]
    pub model: Option<String>,
    /// The template of this API key id (key_…).
    #[arg(long)]
    pub key: Option<String>,
    /// The default template (requests with neither a key nor a model template).
    #[arg(long)]
    pub default: bool,
}

/// `flm api prompts …`
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Precedence: a request gets one template at most: its API key's, else its model's, else the\ndefault. The proxy inserts it as the first message of /v1/chat/completions (and /v1/responses);\na system message the client sent stays, after it. /v1/completions prompts get no template.\n\nExamples:\n  flm api prompts set --default --file house-rules.txt\n  flm api prompts set --model flm://llamacpp-default/tiny --text 'Answer in French.'\n  flm api prompts set --key key_0123456789abcdef --file support.txt\n  flm api prompts show --key key_0123456789abcdef --model tiny --message 'Hello'\n  flm api prompts delete --model flm://llamacpp-default/tiny"
)]
pub enum PromptsCmd {
    /// List every template.
    List,
    /// Show the template a request would get (for --key and/or --model, by
    /// precedence; --default: the default) and preview the messages sent to the
    /// engine for a sample request.
    Show {
        /// The request's model.
        #[arg(long)]
        model: Option<String>,
        /// The request's API key id.
        #[arg(long)]
        key: Option<String>,
        /// Show the default template.
        #[arg(long, conflicts_with_all = ["model", "key"])]
        default: bool,
        /// The sample request's user message.
        #[arg(long, default_value = "Hello")]
        message: String,
    },
    /// Create or replace a template (UTF-8 text, at most 16384 characters). A running
    /// proxy applies it within a second.
    Set {
        #[command(flatten)]
        target: PromptTarget,
        /// File with the template text.
        #[arg(
            long,
            value_name = "PATH",
            conflicts_with = "text",
            required_unless_present = "text"
        )]
        file: Option<PathBuf>,
        /// The template text itself.
        #[arg(long)]
        text: Option<String>,
    },
    /// Delete a template; an unknown one is an error.
    Delete {
        #[command(flatten)]
        target: PromptTarget,
    },
}
