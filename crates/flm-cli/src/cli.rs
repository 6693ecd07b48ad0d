//! Command-line grammar (clap). Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// FLM — one secure, OpenAI-compatible endpoint for the LLM engines on this machine.
///
/// FLM finds the engines you already run (Ollama, vLLM, LM Studio, llama.cpp's
/// llama-server, any OpenAI-compatible server), reports their health and lists their
/// models under one id scheme: flm://{engine_id}/{model}.
///
/// Output is a table on a terminal and the JSON envelope {"version":"1.0","data":…}
/// when piped; choose with --format. Exit codes: 0 success, 1 user error, 2 internal
/// error.
#[derive(Debug, Parser)]
#[command(name = "flm", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Examples:\n  flm engines detect\n  flm models list --format json\n  flm engines add --kind vllm --url http://gpu-box.lan:8000\n  flm config set engine.health_latency_threshold_ms 800"
)]
pub struct Cli {
    /// Output format [default: text on a terminal, json otherwise]
    #[arg(long, global = true, value_enum)]
    pub format: Option<Format>,

    /// Directory holding config.db and security.db [default: $FLM_HOME, else
    /// $FLM_DATA_DIR, else ~/.config/flm on Linux]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The `{"version":"1.0","data":…}` envelope.
    Json,
    /// Human-readable tables and lines.
    Text,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Detect engines, and manage engine endpoints on other hosts or ports.
    #[command(subcommand)]
    Engines(EnginesCmd),
    /// List the models of every running engine.
    #[command(subcommand)]
    Models(ModelsCmd),
    /// Read and change settings.
    #[command(subcommand)]
    Config(ConfigCmd),
}

/// `flm engines …`
#[derive(Debug, Subcommand)]
pub enum EnginesCmd {
    /// Find engines and report their status (cached for 5 minutes).
    ///
    /// Probes each kind's default address (Ollama 11434, vLLM 8000, LM Studio 1234,
    /// llama.cpp 8080; overridable with OLLAMA_BASE_URL, VLLM_HOST/VLLM_PORT,
    /// LMSTUDIO_API_HOST, LLAMA_CPP_PORT) and every endpoint added with `flm engines
    /// add`, all at once. Each engine gets one status: InstalledOnly, RunningHealthy,
    /// RunningDegraded, ErrorNetwork or ErrorApi.
    Detect(DetectArgs),
    /// Add an engine endpoint (another host or port).
    Add(AddArgs),
    /// List the engine endpoints added with `flm engines add`.
    List,
    /// Remove an engine endpoint added with `flm engines add`.
    Remove {
        /// Engine id, as shown by `flm engines list`.
        id: String,
    },
}

/// Options of `flm engines detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Only this engine kind (ollama, vllm, lmstudio, llamacpp, openai) or engine id.
    #[arg(long, value_name = "KIND|ID")]
    pub engine: Option<String>,
    /// Ignore the cache and probe again.
    #[arg(long)]
    pub fresh: bool,
}

/// Options of `flm engines add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Engine kind: ollama, vllm, lmstudio, llamacpp or openai (any other
    /// OpenAI-compatible server).
    #[arg(long)]
    pub kind: String,
    /// Base URL of the engine's API, e.g. http://gpu-box.lan:8000 (a trailing /v1 is
    /// accepted).
    #[arg(long)]
    pub url: String,
    /// Engine id [default: <kind>-<n>]
    #[arg(long)]
    pub id: Option<String>,
}

/// `flm models …`
#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// List models as flm://{engine_id}/{model} ids, with context length and
    /// capabilities.
    List {
        /// Only the models of this engine id (e.g. ollama-default).
        #[arg(long, value_name = "ID")]
        engine: Option<String>,
    },
}

/// `flm config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the value of a key.
    Get {
        /// Key, e.g. engine.health_latency_threshold_ms.
        key: String,
    },
    /// Set a key (validated).
    Set {
        /// Key.
        key: String,
        /// New value.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Print every key with its value and where it comes from.
    List,
}
