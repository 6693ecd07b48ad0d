//! OpenAI-compatible bodies shared by the three engines' `/v1/*` routes.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use crate::chat::{Reply, ToolCall};
use crate::server::error_body;
use crate::stream::{sse_done, sse_frame, StreamPlan, SSE};
use crate::{fake, EmulatedKind};

/// Message of the emulated mid-stream failure.
pub(crate) const MID_STREAM_ERROR: &str = "emulated engine failure in the middle of the stream";

/// Engine-specific details of an OpenAI-compatible chat response.
#[derive(Debug, Clone)]
pub(crate) struct Flavor {
    pub(crate) kind: EmulatedKind,
    pub(crate) path: &'static str,
    pub(crate) id: String,
    pub(crate) created: i64,
    /// `model` echoed in responses.
    pub(crate) model: String,
    pub(crate) fingerprint: Option<String>,
    /// Field carrying reasoning text (`reasoning` or `reasoning_content`).
    pub(crate) reasoning_field: &'static str,
    /// Number of choices (`n`, vLLM only).
    pub(crate) n: usize,
    pub(crate) include_usage: bool,
}

fn usage(reply: &Reply, n: usize) -> Value {
    let completion = reply.completion_tokens * n as u64;
    json!({
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
    })
}

fn tool_call_json(tc: &ToolCall) -> Value {
    json!({
        "id": tc.id,
        "type": "function",
        "function": {"name": tc.name, "arguments": tc.arguments.to_string()},
    })
}

impl Flavor {
    fn envelope(&self, object: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(object));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        if let Some(fp) = &self.fingerprint {
            m.insert("system_fingerprint".into(), json!(fp));
        }
        m
    }

    fn chunk(&self, choices: Value) -> Value {
        let mut m = self.envelope("chat.completion.chunk");
        m.insert("choices".into(), choices);
        Value::Object(m)
    }

    /// The non-streaming `chat.completion` body.
    pub(crate) fn full(&self, reply: &Reply) -> Value {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert("content".into(), json!(reply.content()));
        if let Some(r) = &reply.reasoning {
            message.insert(self.reasoning_field.into(), json!(r));
        }
        if let Some(tc) = &reply.tool_call {
            message.insert("tool_calls".into(), json!([tool_call_json(tc)]));
        }
        let choices: Vec<Value> = (0..self.n)
            .map(|i| {
                json!({
                    "index": i,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": reply.finish,
                })
            })
            .collect();
        let mut m = self.envelope("chat.completion");
        m.insert("choices".into(), json!(choices));
        m.insert("usage".into(), usage(reply, self.n));
        Value::Object(m)
    }

    /// The SSE stream: a role chunk, optional reasoning, one chunk per content piece (or a
    /// tool-call chunk), the finish reason in its own chunk with an empty delta, the usage
    /// chunk (`choices: []`) when `stream_options.include_usage`, then `data: [DONE]`.
    /// With `n > 1`, each step is sent once per choice.
    pub(crate) fn stream(&self, reply: &Reply) -> StreamPlan {
        let mut deltas: Vec<(Value, Value)> =
            vec![(json!({"role": "assistant", "content": ""}), Value::Null)];
        if let Some(r) = &reply.reasoning {
            deltas.push((json!({ self.reasoning_field: r }), Value::Null));
        }
        for piece in &reply.pieces {
            deltas.push((json!({ "content": piece }), Value::Null));
        }
        if let Some(tc) = &reply.tool_call {
            let mut call = tool_call_json(tc);
            if let Some(obj) = call.as_object_mut() {
                obj.insert("index".into(), json!(0));
            }
            deltas.push((json!({ "tool_calls": [call] }), Value::Null));
        }
        deltas.push((json!({}), json!(reply.finish)));

        let mut frames = Vec::new();
        for (delta, finish) in &deltas {
            for i in 0..self.n {
                frames.push(sse_frame(&self.chunk(json!([{
                    "index": i,
                    "delta": delta,
                    "logprobs": null,
                    "finish_reason": finish,
                }]))));
            }
        }
        if self.include_usage {
            let mut m = self.envelope("chat.completion.chunk");
            m.insert("choices".into(), json!([]));
            m.insert("usage".into(), usage(reply, self.n));
            frames.push(sse_frame(&Value::Object(m)));
        }
        let terminal = frames.len();
        frames.push(sse_done());
        let error = error_body(
            self.kind,
            self.path,
            StatusCode::INTERNAL_SERVER_ERROR,
            MID_STREAM_ERROR,
        );
        StreamPlan {
            content_type: SSE,
            frames,
            terminal,
            error_frame: sse_frame(&error),
            // vLLM's stream generator still sends `[DONE]` after an error event.
            after_error: if self.kind == EmulatedKind::Vllm {
                vec![sse_done()]
            } else {
                Vec::new()
            },
        }
    }
}

