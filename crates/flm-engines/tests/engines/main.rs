//! Integration tests of the engine adapters and detection probes, against real parts:
//! the real llama.cpp `llama-server` (built by `scripts/setup-llama-server.sh`) and the
//! Ollama / LM Studio / vLLM emulators of `flm-testkit`. One test binary, so the
//! llama-server processes and emulators of every module share one `cargo test` run.
//!
//! - [`story`]: the same story (probe → list → chat → stream → embeddings) for every
//!   engine kind;
//! - [`identity`]: a probe never takes one engine (or FLM's own proxy) for another;
//! - [`loading`]: engines that are up but not ready are reported as degraded;
//! - [`failures`]: every bad path ends in a precise error, bounded in time, no panic;
//! - [`whisper`]: the real whisper.cpp server: identity, listing, streamed uploads.

// The workspace denies these lints; its allow-in-tests setting only covers `#[test]`
// functions, not the helpers of an integration test crate. A failed expectation here is
// a test failure, which is exactly what `unwrap`/`expect`/`panic!` express.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod failures;
mod identity;
mod loading;
mod story;
mod whisper;
