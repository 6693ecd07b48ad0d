//! `flm chat --responses`: the real `flm` and `flm-proxy` binaries in front of the
//! real llama-server (bridged to chat completions) and the vLLM emulator (relayed
//! natively), full and streamed, text and `--json`, and the proxy's errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{free_port, llama, Env};
use flm_testkit::llama::TinyModel;
use flm_testkit::{Behavior, EmulatedKind, Emulator, EmulatorOptions};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_the_responses_api() {
    let chat = llama(TinyModel::Chat);
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let env = Env::new();
    let _guard = env.guard();
    for (kind, url, id) in [
        ("llamacpp", chat.base_url(), "llama"),
        ("vllm", vllm.base_url(), "vllm"),
    ] {
        env.flm(&["engines", "add", "--kind", kind, "--url", &url, "--id", id])
            .await
            .ok();
    }
    let port = free_port();
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();

    let chat_args = |model: &'static str, extra: &[&'static str]| {
        let mut a = vec!["chat", "--responses", "--model", model, "--prompt", "hi"];
        a.extend_from_slice(extra);
        a
    };
    // Native relay (vLLM), full and streamed: the same text as chat completions.
    let out = env.flm(&chat_args("flm://vllm/test-model", &[])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "Hello from vllm test-model: you said hi.\n");
    let out = env
        .flm(&chat_args("flm://vllm/test-model", &["--stream"]))
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "Hello from vllm test-model: you said hi.\n");
    let body = vllm.control().last_chat_body().unwrap();
    assert_eq!(body["input"], "hi");
    assert_eq!(body["stream"], true);

    // The bridge (llama-server): a text answer; --json gives the response object, or
    // one event per line ending with the final one.
    let out = env
        .flm(&chat_args(
            "flm://llama/tiny-llama",
            &["--max-tokens", "5", "--temperature", "0"],
        ))
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.ends_with('\n') && out.stdout.trim().len() > 1,
        "{}",
        out.stdout
    );
    let out = env
        .flm(&chat_args(
            "flm://llama/tiny-llama",
            &["--max-tokens", "5", "--json"],
        ))
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json["object"], "response");
    assert_eq!(out.json["max_output_tokens"], 5);
    assert!(out.json["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let out = env
        .flm(&chat_args(
            "flm://llama/tiny-llama",
            &["--max-tokens", "4", "--stream", "--json"],
        ))
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let types: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types[0], "response.created");
    assert!(
        types.iter().any(|t| t == "response.output_text.delta"),
        "{types:?}"
    );
    assert!(
        ["response.completed", "response.incomplete"].contains(&types.last().unwrap().as_str()),
        "{types:?}"
    );

    // Errors keep the proxy's code: before the stream, and when the stream fails.
    env.flm(&chat_args("flm://vllm/nope", &[]))
        .await
        .err("responses_error", 1);
    vllm.control()
        .set_behavior(Behavior::FailMidStream { after_chunks: 3 });
    let msg = env
        .flm(&chat_args("flm://vllm/test-model", &["--stream"]))
        .await
        .err("internal_error", 1);
    assert!(msg.contains("emulated engine failure"), "{msg}");
    env.flm(&["proxy", "stop"]).await.ok();
}
