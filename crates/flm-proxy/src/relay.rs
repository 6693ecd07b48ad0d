//! Streaming bodies sent to clients.
//!
//! - [`relay_sse`]: an OpenAI-compatible engine's SSE bytes, passed through chunk by
//!   chunk as they arrive (no re-framing, no buffering). The relay only watches the
//!   bytes for `data: [DONE]` and error events, so that a stream the engine breaks
//!   off still ends the OpenAI way: an error event, then `data: [DONE]`.
//! - [`translate_sse`]: engine-neutral chunks (Ollama) rendered as OpenAI
//!   `chat.completion.chunk` events.
//!
//! Both enforce the streaming ceiling (`proxy.stream_timeout_secs`) without an idle
//! timeout, so a slow first token is never cut. Dropping the stream (the client went
//! away) drops the upstream request with it. The ceiling holds even when nobody polls
//! the stream (hyper polls a body only when it can write, so a client that stops
//! reading would otherwise stall it): a watchdog drops the upstream at the deadline
//! ([`Watched`]); the connection itself is closed by the send timeout
//! (`proxy.send_timeout_secs`, see `server.rs`).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flm_core::ports::RawBody;
use flm_core::{ChatStream, EngineError};
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio::time::Instant;

const DONE: &[u8] = b"data: [DONE]";
const ERROR_EVENT: &[u8] = b"data: {\"error\"";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// An upstream stream that a watchdog task drops at `deadline`, whether or not the
/// stream is being polled.
struct Watched<S> {
    slot: Arc<Mutex<Option<S>>>,
    watchdog: Option<tokio::task::AbortHandle>,
}

impl<S: Send + 'static> Watched<S> {
    fn new(upstream: S, deadline: Instant) -> Self {
        let slot = Arc::new(Mutex::new(Some(upstream)));
        let weak = Arc::downgrade(&slot);
        // Outside a runtime there is no watchdog; the relay's own deadline still applies
        // whenever the stream is polled.
        let watchdog = tokio::runtime::Handle::try_current().ok().map(|rt| {
            rt.spawn(async move {
                tokio::time::sleep_until(deadline).await;
                if let Some(slot) = weak.upgrade() {
                    let upstream = lock(&slot).take();
                    if upstream.is_some() {
                        tracing::debug!("streaming ceiling reached: upstream request dropped");
                    }
                }
            })
            .abort_handle()
        });
        Self { slot, watchdog }
    }
}

impl<S> Watched<S> {
    /// Drops the upstream now (the relay is done with it).
    fn close(&self) {
        let upstream = lock(&self.slot).take();
        drop(upstream);
    }
}

/// The slot holds at most the upstream stream, valid even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        if let Some(w) = &self.watchdog {
            w.abort();
        }
    }
}

