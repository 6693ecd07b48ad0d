//! Command-line grammar (clap). Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::cli_profiles::{ApiCmd, ModelProfilesCmd};
pub use crate::cli_security::{CheckArgs, SecurityCmd};
pub use crate::cli_service::ServiceCmd;

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
#[command(name = "flm", version = crate::build_info::VERSION, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Examples:\n  flm engines detect\n  flm models list --format json\n  flm engines add --kind vllm --url http://gpu-box.lan:8000\n  flm proxy start\n  flm chat --model flm://ollama-default/llama3.2:latest --prompt \"Hello\"\n  flm api-keys create --label laptop\n  flm config set engine.health_latency_threshold_ms 800"
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
    /// Start, stop and inspect the OpenAI-compatible proxy.
    #[command(subcommand)]
    Proxy(ProxyCmd),
    /// Create, list, revoke and rotate the API keys clients use with the proxy.
    #[command(subcommand)]
    ApiKeys(ApiKeysCmd),
    /// Send a chat message through the running proxy.
    Chat(ChatArgs),
    /// Security: policy, IP blocklist, audit log, backups, events, local root CA.
    #[command(subcommand)]
    Security(SecurityCmd),
    /// Check both databases, the security policy and the audit chain.
    Check(CheckArgs),
    /// Requests, errors, tokens and latency through the proxy, per key, model or
    /// engine (from the minute aggregates the proxy writes every 10 s).
    Usage(UsageArgs),
    /// Open the FLM app in the browser, logged in (starts the daemon if needed).
    Ui(UiArgs),
    /// Named parameter sets for an engine model; clients use profile/<label> as the
    /// model id.
    #[command(subcommand)]
    ModelProfiles(ModelProfilesCmd),
    /// API settings of the proxy: system prompt templates.
    #[command(subcommand)]
    Api(ApiCmd),
    /// Run the proxy as a systemd user service (install, uninstall, status).
    #[command(subcommand)]
    Service(ServiceCmd),
}

/// Options of `flm usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Time range: 1h, 24h or 7d.
    #[arg(long, default_value = "24h")]
    pub range: String,
    /// Group by: key, model or engine.
    #[arg(long, default_value = "model")]
    pub by: String,
}

/// `flm ui`
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// Only print the login URL; do not open a browser.
    #[arg(long)]
    pub no_open: bool,
}

/// `flm proxy …`
#[derive(Debug, Subcommand)]
pub enum ProxyCmd {
    /// Start the proxy: one OpenAI-compatible endpoint (http://localhost:8780/v1 by
    /// default) in front of every engine FLM detects.
    ///
    /// The proxy runs in the background daemon `flm-proxy`, which is started when
    /// needed and exits when its last proxy stops. On the first start an API key is
    /// created and printed once; clients send it as `Authorization: Bearer <key>`.
    Start(StartArgs),
    /// Stop running proxies (all of them unless --port or --handle-id is given).
    Stop(StopArgs),
    /// Show the running proxies.
    Status,
    /// Re-read API keys, the security policy (IP allow list, rate limits, CORS,
    /// `media_fetch`…), the IP blocklist and renewed TLS certificate files in the
    /// running proxies, without restarting them or dropping connections. Port, mode and
    /// bind address need a restart.
    #[command(after_help = "Examples:\n  flm proxy reload --all\n  flm proxy reload --port 8780")]
    Reload(ReloadArgs),
}

/// TLS modes of `flm proxy start --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Plain HTTP.
    LocalHttp,
    /// HTTPS on port+1 with a self-signed certificate; HTTP redirects.
    DevSelfsigned,
    /// HTTPS on port+1 with an ACME (Let's Encrypt) certificate; needs --acme-email
    /// and --acme-domain, and port 80 of the domain forwarded to --port.
    HttpsAcme,
    /// HTTPS on port+1 with a certificate of FLM's local root CA; HTTP redirects.
    PackagedCa,
}

