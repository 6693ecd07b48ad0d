//! One story, told to every engine kind: probe → list models → chat → stream →
//! embeddings. Only the set-up and the expected model metadata differ per engine.

// See main.rs: the workspace's allow-in-tests setting does not reach test helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flm_core::{EmbeddingRequest, EngineKind, ModelInfo, Role};
use flm_testkit::llama::TinyModel;
use flm_testkit::{EmulatedKind, EmulatedModel, EmulatorOptions};

use crate::common::{
    bounded, chat_request, drain, emulator, engine, llama_required, probe_answered, start_llama,
    target, REQUEST_TIMEOUT, WAIT,
};

/// What `list_models` must say about a model.
#[derive(Debug, Clone, Copy)]
struct Expect {
    context_length: Option<u64>,
    chat: bool,
    embeddings: bool,
    vision: bool,
    tools: bool,
}

/// One engine endpoint of the story and the model used on it.
struct Side {
    engine_id: &'static str,
    base_url: String,
    /// The model as the engine lists it.
    model: String,
    expect: Expect,
}

struct Story {
    kind: EngineKind,
    chat: Side,
    embed: Side,
    /// Emulators answer deterministically, so the streamed text must equal the
    /// non-streamed one. A real model is only required to say something.
    deterministic: bool,
}

#[track_caller]
fn check_model(side: &Side, kind: EngineKind, models: &[ModelInfo]) {
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let m = models
        .iter()
        .find(|m| m.name == side.model)
        .unwrap_or_else(|| panic!("{kind}: `{}` is not listed in {names:?}", side.model));
    assert_eq!(
        m.id.to_string(),
        format!("flm://{}/{}", side.engine_id, side.model),
        "{kind}: canonical id"
    );
    assert_eq!(m.engine_id.as_str(), side.engine_id, "{kind}: engine id");
    assert_eq!(m.engine_kind, kind, "{kind}: engine kind");
    let e = side.expect;
    let got = (
        m.context_length,
        m.supports_chat,
        m.supports_embeddings,
        m.vision,
        m.tools,
    );
    let want = (e.context_length, e.chat, e.embeddings, e.vision, e.tools);
    assert_eq!(
        got, want,
        "{kind} `{}`: (context_length, chat, embeddings, vision, tools) of {m:?}",
        side.model
    );
    assert_eq!(
        m.supports_streaming, m.supports_chat,
        "{kind}: streaming flag"
    );
}