impl Flavor {
    fn completion_usage(replies: &[Reply]) -> Value {
        let prompt: u64 = replies.iter().map(|r| r.prompt_tokens).sum();
        let completion: u64 = replies.iter().map(|r| r.completion_tokens).sum();
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        })
    }

    /// The non-streaming `text_completion` body of `/v1/completions`: one choice per
    /// prompt.
    pub(crate) fn completion_full(&self, replies: &[Reply]) -> Value {
        let choices: Vec<Value> = replies
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({"index": i, "text": r.content(), "logprobs": null, "finish_reason": r.finish})
            })
            .collect();
        let mut m = self.envelope("text_completion");
        m.insert("choices".into(), json!(choices));
        m.insert("usage".into(), Self::completion_usage(replies));
        Value::Object(m)
    }

    /// The `/v1/completions` SSE stream: one `text_completion` chunk per piece, the
    /// finish reason on each choice's last chunk, the usage chunk (`choices: []`) when
    /// `stream_options.include_usage`, then `data: [DONE]`.
    pub(crate) fn completion_stream(&self, replies: &[Reply]) -> StreamPlan {
        let mut frames = Vec::new();
        for (i, r) in replies.iter().enumerate() {
            let last = r.pieces.len().saturating_sub(1);
            let pieces: Vec<&str> = if r.pieces.is_empty() {
                vec![""]
            } else {
                r.pieces.iter().map(String::as_str).collect()
            };
            for (j, piece) in pieces.iter().enumerate() {
                let finish = if j == last {
                    json!(r.finish)
                } else {
                    Value::Null
                };
                let mut m = self.envelope("text_completion");
                m.insert(
                    "choices".into(),
                    json!([{"index": i, "text": piece, "logprobs": null, "finish_reason": finish}]),
                );
                frames.push(sse_frame(&Value::Object(m)));
            }
        }
        if self.include_usage {
            let mut m = self.envelope("text_completion");
            m.insert("choices".into(), json!([]));
            m.insert("usage".into(), Self::completion_usage(replies));
            frames.push(sse_frame(&Value::Object(m)));
        }
        let terminal = frames.len();
        frames.push(sse_done());
        let error = error_body(
            self.kind,
            self.path,
            StatusCode::INTERNAL_SERVER_ERROR,
            MID_STREAM_ERROR,
        );
        StreamPlan {
            content_type: SSE,
            frames,
            terminal,
            error_frame: sse_frame(&error),
            after_error: if self.kind == EmulatedKind::Vllm {
                vec![sse_done()]
            } else {
                Vec::new()
            },
        }
    }
}

/// Whether a request asked for `stream_options.include_usage`.
pub(crate) fn include_usage(body: &Value) -> bool {
    body.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The OpenAI `list` of embeddings, `usage` counted in words.
pub(crate) fn embeddings(model: &str, inputs: &[String], count_usage: bool) -> Map<String, Value> {
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({"object": "embedding", "embedding": fake::embedding(text), "index": i})
        })
        .collect();
    let tokens = if count_usage {
        inputs.iter().map(|t| fake::count_words(t)).sum::<u64>()
    } else {
        0
    };
    let mut m = Map::new();
    m.insert("object".into(), json!("list"));
    m.insert("data".into(), json!(data));
    m.insert("model".into(), json!(model));
    m.insert(
        "usage".into(),
        json!({"prompt_tokens": tokens, "total_tokens": tokens}),
    );
    m
}