/// Options of `flm proxy start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// HTTP port [default: the `proxy.port` setting, 8780]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Listen address. 0.0.0.0 exposes the proxy to the network: only do that on
    /// purpose.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: String,
    /// TLS mode.
    #[arg(long, value_enum, default_value = "local-http")]
    pub mode: ModeArg,
    /// ACME account contact email (required for --mode https-acme).
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// Domain of the ACME certificate (required for --mode https-acme).
    #[arg(long, value_name = "FQDN")]
    pub acme_domain: Option<String>,
    /// ACME challenge: http-01 (served on --port) or dns-01 (TXT records published by
    /// --dns-hook; required for a wildcard --acme-domain *.example.com).
    #[arg(long, value_enum, default_value = "http-01")]
    pub challenge: ChallengeArg,
    /// DNS-01 hook program, run as `<command> set|remove <fqdn> <value>` to add or
    /// delete the `_acme-challenge` TXT record (exit 0 = done). Required for
    /// --challenge dns-01.
    #[arg(long, value_name = "COMMAND")]
    pub dns_hook: Option<String>,
    /// Seconds to wait after the DNS-01 records are set before validation (at most
    /// 120) [default: 30]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=120))]
    pub dns_propagation_wait: Option<u64>,
    /// Outbound path to engines on other hosts: direct, tor (SOCKS5 at
    /// 127.0.0.1:9050 unless --socks5-endpoint) or socks5. Host names are resolved by
    /// the SOCKS server; engines on this machine are always reached directly.
    #[arg(long, value_enum, default_value = "direct")]
    pub egress_mode: EgressArg,
    /// SOCKS5 endpoint host:port (required for --egress-mode socks5; default for tor:
    /// 127.0.0.1:9050).
    #[arg(long, value_name = "HOST:PORT")]
    pub socks5_endpoint: Option<String>,
    /// When the SOCKS5 endpoint does not answer at start, continue with direct egress
    /// (logged) instead of refusing to start.
    #[arg(long)]
    pub egress_fail_open: bool,
    /// Keep --mode https-acme together with --egress-mode tor (otherwise the proxy
    /// starts in local-http, since ACME CAs often refuse Tor exit nodes).
    #[arg(long)]
    pub force: bool,
    /// Serve in this process until Ctrl-C / SIGTERM instead of in the daemon (for
    /// tests and benchmarks).
    #[arg(long)]
    pub no_daemon: bool,
}

/// ACME challenges of `flm proxy start --challenge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChallengeArg {
    /// HTTP-01 on the HTTP port.
    #[value(name = "http-01")]
    Http01,
    /// DNS-01 through --dns-hook.
    #[value(name = "dns-01")]
    Dns01,
}

/// Egress modes of `flm proxy start --egress-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EgressArg {
    /// OS routing.
    Direct,
    /// Through Tor's SOCKS5 port.
    Tor,
    /// Through a SOCKS5 proxy (--socks5-endpoint).
    Socks5,
}

/// Options of `flm proxy stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Stop only the proxy on this port.
    #[arg(long, conflicts_with = "handle_id")]
    pub port: Option<u16>,
    /// Stop only the proxy with this handle id (see `flm proxy status`).
    #[arg(long, value_name = "ID")]
    pub handle_id: Option<String>,
}

/// Options of `flm proxy reload`: exactly one target.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ReloadArgs {
    /// Reload the proxy on this port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Reload the proxy with this handle id (see `flm proxy status`).
    #[arg(long, value_name = "ID")]
    pub handle_id: Option<String>,
    /// Reload every running proxy.
    #[arg(long)]
    pub all: bool,
}

