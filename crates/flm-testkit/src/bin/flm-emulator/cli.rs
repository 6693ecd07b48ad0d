//! Command-line arguments of `flm-emulator`.

use std::net::{IpAddr, Ipv4Addr};

use clap::Parser;
use flm_testkit::EmulatedKind;

/// Runs an emulated local LLM engine (Ollama, LM Studio or vLLM) for FLM tests.
///
/// Prints `listening on http://ADDR:PORT` once the socket is bound, then serves until
/// SIGTERM or SIGINT.
#[derive(Debug, Parser)]
#[command(name = "flm-emulator", version)]
pub(crate) struct Cli {
    /// Engine to emulate: `ollama`, `lmstudio` or `vllm`.
    #[arg(long)]
    pub(crate) kind: EmulatedKind,

    /// Port to listen on; defaults to the engine's own default (11434, 1234, 8000).
    /// `0` picks a free port.
    #[arg(long)]
    pub(crate) port: Option<u16>,

    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub(crate) bind: IpAddr,

    /// Chat models to serve, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = flm_testkit::DEFAULT_MODEL)]
    pub(crate) models: Vec<String>,

    /// Embedding models to serve, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) embedding_models: Vec<String>,

    /// Pause between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub(crate) chunk_delay_ms: u64,

    /// vLLM only: require `Authorization: Bearer <KEY>` on `/v1/*`.
    #[arg(long, env = "FLM_EMULATOR_API_KEY")]
    pub(crate) api_key: Option<String>,
}
