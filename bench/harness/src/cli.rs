//! Command-line grammar (clap). Doc comments are the `--help` text.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Benchmark harness for FLM's proxy: a fake engine and a load generator.
///
/// `bench/proxy.sh` drives both, direct and through `flm proxy start`, interleaved.
#[derive(Debug, Parser)]
#[command(name = "flm-bench", version, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a fast fake OpenAI-compatible engine (model `fake-model`).
    ///
    /// GET /v1/models, GET /health, POST /v1/chat/completions (canned answer; with
    /// "stream":true, 20 chunk events, a finish chunk and [DONE], each written
    /// separately). Prints `listening on http://ADDR` on stdout once bound.
    FakeUpstream(FakeUpstreamArgs),
    /// Closed-loop load on POST /v1/chat/completions (or /v1/responses); prints one
    /// JSON line.
    Load(LoadArgs),
    /// Print the Markdown table of a results file written by bench/proxy.sh.
    Summarize(SummarizeArgs),
}

/// Options of `flm-bench fake-upstream`.
#[derive(Debug, Args)]
pub struct FakeUpstreamArgs {
    /// Port to listen on (0: any free port; read it from the `listening on` line).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
}

/// Options of `flm-bench load`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("bound").required(true).multiple(true).args(["requests", "duration_secs"])))]
pub struct LoadArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080 (a trailing /v1 is accepted).
    #[arg(long)]
    pub url: String,
    /// API key, sent as `Authorization: Bearer KEY`.
    #[arg(
        long,
        env = "FLM_BENCH_KEY",
        hide_env_values = true,
        default_value = "none"
    )]
    pub key: String,
    /// Model id of every request.
    #[arg(long, default_value = "fake-model")]
    pub model: String,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Stop after this many measured requests in total.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Stop sending after this many seconds (fractions allowed).
    #[arg(long, value_name = "S")]
    pub duration_secs: Option<f64>,
    /// Ask for streams: measure time to first byte too, and check for [DONE].
    #[arg(long)]
    pub stream: bool,
    /// Unmeasured requests first (spread over the connections).
    #[arg(long, value_name = "W", default_value_t = 0)]
    pub warmup: u64,
    /// Time limit of one request, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub timeout_secs: f64,
    /// Runtime worker threads (1: a current-thread runtime, the leanest).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Label copied into the JSON line (bench/proxy.sh uses <scenario>/<direct|proxy>).
    #[arg(long)]
    pub label: Option<String>,
    /// The API of every request: `chat` (POST /v1/chat/completions) or `responses`
    /// (POST /v1/responses, streams checked for `response.completed`).
    #[arg(long, default_value = "chat", value_parser = ["chat", "responses"])]
    pub api: String,
}

/// Options of `flm-bench summarize`.
#[derive(Debug, Args)]
pub struct SummarizeArgs {
    /// JSON lines written by `flm-bench load --label <scenario>/<direct|proxy>`.
    pub results: PathBuf,
    /// Proxy VmRSS before any load, in KiB.
    #[arg(long)]
    pub rss_idle_kib: Option<u64>,
    /// Proxy VmRSS at the end of the concurrency-64 runs (largest), in KiB.
    #[arg(long)]
    pub rss_c64_kib: Option<u64>,
    /// Exit with 1 when a target is missed (errors or non-2xx always do).
    #[arg(long)]
    pub enforce: bool,
}