/// `flm api-keys …`
#[derive(Debug, Subcommand)]
pub enum ApiKeysCmd {
    /// Create a key; the key itself is printed once and never again.
    #[command(
        after_help = "Examples:\n  flm api-keys create --label laptop\n  flm api-keys create --label rag --models 'flm://ollama-default/*' --routes embeddings,models\n  flm api-keys create --label demo --models '*llama*' --expires-in 30d\n  flm api-keys create --label team --tpm 20000 --monthly-tokens 5000000\n\nModel patterns: an id flm://{engine_id}/{model} or a bare model name; `*` matches any run of\ncharacters, `?` one character. Route classes: chat, completions, embeddings, models, responses,\naudio, images, passthrough, metrics. Durations: a whole number and s, m, h or d (e.g. 30d, 12h)."
    )]
    Create {
        /// What the key is for (e.g. laptop, ci); need not be unique.
        #[arg(long)]
        label: String,
        #[command(flatten)]
        limits: KeyLimitArgs,
        /// Lifetime of the key, e.g. 30d, 12h, 90m, 45s [default: never expires]
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// List keys (metadata only: the keys themselves are not stored).
    List,
    /// Revoke a key; a running proxy refuses it at once.
    Revoke {
        /// Key id, as shown by `flm api-keys list` (key_…).
        id: String,
    },
    /// Revoke a key and create its replacement (printed once). The new key keeps the
    /// old one's models, routes and expiry.
    Rotate {
        /// Key id to replace.
        id: String,
        /// Label of the new key [default: the old key's label]
        #[arg(long)]
        label: Option<String>,
        /// New lifetime from now, e.g. 30d [default: the old key's expiry]
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Change the models, routes or expiry of a key; a running proxy applies it at once.
    Update {
        /// Key id, as shown by `flm api-keys list` (key_…).
        id: String,
        #[command(flatten)]
        limits: KeyLimitArgs,
        /// Let the key use every model again.
        #[arg(long, conflicts_with = "models")]
        all_models: bool,
        /// Let the key call every route again.
        #[arg(long, conflicts_with = "routes")]
        all_routes: bool,
        /// New lifetime from now, e.g. 30d, 12h, 90m, 45s.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Remove the expiry.
        #[arg(long, conflicts_with = "expires_in")]
        no_expiry: bool,
        /// Remove the tokens-per-minute limit.
        #[arg(long, conflicts_with = "tpm")]
        no_tpm: bool,
        /// Remove the monthly token quota.
        #[arg(long, conflicts_with = "monthly_tokens")]
        no_monthly_tokens: bool,
    },
}

/// Model and route limits of a key.
#[derive(Debug, Args)]
pub struct KeyLimitArgs {
    /// Models the key may use: ids (flm://engine/model), names or glob patterns
    /// (`*`, `?`), comma-separated or repeated [default: every model]
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Route classes the key may call, comma-separated or repeated: chat, completions,
    /// embeddings, models, responses, audio, images, passthrough, metrics [default: every route]
    #[arg(long, value_name = "CLASS", value_delimiter = ',')]
    pub routes: Option<Vec<String>>,
    /// Tokens per minute the key may use (prompt + completion) [default: no limit]
    #[arg(long, value_name = "TOKENS")]
    pub tpm: Option<u64>,
    /// Tokens per calendar month (UTC) the key may use, kept across restarts
    /// [default: no limit]
    #[arg(long, value_name = "TOKENS")]
    pub monthly_tokens: Option<u64>,
}

/// Options of `flm chat`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  flm chat --model flm://llamacpp-default/tiny-llama --prompt \"Hello\"\n  flm chat --model llama3.2 --prompt \"Describe this\" --image photo.jpg --stream\n  flm chat --model llava --prompt \"What is this?\" --image-url https://example.com/cat.png\n  git diff | flm chat --model llama3.2 --prompt-file -\n  flm chat --model whisper-1 --audio meeting.wav"
)]
pub struct ChatArgs {
    /// Model: flm://{engine_id}/{model} as listed by `flm models list`, or a bare
    /// model name.
    #[arg(long)]
    pub model: String,
    /// The message to send (or --prompt-file); with --audio, optional text that guides
    /// the transcription.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub prompt: String,
    /// Read the message from a file (UTF-8, line breaks kept); `-` reads standard input.
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
    /// Print the answer as it is generated.
    #[arg(long)]
    pub stream: bool,
    /// Print the raw OpenAI JSON (with --stream: one chunk per line).
    #[arg(long)]
    pub json: bool,
    /// Send through the OpenAI Responses API (`/v1/responses`) instead of
    /// `/v1/chat/completions`.
    #[arg(long)]
    pub responses: bool,
    /// Attach an image (PNG, JPEG or WebP, at most 8 MB); repeatable.
    #[arg(long, value_name = "FILE")]
    pub image: Vec<PathBuf>,
    /// Attach a remote image by URL (http/https), fetched by the proxy within its
    /// `media_fetch` policy; repeatable, mixable with --image.
    #[arg(long, value_name = "URL")]
    pub image_url: Vec<String>,
    /// Transcribe this audio file (WAV, MP3, FLAC, OGG or M4A, at most 25 MB) with
    /// --model through POST /v1/audio/transcriptions and print the text.
    #[arg(long, value_name = "FILE")]
    pub audio: Option<PathBuf>,
    /// Sampling temperature (0.0-2.0).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Upper bound of generated tokens.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: Option<u32>,
    /// Port of the proxy [default: the first proxy the daemon runs]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// API key; `-` reads it from standard input. A key given here is visible to
    /// every user of this machine in the process list: prefer $FLM_API_KEY,
    /// --api-key-file or --api-key-stdin [default: $FLM_API_KEY, else the daemon's
    /// key for this machine]
    #[arg(long, value_name = "KEY", conflicts_with_all = ["api_key_file", "api_key_stdin"])]
    pub api_key: Option<String>,
    /// Read the API key from this file (its first line; keep the file private).
    #[arg(long, value_name = "FILE", conflicts_with = "api_key_stdin")]
    pub api_key_file: Option<PathBuf>,
    /// Read the API key from standard input (its first line).
    #[arg(long)]
    pub api_key_stdin: bool,
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
    /// Show the engine health history recorded by the running proxy (a sample per
    /// engine on each status change, otherwise at most one a minute; kept 30 days),
    /// with success rate, average latency and error rate per engine and model.
    HealthHistory(HealthHistoryArgs),
}

/// Options of `flm engines health-history`.
#[derive(Debug, Args)]
pub struct HealthHistoryArgs {
    /// Only this engine id.
    #[arg(long, value_name = "ID")]
    pub engine: Option<String>,
    /// Only this model (flm://{engine_id}/{model}).
    #[arg(long, value_name = "ID")]
    pub model: Option<String>,
    /// How many hours back (1-720).
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// At most this many samples, newest first (1-10000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// Options of `flm engines detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Only this engine kind (ollama, vllm, lmstudio, llamacpp, openai, whispercpp) or
    /// engine id.
    #[arg(long, value_name = "KIND|ID")]
    pub engine: Option<String>,
    /// Ignore the cache and probe again.
    #[arg(long)]
    pub fresh: bool,
}

/// Options of `flm engines add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Engine kind: ollama, vllm, lmstudio, llamacpp, openai (any other
    /// OpenAI-compatible server) or whispercpp (whisper.cpp's whisper-server).
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
