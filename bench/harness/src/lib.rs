//! Benchmark harness for FLM's proxy: what the proxy adds over calling the engine
//! directly, measured in the same run.
//!
//! - [`upstream`]: a fake OpenAI-compatible engine that answers from canned bytes, so
//!   that the engine costs as little as possible and the proxy's share dominates
//!   what is measured.
//! - [`load`]: a closed-loop load generator. `N` workers each own one keep-alive
//!   connection and send the next request as soon as the previous one completes.
//! - [`summary`]: turns the JSON lines of interleaved direct/proxy runs into the
//!   Markdown table of `docs/benchmarks.md`.
//!
//! Design choice: both sides use hyper's per-connection HTTP/1 APIs
//! (`hyper::server::conn::http1`, `hyper::client::conn::http1`) instead of axum and
//! reqwest, or even `hyper_util`'s pooled legacy client. The tools must be leaner
//! than the thing they measure, and one worker per connection gives exactly `N`
//! connections with no pool checkout on the hot path. The rejected alternative,
//! an external tool such as `wrk` or `oha`, cannot check that a stream ends with
//! `[DONE]` nor measure time to first body byte separately, and would not build from
//! this workspace.

pub mod load;
pub mod summary;
pub mod upstream;