async fn run(story: Story) {
    let kind = story.kind;

    // --- chat side: probe, list, chat, stream ---
    let chat_target = target(story.chat.engine_id, kind, &story.chat.base_url);
    let (count, warning) = probe_answered(&chat_target).await;
    assert!(count >= 1, "{kind}: the probe counted {count} models");
    assert_eq!(warning, None, "{kind}: a ready engine gives no warning");

    let chat_engine = engine(&chat_target, REQUEST_TIMEOUT);
    assert_eq!(chat_engine.kind(), kind);
    assert_eq!(chat_engine.id().as_str(), story.chat.engine_id);
    let models = bounded("list_models", WAIT, chat_engine.list_models())
        .await
        .unwrap_or_else(|e| panic!("{kind}: list_models failed: {e}"));
    assert_eq!(
        models.len(),
        count,
        "{kind}: the probe and the listing disagree: {models:?}"
    );
    check_model(&story.chat, kind, &models);

    let answer = bounded(
        "chat",
        WAIT,
        chat_engine.chat(chat_request(&story.chat.model)),
    )
    .await
    .unwrap_or_else(|e| panic!("{kind}: chat failed: {e}"));
    assert_eq!(answer.message.role, Role::Assistant, "{kind}");
    assert!(
        !answer.message.content.trim().is_empty(),
        "{kind}: empty answer {answer:?}"
    );
    let usage = answer
        .usage
        .unwrap_or_else(|| panic!("{kind}: chat without usage: {answer:?}"));
    assert!(
        usage.prompt_tokens > 0 && usage.completion_tokens > 0,
        "{kind}: {usage:?}"
    );
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens,
        "{kind}: {usage:?}"
    );
    assert!(answer.finish_reason.is_some(), "{kind}: {answer:?}");

    let stream = bounded(
        "chat_stream",
        WAIT,
        chat_engine.chat_stream(chat_request(&story.chat.model)),
    )
    .await
    .unwrap_or_else(|e| panic!("{kind}: chat_stream failed: {e}"));
    let items = drain(stream, WAIT).await;
    let chunks: Vec<_> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| item.unwrap_or_else(|e| panic!("{kind}: stream item {i} failed: {e}")))
        .collect();
    assert!(!chunks.is_empty(), "{kind}: empty stream");
    assert_eq!(
        chunks[0].role,
        Some(Role::Assistant),
        "{kind}: the first chunk carries the role: {:?}",
        chunks[0]
    );
    let content_chunks = chunks.iter().filter(|c| !c.delta.is_empty()).count();
    assert!(
        content_chunks >= 2,
        "{kind}: expected several content deltas: {chunks:?}"
    );
    let finishes: Vec<usize> = chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.finish_reason.is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        finishes.len(),
        1,
        "{kind}: exactly one finish_reason: {chunks:?}"
    );
    assert!(
        chunks[finishes[0] + 1..].iter().all(|c| c.delta.is_empty()),
        "{kind}: no text after the finish chunk: {chunks:?}"
    );
    // Every engine of the story reports usage on streams (Ollama on its `done` line,
    // the OpenAI-compatible ones because the adapter asks for `include_usage`).
    let stream_usage = chunks
        .iter()
        .find_map(|c| c.usage)
        .unwrap_or_else(|| panic!("{kind}: no usage on the stream: {chunks:?}"));
    assert!(
        stream_usage.completion_tokens > 0,
        "{kind}: {stream_usage:?}"
    );
    let streamed: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    if story.deterministic {
        assert_eq!(
            streamed, answer.message.content,
            "{kind}: streamed and non-streamed answers differ"
        );
    }

    // --- embeddings side ---
    let embed_target = target(story.embed.engine_id, kind, &story.embed.base_url);
    let embed_engine = if story.embed.base_url == story.chat.base_url {
        chat_engine
    } else {
        let (count, _) = probe_answered(&embed_target).await;
        assert!(
            count >= 1,
            "{kind}: the embeddings engine lists {count} models"
        );
        engine(&embed_target, REQUEST_TIMEOUT)
    };
    let models = bounded("list_models", WAIT, embed_engine.list_models())
        .await
        .unwrap_or_else(|e| panic!("{kind}: list_models (embeddings engine) failed: {e}"));
    check_model(&story.embed, kind, &models);

    let texts = ["The quick brown fox", "jumps over the lazy dog"];
    let embed = |input: Vec<String>| {
        embed_engine.embeddings(EmbeddingRequest {
            model: story.embed.model.clone(),
            input,
        })
    };
    let forward = bounded(
        "embeddings",
        WAIT,
        embed(texts.iter().map(|t| (*t).to_owned()).collect()),
    )
    .await
    .unwrap_or_else(|e| panic!("{kind}: embeddings failed: {e}"));
    assert_eq!(forward.vectors.len(), 2, "{kind}: one vector per input");
    let dims = forward.vectors[0].len();
    assert!(dims > 0, "{kind}: empty vector");
    assert_eq!(forward.vectors[1].len(), dims, "{kind}: equal dimensions");
    assert!(
        max_diff(&forward.vectors[0], &forward.vectors[1]) > 1e-4,
        "{kind}: different texts gave the same vector"
    );
    // In order: asking in the reverse order swaps the vectors.
    let backward = bounded(
        "embeddings",
        WAIT,
        embed(texts.iter().rev().map(|t| (*t).to_owned()).collect()),
    )
    .await
    .unwrap_or_else(|e| panic!("{kind}: embeddings failed: {e}"));
    assert_eq!(backward.vectors.len(), 2, "{kind}");
    for (i, j) in [(0, 1), (1, 0)] {
        let d = max_diff(&forward.vectors[i], &backward.vectors[j]);
        assert!(
            d < 1e-3,
            "{kind}: vector {i} is not in input order (diff {d})"
        );
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[tokio::test]
async fn story_llamacpp_real_server() {
    if !llama_required("story_llamacpp_real_server") {
        return;
    }
    let (chat, embed) = tokio::join!(
        start_llama(TinyModel::Chat),
        start_llama(TinyModel::Embeddings)
    );
    // The tiny models are started with `-c 256`; llama-server's metadata does not say
    // whether a model is for chat or embeddings, so the adapter offers both.
    run(Story {
        kind: EngineKind::LlamaCpp,
        chat: Side {
            engine_id: "llamacpp-chat",
            base_url: chat.base_url(),
            model: "tiny-llama".into(),
            expect: Expect {
                context_length: Some(256),
                chat: true,
                embeddings: true,
                vision: false,
                tools: false,
            },
        },
        embed: Side {
            engine_id: "llamacpp-embed",
            base_url: embed.base_url(),
            model: "tiny-bert".into(),
            expect: Expect {
                context_length: Some(256),
                chat: true,
                embeddings: true,
                vision: false,
                tools: false,
            },
        },
        deterministic: false,
    })
    .await;
}

#[tokio::test]
async fn story_ollama_emulator() {
    let emu = emulator(
        EmulatedKind::Ollama,
        EmulatorOptions::with_models([
            EmulatedModel::chat("tiny-chat")
                .with_context_length(4096)
                .with_vision()
                .with_tools(),
            EmulatedModel::embedding("tiny-embed").with_context_length(512),
        ]),
    )
    .await;
    run(Story {
        kind: EngineKind::Ollama,
        chat: Side {
            engine_id: "ollama-test",
            base_url: emu.base_url(),
            model: "tiny-chat:latest".into(),
            expect: Expect {
                context_length: Some(4096),
                chat: true,
                embeddings: false,
                vision: true,
                tools: true,
            },
        },
        embed: Side {
            engine_id: "ollama-test",
            base_url: emu.base_url(),
            model: "tiny-embed:latest".into(),
            expect: Expect {
                context_length: Some(512),
                chat: false,
                embeddings: true,
                vision: false,
                tools: false,
            },
        },
        deterministic: true,
    })
    .await;
}

#[tokio::test]
async fn story_lmstudio_emulator() {
    let emu = emulator(
        EmulatedKind::LmStudio,
        EmulatorOptions::with_models([
            EmulatedModel::chat("acme/chat-model")
                .with_context_length(32768)
                .with_vision()
                .with_tools(),
            EmulatedModel::embedding("nomic-ai/text-embedding-nomic-embed-text-v1.5")
                .with_context_length(2048),
        ]),
    )
    .await;
    // LM Studio reports the context a model is loaded with (4096 by default), not the
    // trained maximum.
    run(Story {
        kind: EngineKind::LmStudio,
        chat: Side {
            engine_id: "lmstudio-test",
            base_url: emu.base_url(),
            model: "acme/chat-model".into(),
            expect: Expect {
                context_length: Some(4096),
                chat: true,
                embeddings: false,
                vision: true,
                tools: true,
            },
        },
        embed: Side {
            engine_id: "lmstudio-test",
            base_url: emu.base_url(),
            model: "nomic-ai/text-embedding-nomic-embed-text-v1.5".into(),
            expect: Expect {
                context_length: Some(2048),
                chat: false,
                embeddings: true,
                vision: false,
                tools: false,
            },
        },
        deterministic: true,
    })
    .await;
}

#[tokio::test]
async fn story_vllm_emulator() {
    // vLLM serves one model per process: one server for chat, one for embeddings.
    let (chat, embed) = tokio::join!(
        emulator(
            EmulatedKind::Vllm,
            EmulatorOptions::with_models([
                EmulatedModel::chat("meta-llama/Llama-3.1-8B-Instruct").with_context_length(16384)
            ]),
        ),
        emulator(
            EmulatedKind::Vllm,
            EmulatorOptions::with_models([
                EmulatedModel::embedding("BAAI/bge-small-en-v1.5").with_context_length(512)
            ]),
        )
    );
    // vLLM's listing has `max_model_len` but no capability flags: embeddings are
    // inferred from the model name.
    run(Story {
        kind: EngineKind::Vllm,
        chat: Side {
            engine_id: "vllm-chat",
            base_url: chat.base_url(),
            model: "meta-llama/Llama-3.1-8B-Instruct".into(),
            expect: Expect {
                context_length: Some(16384),
                chat: true,
                embeddings: false,
                vision: false,
                tools: false,
            },
        },
        embed: Side {
            engine_id: "vllm-embed",
            base_url: embed.base_url(),
            model: "BAAI/bge-small-en-v1.5".into(),
            expect: Expect {
                context_length: Some(512),
                chat: false,
                embeddings: true,
                vision: false,
                tools: false,
            },
        },
        deterministic: true,
    })
    .await;
}
