//! Streamed bodies (SSE and NDJSON) with per-chunk delays and mid-stream failures.
//!
//! Every frame (one SSE event or one NDJSON line) is yielded as its own body chunk, so
//! hyper writes and flushes it on its own, and `MalformedJson` can rewrite frames one by
//! one.

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::server::Shared;
use crate::Behavior;

pub(crate) const SSE: &str = "text/event-stream; charset=utf-8";
pub(crate) const NDJSON: &str = "application/x-ndjson";

/// A stream to send.
#[derive(Debug)]
pub(crate) struct StreamPlan {
    pub(crate) content_type: &'static str,
    pub(crate) frames: Vec<Bytes>,
    /// Index of the first terminal frame (`[DONE]`, Ollama's `done:true` line): mid-stream
    /// failures happen at most here.
    pub(crate) terminal: usize,
    /// The engine's mid-stream error frame.
    pub(crate) error_frame: Bytes,
    /// Frames the engine still sends after a mid-stream error (vLLM: `[DONE]`).
    pub(crate) after_error: Vec<Bytes>,
}

/// `data: <json>\n\n`.
pub(crate) fn sse_frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

pub(crate) fn sse_done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// `<json>\n`.
pub(crate) fn ndjson_frame(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

/// Before an emulated drop, let hyper flush what was already yielded: hyper keeps polling
/// a body that is ready and would discard its write buffer together with the connection,
/// so the client would not even see the status line.
const FLUSH_BEFORE_DROP: Duration = Duration::from_millis(20);

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "emulated connection drop")
}

/// Counts a live streamed body in [`crate::EmulatorControl::open_streams`], and in
/// [`crate::EmulatorControl::cancelled_streams`] when it is dropped before it ended.
struct OpenStream {
    st: Shared,
    ended: bool,
}

impl OpenStream {
    fn new(st: &Shared) -> Self {
        st.control
            .open_streams
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self {
            st: Shared::clone(st),
            ended: false,
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let c = &self.st.control;
        if !self.ended {
            c.cancelled_streams
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        c.open_streams
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Repeats the first content frame (the one after the opening frame) `extra` times,
/// keeping the terminal index in step.
fn pad(frames: Vec<Bytes>, terminal: usize, extra: usize) -> (Vec<Bytes>, usize) {
    let at = 1.min(terminal.saturating_sub(1));
    if extra == 0 || terminal == 0 {
        return (frames, terminal);
    }
    let Some(filler) = frames.get(at).cloned() else {
        return (frames, terminal);
    };
    let mut out = Vec::with_capacity(frames.len() + extra);
    out.extend(frames[..=at].iter().cloned());
    out.extend(std::iter::repeat_n(filler, extra));
    out.extend(frames[at + 1..].iter().cloned());
    (out, terminal + extra)
}

/// Streams `plan` under `behavior` (only `FailMidStream` and `DropMidStream` matter here).
pub(crate) fn respond(st: &Shared, behavior: &Behavior, plan: StreamPlan) -> Response {
    let st = Shared::clone(st);
    let StreamPlan {
        content_type,
        frames,
        terminal,
        error_frame,
        after_error,
    } = plan;
    let (frames, terminal) = pad(frames, terminal, st.stream_padding);
    let (cut, fail, drop) = match behavior {
        Behavior::FailMidStream { after_chunks } => (*after_chunks.min(&terminal), true, false),
        Behavior::DropMidStream { after_chunks } => (*after_chunks.min(&terminal), false, true),
        _ => (frames.len(), false, false),
    };
    let guard = OpenStream::new(&st);
    let body = async_stream::stream! {
        // Only a drop while the stream is suspended counts as a cancellation; every
        // way the emulator itself ends the stream marks it ended first.
        let mut guard = guard;
        for (i, frame) in frames.into_iter().take(cut).enumerate() {
            if i > 0 && !st.pause(st.chunk_delay).await {
                guard.ended = true;
                yield Err(aborted());
                return;
            }
            yield Ok(frame);
        }
        if fail {
            if !st.pause(st.chunk_delay).await {
                guard.ended = true;
                yield Err(aborted());
                return;
            }
            yield Ok(error_frame);
            for frame in after_error {
                yield Ok(frame);
            }
        } else if drop {
            // An error from the body makes hyper close the connection without the final
            // chunk of the chunked encoding: the client sees a truncated response.
            st.pause(FLUSH_BEFORE_DROP).await;
            guard.ended = true;
            yield Err(aborted());
        }
        guard.ended = true;
    };
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == SSE {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

/// A JSON response; under `DropMidStream` only the first half of the body is sent before
/// the connection is aborted.
pub(crate) fn json_or_drop(behavior: &Behavior, body: &Value) -> Response {
    let bytes = Bytes::from(body.to_string());
    let resp_body = if matches!(behavior, Behavior::DropMidStream { .. }) {
        let half = bytes.slice(..bytes.len() / 2);
        Body::from_stream(async_stream::stream! {
            yield Ok(half);
            tokio::time::sleep(FLUSH_BEFORE_DROP).await;
            yield Err(aborted());
        })
    } else {
        Body::from(bytes)
    };
    let mut resp = Response::new(resp_body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
