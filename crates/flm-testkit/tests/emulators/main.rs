//! Integration tests: each emulator on an ephemeral loopback port, driven with reqwest.

mod behaviors;
mod binary;
#[expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failed expectation is a test failure"
)]
mod common;
mod completions;
mod lmstudio;
mod media;
mod ollama;
mod vllm;