impl<S: Stream + Unpin> Stream for Watched<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        match lock(&self.slot).as_mut() {
            Some(s) => s.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

/// An SSE error event followed by `[DONE]`.
pub fn error_tail(
    code: &str,
    kind: &str,
    message: &str,
    request_id: &str,
    with_event: bool,
) -> Bytes {
    let mut out = String::new();
    if with_event {
        let message = crate::error::scrub_addresses(message);
        let ev = json!({"error": {"code": code, "message": message, "type": kind, "request_id": request_id}});
        out.push_str(&format!("data: {ev}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    Bytes::from(out)
}

/// Relays an upstream SSE body, completing it if the engine breaks it off.
pub fn relay_sse(
    body: RawBody,
    ceiling: Duration,
    request_id: String,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct St {
        body: Watched<RawBody>,
        // One timer for the whole stream: registering a timer per chunk would cost
        // more than the relay itself.
        deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
        deadline_at: Instant,
        tail: [u8; 16],
        tail_len: usize,
        saw_done: bool,
        saw_error: bool,
        finished: bool,
        rid: String,
    }
    impl St {
        /// Watches for `[DONE]` and error events, including markers split across
        /// chunks (the last 16 bytes of the previous chunk are kept), without copying
        /// the chunk.
        fn scan(&mut self, chunk: &[u8]) {
            if self.tail_len > 0 {
                let head = &chunk[..chunk.len().min(16)];
                let mut joint = [0u8; 32];
                joint[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
                joint[self.tail_len..self.tail_len + head.len()].copy_from_slice(head);
                let joint = &joint[..self.tail_len + head.len()];
                self.saw_done |= contains(joint, DONE);
                self.saw_error |= contains(joint, ERROR_EVENT);
            }
            self.saw_done |= contains(chunk, DONE);
            self.saw_error |= contains(chunk, ERROR_EVENT);
            let keep = chunk.len().min(16);
            self.tail[..keep].copy_from_slice(&chunk[chunk.len() - keep..]);
            self.tail_len = keep;
        }
    }
    let deadline = Instant::now() + ceiling;
    let st = St {
        body: Watched::new(body, deadline),
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        deadline_at: deadline,
        tail: [0; 16],
        tail_len: 0,
        saw_done: false,
        saw_error: false,
        finished: false,
        rid: request_id,
    };
    futures::stream::unfold(st, |mut st| async move {
        if st.finished {
            return None;
        }
        let next = tokio::select! {
            biased;
            n = st.body.next() => Some(n),
            _ = &mut st.deadline => None,
        };
        // An engine that always has a chunk ready never lets the timer be polled (nor,
        // on a busy worker, fire): the clock decides.
        let next = next.filter(|_| Instant::now() < st.deadline_at);
        if !matches!(next, Some(Some(Ok(_)))) {
            st.body.close();
        }
        let out = match next {
            Some(Some(Ok(chunk))) => {
                st.scan(&chunk);
                chunk
            }
            Some(Some(Err(e))) => {
                st.finished = true;
                if st.saw_done {
                    return None;
                }
                tracing::warn!(request_id = %st.rid, error = %e, "engine stream broke");
                error_tail(
                    "stream_error",
                    "server_error",
                    &format!("the engine stream failed: {e}"),
                    &st.rid,
                    !st.saw_error,
                )
            }
            Some(None) => {
                st.finished = true;
                if st.saw_done {
                    return None;
                }
                error_tail(
                    "stream_error",
                    "server_error",
                    "the engine closed the stream before it was complete",
                    &st.rid,
                    !st.saw_error,
                )
            }
            None => {
                st.finished = true;
                error_tail(
                    "streaming_timeout",
                    "timeout_error",
                    "the stream exceeded its time limit (proxy.stream_timeout_secs)",
                    &st.rid,
                    true,
                )
            }
        };
        Some((Ok(out), st))
    })
}

/// Renders engine-neutral chunks as OpenAI SSE events.
pub fn translate_sse(
    chunks: ChatStream,
    ceiling: Duration,
    request_id: String,
    model: String,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct St {
        chunks: Watched<ChatStream>,
        deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
        deadline_at: Instant,
        finished: bool,
        id: String,
        model: String,
        created: i64,
        rid: String,
        /// Tool calls sent so far: the next one's `index`.
        calls: usize,
    }
    let deadline = Instant::now() + ceiling;
    let st = St {
        chunks: Watched::new(chunks, deadline),
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        deadline_at: deadline,
        finished: false,
        id: format!("chatcmpl-{request_id}"),
        model,
        created: chrono::Utc::now().timestamp(),
        rid: request_id,
        calls: 0,
    };
    futures::stream::unfold(st, |mut st| async move {
        if st.finished {
            return None;
        }
        let frame = |st: &St, delta: serde_json::Value, finish: Option<&str>| {
            let ev = json!({
                "id": st.id, "object": "chat.completion.chunk", "created": st.created, "model": st.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
            });
            format!("data: {ev}\n\n")
        };
        let next = tokio::select! {
            biased;
            n = st.chunks.next() => Ok(n),
            _ = &mut st.deadline => Err(()),
        };
        let next = next.and_then(|n| {
            if Instant::now() < st.deadline_at {
                Ok(n)
            } else {
                Err(())
            }
        });
        if !matches!(next, Ok(Some(Ok(_)))) {
            st.chunks.close();
        }
        let out = match next {
            Ok(Some(Ok(c))) => {
                let mut s = String::new();
                let mut delta = serde_json::Map::new();
                if c.role.is_some() {
                    delta.insert("role".into(), json!("assistant"));
                }
                if !c.delta.is_empty() || c.role.is_some() {
                    delta.insert("content".into(), json!(c.delta));
                }
                if let Some(r) = &c.reasoning {
                    delta.insert("reasoning".into(), json!(r));
                }
                if !c.tool_calls.is_empty() {
                    let calls: Vec<serde_json::Value> = c
                        .tool_calls
                        .iter()
                        .map(|tc| {
                            let v = json!({
                                "index": st.calls, "id": tc.id, "type": "function",
                                "function": {"name": tc.name, "arguments": tc.arguments},
                            });
                            st.calls += 1;
                            v
                        })
                        .collect();
                    delta.insert("tool_calls".into(), serde_json::Value::Array(calls));
                }
                if !delta.is_empty() {
                    s.push_str(&frame(&st, serde_json::Value::Object(delta), None));
                }
                if let Some(f) = &c.finish_reason {
                    s.push_str(&frame(&st, json!({}), Some(f)));
                    if let Some(u) = c.usage {
                        let ev = json!({
                            "id": st.id, "object": "chat.completion.chunk", "created": st.created,
                            "model": st.model, "choices": [], "usage": u
                        });
                        s.push_str(&format!("data: {ev}\n\n"));
                    }
                    s.push_str("data: [DONE]\n\n");
                    st.finished = true;
                }
                Bytes::from(s)
            }
            Ok(Some(Err(e))) => {
                st.finished = true;
                tracing::warn!(request_id = %st.rid, error = %e, "engine stream failed");
                error_tail(
                    "stream_error",
                    "server_error",
                    &stream_message(&e),
                    &st.rid,
                    true,
                )
            }
            Ok(None) => {
                st.finished = true;
                error_tail(
                    "stream_error",
                    "server_error",
                    "the engine closed the stream before it was complete",
                    &st.rid,
                    true,
                )
            }
            Err(_) => {
                st.finished = true;
                error_tail(
                    "streaming_timeout",
                    "timeout_error",
                    "the stream exceeded its time limit (proxy.stream_timeout_secs)",
                    &st.rid,
                    true,
                )
            }
        };
        Some((Ok(out), st))
    })
}

/// An engine-neutral assistant message as OpenAI's `choices[].message`: `content` is
/// null when a turn only calls tools, and `arguments` stay JSON text.
pub fn assistant_message(m: &flm_core::ChatMessage) -> serde_json::Value {
    let mut msg = json!({"role": "assistant", "content": m.content});
    if !m.tool_calls.is_empty() {
        if m.content.is_empty() {
            msg["content"] = serde_json::Value::Null;
        }
        msg["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|tc| {
                json!({
                    "id": tc.id, "type": "function",
                    "function": {"name": tc.name, "arguments": tc.arguments},
                })
            })
            .collect();
    }
    msg
}

fn stream_message(e: &EngineError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(s: impl Stream<Item = Result<Bytes, std::io::Error>>) -> String {
        let parts: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
        parts
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    fn body(parts: Vec<Result<&'static str, EngineError>>) -> RawBody {
        Box::pin(futures::stream::iter(
            parts.into_iter().map(|p| p.map(Bytes::from)),
        ))
    }

    #[tokio::test]
    async fn complete_streams_pass_through_unchanged() {
        let input = "data: {\"a\":1}\n\ndata: [DO";
        let s = relay_sse(
            body(vec![Ok(input), Ok("NE]\n\n")]),
            Duration::from_secs(5),
            "r".into(),
        );
        assert_eq!(collect(s).await, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    }

    /// Sets its flag when dropped.
    struct DropFlag(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_ceiling_drops_the_upstream_even_if_nobody_polls() {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        // An engine that never ends, and a relay nobody polls (a stalled client).
        let upstream: RawBody = Box::pin(futures::stream::pending::<()>().map(move |()| {
            let _keep = &flag;
            Ok::<_, EngineError>(Bytes::new())
        }));
        let relay = relay_sse(upstream, Duration::from_millis(100), "r".into());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            "upstream still alive after the ceiling"
        );
        // Polled afterwards, the relay ends the OpenAI way.
        let out = collect(relay).await;
        assert!(out.contains("streaming_timeout"), "{out}");
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
    }

    #[tokio::test]
    async fn an_engine_that_is_always_ready_still_meets_the_ceiling() {
        // Every chunk is ready at once, but producing it takes 2 ms of wall time.
        let upstream: RawBody = Box::pin(
            futures::stream::repeat_with(|| {
                std::thread::sleep(Duration::from_millis(2));
                Ok::<_, EngineError>(Bytes::from_static(b"data: {\"a\":1}\n\n"))
            })
            .take(500),
        );
        let out = collect(relay_sse(upstream, Duration::from_millis(50), "r".into())).await;
        assert!(out.contains("streaming_timeout"), "ceiling ignored");
        assert!(
            out.matches("{\"a\":1}").count() < 400,
            "ran far past the ceiling"
        );
    }

    #[tokio::test]
    async fn broken_streams_end_with_error_then_done() {
        let s = relay_sse(
            body(vec![
                Ok("data: {\"a\":1}\n\n"),
                Err(EngineError::Network("reset".into())),
            ]),
            Duration::from_secs(5),
            "r1".into(),
        );
        let out = collect(s).await;
        assert!(out.contains("\"code\":\"stream_error\""), "{out}");
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
        // An engine that sent its own error event and closed: only [DONE] is added.
        let s = relay_sse(
            body(vec![Ok("data: {\"error\":{\"message\":\"x\"}}\n\n")]),
            Duration::from_secs(5),
            "r".into(),
        );
        let out = collect(s).await;
        assert_eq!(out.matches("error").count(), 1, "{out}");
        assert!(out.ends_with("data: [DONE]\n\n"));
    }
}
