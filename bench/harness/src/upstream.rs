//! The fake OpenAI-compatible engine.
//!
//! Every answer is prebuilt at start-up; a request costs one HTTP parse, one small
//! JSON parse (to read `"stream"`) and reference-counted copies of static bytes.
//! Streams send 20 `chat.completion.chunk` events, a finish chunk and
//! `data: [DONE]`, each as its own write (see [`SseBody`]), like an engine emitting
//! tokens, but with no delay between them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Model id the fake engine serves.
pub const MODEL_ID: &str = "fake-model";

/// Content chunks per stream (the finish chunk and `[DONE]` come on top).
pub const STREAM_CHUNKS: usize = 20;

/// Largest request body read, far above any benchmark request.
const MAX_BODY: usize = 1 << 20;

const MODELS_JSON: &str =
    r#"{"object":"list","data":[{"id":"fake-model","object":"model","owned_by":"fake"}]}"#;
const HEALTH_JSON: &str = r#"{"status":"ok"}"#;
const NOT_FOUND_JSON: &str =
    r#"{"error":{"message":"not found","type":"invalid_request_error","code":"not_found"}}"#;
const BAD_REQUEST_JSON: &str = r#"{"error":{"message":"bad request body","type":"invalid_request_error","code":"bad_request"}}"#;
/// About 330 bytes, the size of a short real answer.
const COMPLETION_JSON: &str = concat!(
    r#"{"id":"chatcmpl-fake","object":"chat.completion","created":1700000000,"model":"fake-model","#,
    r#""choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a canned answer "#,
    r#"from the fake engine of the FLM benchmark."},"finish_reason":"stop"}],"#,
    r#""usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32}}"#
);

type RespBody = Either<Full<Bytes>, SseBody>;

/// Prebuilt answers, shared by every connection.
struct Canned {
    /// The SSE events of one stream, in order, each a complete `data: …\n\n`.
    stream: Arc<[Bytes]>,
}

impl Canned {
    fn new() -> Self {
        let mut events = Vec::with_capacity(STREAM_CHUNKS + 2);
        for i in 0..STREAM_CHUNKS {
            let delta = if i == 0 {
                r#"{"role":"assistant","content":"tok0 "}"#.to_owned()
            } else {
                format!(r#"{{"content":"tok{i} "}}"#)
            };
            events.push(Bytes::from(format!(
                "data: {{\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"fake-model\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":null}}]}}\n\n"
            )));
        }
        events.push(Bytes::from_static(
            b"data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"fake-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":20,\"total_tokens\":32}}\n\n",
        ));
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Self {
            stream: events.into(),
        }
    }
}

/// Serves the fake engine on `listener` until `shutdown` completes.
///
/// Connections already open keep being served by their own tasks after that; the
/// benchmark process exits anyway, and tests drop the runtime.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let canned = Arc::new(Canned::new());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Usually EMFILE under a connection storm: back off instead of spinning.
                eprintln!("fake-upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small responses must leave at once, not wait for Nagle's delayed ACK.
        let _ = stream.set_nodelay(true);
        let canned = Arc::clone(&canned);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, Arc::clone(&canned)));
            // A client closing its connection mid-request is normal here.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    canned: Arc<Canned>,
) -> Result<Response<RespBody>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/models") => json(StatusCode::OK, MODELS_JSON),
        (&Method::GET, "/health") => json(StatusCode::OK, HEALTH_JSON),
        (&Method::POST, "/v1/chat/completions") => chat(req, &canned).await,
        _ => json(StatusCode::NOT_FOUND, NOT_FOUND_JSON),
    };
    Ok(resp)
}

/// Only the field that changes the answer; serde skips the rest.
#[derive(serde::Deserialize)]
struct ChatRequest {
    #[serde(default)]
    stream: bool,
}

async fn chat(req: Request<Incoming>, canned: &Canned) -> Response<RespBody> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return json(StatusCode::BAD_REQUEST, BAD_REQUEST_JSON),
    };
    let Ok(parsed) = serde_json::from_slice::<ChatRequest>(&body) else {
        return json(StatusCode::BAD_REQUEST, BAD_REQUEST_JSON);
    };
    if !parsed.stream {
        return json(StatusCode::OK, COMPLETION_JSON);
    }
    let mut resp = Response::new(Either::Right(SseBody {
        events: Arc::clone(&canned.stream),
        next: 0,
        yielded: false,
    }));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

fn json(status: StatusCode, body: &'static str) -> Response<RespBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

// === impl SseBody ===

/// A chunked body that hands hyper one SSE event per poll and returns `Pending`
/// (after waking itself) between events.
///
/// hyper buffers every frame a body has ready before it writes; returning `Pending`
/// makes it flush, so each event goes out in its own write, as with a real engine.
/// The first event is sent with the response head.
pub struct SseBody {
    events: Arc<[Bytes]>,
    next: usize,
    yielded: bool,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let Some(event) = this.events.get(this.next) else {
            return Poll::Ready(None);
        };
        if this.next > 0 && !this.yielded {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.yielded = false;
        this.next += 1;
        Poll::Ready(Some(Ok(Frame::data(event.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_valid_json_of_about_300_bytes() {
        let v: serde_json::Value = serde_json::from_str(COMPLETION_JSON).expect("valid JSON");
        assert_eq!(v["object"], "chat.completion");
        assert!(
            (250..400).contains(&COMPLETION_JSON.len()),
            "{}",
            COMPLETION_JSON.len()
        );
    }

    #[test]
    fn stream_events_are_valid_sse_and_end_with_done() {
        let canned = Canned::new();
        assert_eq!(canned.stream.len(), STREAM_CHUNKS + 2);
        for event in &canned.stream[..STREAM_CHUNKS + 1] {
            let text = std::str::from_utf8(event).expect("utf-8");
            let payload = text
                .strip_prefix("data: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .expect("data: …\\n\\n");
            let v: serde_json::Value = serde_json::from_str(payload).expect("valid JSON");
            assert_eq!(v["object"], "chat.completion.chunk");
        }
        assert_eq!(&canned.stream[STREAM_CHUNKS + 1][..], b"data: [DONE]\n\n");
    }
}
