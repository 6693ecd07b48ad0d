//! Images and audio in chat: remote `image_url` parts fetched by the proxy (with the
//! SSRF guard and the `media_fetch` limits), `input_audio` parts, and the model
//! capability check — through a real proxy, a real image server on loopback, the
//! official `openai` Python SDK, the real llama-server and the engine emulators.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flm_core::EngineKind;
use flm_testkit::llama::TinyModel;
use flm_testkit::{EmulatedKind, EmulatedModel, Emulator, EmulatorOptions};
use serde_json::{json, Value};

/// A real 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];
const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAACklEQVR4nGMAAQAABQABDQottAAAAABJRU5ErkJggg==";

fn python() -> String {
    if let Ok(p) = std::env::var("FLM_PYTHON") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    format!("{home}/.cache/flm/pyenv/bin/python")
}

fn png_response(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "image/png")], body).into_response()
}

/// The image server: a real HTTP server on 127.0.0.1.
async fn image_server() -> SocketAddr {
    let big = vec![0u8; 2 * 1024 * 1024];
    let app = axum::Router::new()
        .route("/cat.png", get(|| async { png_response(Body::from(PNG)) }))
        .route(
            "/loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response() }),
        )
        .route(
            "/to",
            get(
                |axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| async move {
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, q.get("u").cloned().unwrap_or_default())],
                    )
                        .into_response()
                },
            ),
        )
        .route("/big.png", {
            let big = big.clone();
            get(move || {
                let mut b = PNG.to_vec();
                b.extend_from_slice(&big);
                async move { png_response(Body::from(b)) }
            })
        })
        .route("/big-stream.png", {
            get(move || {
                let chunks = (0..64).map(|i| {
                    Ok::<_, std::io::Error>(if i == 0 {
                        bytes::Bytes::from_static(PNG)
                    } else {
                        bytes::Bytes::from(vec![0u8; 64 * 1024])
                    })
                });
                async move { png_response(Body::from_stream(futures::stream::iter(chunks))) }
            })
        })
        .route(
            "/pad.png",
            get(|| async {
                let mut b = PNG.to_vec();
                b.resize(600, 0);
                png_response(Body::from(b))
            }),
        )
        .route(
            "/page.html",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/html")], "<html></html>").into_response()
            }),
        )
        .route(
            "/fake.png",
            get(|| async { png_response(Body::from("<html>not a png</html>")) }),
        )
        .route(
            "/slow.png",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(8)).await;
                png_response(Body::from(PNG))
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

/// A listener that must never see a connection.
struct Trap(std::net::TcpListener);

impl Trap {
    fn bind(addr: &str) -> Option<Self> {
        let l = std::net::TcpListener::bind(addr).ok()?;
        l.set_nonblocking(true).unwrap();
        Some(Trap(l))
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    fn assert_untouched(&self, what: &str) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => {
                panic!("{what}: the proxy connected to the forbidden address (from {peer})")
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn image_chat(model: &str, urls: &[String]) -> Value {
    let mut content = vec![json!({"type": "text", "text": "What is in this picture?"})];
    for u in urls {
        content.push(json!({"type": "image_url", "image_url": {"url": u}}));
    }
    json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": content}]})
}

fn audio_chat(model: &str, format: &str, data: &str) -> Value {
    json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Transcribe"},
        {"type": "input_audio", "input_audio": {"data": data, "format": format}}]}]})
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn lms_harness() -> (Emulator, Emulator, common::Harness) {
    let lms = Emulator::start(
        EmulatedKind::LmStudio,
        EmulatorOptions::with_models([
            EmulatedModel::chat("llava-tiny").with_vision(),
            EmulatedModel::chat("text-only"),
        ]),
    )
    .await
    .unwrap();
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let h = common::harness(&[
        (EngineKind::LmStudio, lms.base_url(), "lms"),
        (EngineKind::Vllm, vllm.base_url(), "vllm"),
    ])
    .await;
    (lms, vllm, h)
}

/// The official SDK sends a remote image through FLM; the vision engine gets the
/// image's bytes as a data: URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_remote_image_reaches_the_engine_as_a_data_url() {
    let img = image_server().await;
    let (lms, _vllm, h) = lms_harness().await;
    h.set_policy(&json!({"media_fetch": {"allowed_cidrs": [img.ip().to_string()]}}))
        .await;
    let url = format!("http://{img}/cat.png");
    let script = r#"
import json, os, sys
from openai import OpenAI, BadRequestError
c = OpenAI(base_url=os.environ["FLM_BASE_URL"], api_key=os.environ["FLM_API_KEY"], max_retries=0)
r = c.chat.completions.create(model="flm://lms/llava-tiny", max_tokens=8, messages=[{"role": "user", "content": [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": os.environ["IMG_URL"], "detail": "low"}}]}])
assert r.choices[0].message.content, r
try:
    c.chat.completions.create(model="flm://lms/llava-tiny", max_tokens=8, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": os.environ["FORBIDDEN_URL"]}}]}])
    sys.exit("a forbidden image URL was accepted")
except BadRequestError as e:
    assert e.body["code"] == "image_url_forbidden", e.body
print(json.dumps({"done": True}))
"#;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python())
            .arg("-c")
            .arg(script)
            .env("FLM_BASE_URL", format!("{}/v1", h.base))
            .env("FLM_API_KEY", &h.key)
            .env("IMG_URL", &url)
            .env("FORBIDDEN_URL", "http://169.254.169.254/latest/meta-data/")
            .env("NO_PROXY", "*")
            .output(),
    )
    .await
    .expect("the SDK script finished in time")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("\"done\": true"),
        "SDK checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The last successful chat is the one with the image (the refused one never left).
    let body = lms
        .control()
        .last_chat_body()
        .expect("the engine got the chat");
    let part = &body["messages"][0]["content"][1];
    assert_eq!(part["type"], "image_url");
    assert_eq!(
        part["image_url"]["url"].as_str().unwrap(),
        format!("data:image/png;base64,{PNG_B64}")
    );
    assert_eq!(part["image_url"]["detail"], "low", "detail is kept");
    h.stop().await;
}

/// Loopback, private, link-local, metadata: refused before any connection, in every
/// spelling; a redirect from an allowed address into a forbidden one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_guard_refuses_before_connecting() {
    let (lms, _vllm, h) = lms_harness().await;
    let model = "flm://lms/llava-tiny";
    let trap = Trap::bind("127.0.0.1:0").unwrap();
    let p = trap.port();
    let trap6 = Trap::bind(&format!("[::1]:{p}"));
    for url in [
        format!("http://127.0.0.1:{p}/x.png"),
        format!("http://localhost:{p}/x.png"),
        format!("http://LocalHost.:{p}/x.png"),
        format!("http://2130706433:{p}/x.png"),
        format!("http://0x7f.1:{p}/x.png"),
        format!("http://0177.0.0.1:{p}/x.png"),
        format!("http://127.1:{p}/x.png"),
        format!("http://[::ffff:127.0.0.1]:{p}/x.png"),
        format!("http://[::1]:{p}/x.png"),
        format!("https://127.0.0.1:{p}/x.png"),
    ] {
        let (status, v) = h.chat(image_chat(model, std::slice::from_ref(&url))).await;
        assert_eq!(
            (status, code(&v)),
            (400, "image_url_forbidden"),
            "{url}: {v}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            !msg.contains("127.0.0.1") && !msg.contains("::1"),
            "{url}: the message names an internal address: {msg}"
        );
        trap.assert_untouched(&url);
        if let Some(t) = &trap6 {
            t.assert_untouched(&url);
        }
    }
    // Refusals are audited with medium severity (probing the network behind the proxy).
    h.manager.guard().flush().await;
    let audit = h
        .store
        .audit()
        .list(&flm_core::security::AuditFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        audit.iter().any(|r| r.severity == "medium"
            && r.details
                .as_deref()
                .is_some_and(|d| d.contains("image_url_forbidden"))),
        "{audit:?}"
    );
    // Unroutable private ranges: a connection attempt would hang until the timeout,
    // so a prompt answer shows that none was made.
    for url in [
        "http://10.0.0.1/x.png",
        "http://172.16.0.1/x.png",
        "http://192.168.0.1/x.png",
        "http://100.64.0.1/x.png",
        "http://169.254.1.1/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[fe80::1]/x.png",
        "http://[fd12::1]/x.png",
        "http://0.0.0.0/x.png",
        "http://224.0.0.1/x.png",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let t = Instant::now();
        let (status, v) = h.chat(image_chat(model, &[url.to_owned()])).await;
        assert_eq!(
            (status, code(&v)),
            (400, "image_url_forbidden"),
            "{url}: {v}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{url} took {:?}",
            t.elapsed()
        );
    }
    // A name that does not resolve gets the same answer as a forbidden one (no oracle
    // for internal names).
    let (status, v) = h
        .chat(image_chat(
            model,
            &["http://no-such-host.invalid/x.png".into()],
        ))
        .await;
    assert_eq!((status, code(&v)), (400, "image_url_forbidden"), "{v}");
    // Other schemes and credentials.
    // (llama-server reads `file://` with --media-path: never relayed.)
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/x.png",
        "gopher://x/",
    ] {
        let (status, v) = h.chat(image_chat(model, &[url.to_owned()])).await;
        assert_eq!((status, code(&v)), (400, "invalid_media_url"), "{url}: {v}");
    }
    let (status, v) = h
        .chat(image_chat(
            model,
            &[format!("http://user:pw@127.0.0.1:{p}/x.png")],
        ))
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_media_url"), "{v}");
    trap.assert_untouched("credentials");

    // Allowed: exactly 127.0.0.1. A redirect from it into 127.0.0.2 is refused at the hop.
    let img = image_server().await;
    h.set_policy(&json!({"media_fetch": {"allowed_cidrs": ["127.0.0.1"]}}))
        .await;
    let trap2 = Trap::bind("127.0.0.2:0").unwrap();
    let inner = format!("http://127.0.0.2:{}/secret.png", trap2.port());
    let via = format!(
        "http://{img}/to?u={}",
        inner.replace(':', "%3A").replace('/', "%2F")
    );
    let (status, v) = h.chat(image_chat(model, &[via])).await;
    assert_eq!((status, code(&v)), (400, "image_url_forbidden"), "{v}");
    trap2.assert_untouched("redirect into 127.0.0.2");
    // Redirect into a metadata address and into another scheme.
    for target in ["http://169.254.169.254/latest/", "file:///etc/passwd"] {
        let via = format!(
            "http://{img}/to?u={}",
            target.replace(':', "%3A").replace('/', "%2F")
        );
        let (status, v) = h.chat(image_chat(model, &[via])).await;
        assert_eq!(
            (status, code(&v)),
            (400, "image_url_forbidden"),
            "{target}: {v}"
        );
    }
    // The allowance is exact: the trap on 127.0.0.1 (another port, same address) would
    // be reachable, a neighbour is not.
    let (status, v) = h
        .chat(image_chat(model, &[format!("http://127.0.0.3:{p}/x.png")]))
        .await;
    assert_eq!((status, code(&v)), (400, "image_url_forbidden"), "{v}");
    // And the allowed address works.
    let (status, v) = h
        .chat(image_chat(model, &[format!("http://{img}/cat.png")]))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(lms
        .control()
        .last_chat_body()
        .unwrap()
        .to_string()
        .contains(PNG_B64));
    h.stop().await;
}

/// Redirect count, sizes, types, time, image count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_fetch_limits() {
    let img = image_server().await;
    let (_lms, _vllm, h) = lms_harness().await;
    let model = "flm://lms/llava-tiny";
    h.set_policy(&json!({"media_fetch": {
        "allowed_cidrs": ["127.0.0.1"],
        "max_redirects": 2,
        "max_image_bytes": 1048576,
        "max_total_bytes": 1024,
        "max_images": 2,
        "timeout_secs": 1
    }}))
    .await;
    let u = |p: &str| format!("http://{img}{p}");
    for (path, want) in [
        ("/loop", "image_fetch_failed"),
        ("/big.png", "image_too_large"),
        ("/big-stream.png", "image_too_large"),
        ("/page.html", "unsupported_image_type"),
        ("/fake.png", "unsupported_image_type"),
        ("/missing.png", "image_fetch_failed"),
    ] {
        let (status, v) = h.chat(image_chat(model, &[u(path)])).await;
        assert_eq!((status, code(&v)), (400, want), "{path}: {v}");
    }
    let t = Instant::now();
    let (status, v) = h.chat(image_chat(model, &[u("/slow.png")])).await;
    assert_eq!((status, code(&v)), (400, "image_fetch_timeout"), "{v}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // 600 + 600 bytes > max_total_bytes 1024.
    let (status, v) = h
        .chat(image_chat(model, &[u("/pad.png"), u("/pad.png")]))
        .await;
    assert_eq!((status, code(&v)), (400, "image_too_large"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_total_bytes"),
        "{v}"
    );
    // Inline images count too: 1,500 bytes inline > max_total_bytes 1024, and an
    // inline image leaves less room for a fetched one.
    let inline = format!("data:image/png;base64,{}", "A".repeat(2000));
    let (status, v) = h.chat(image_chat(model, &[inline])).await;
    assert_eq!((status, code(&v)), (400, "image_too_large"), "{v}");
    let small = format!("data:image/png;base64,{}", "A".repeat(800));
    let (status, v) = h.chat(image_chat(model, &[small, u("/pad.png")])).await;
    assert_eq!((status, code(&v)), (400, "image_too_large"), "{v}");
    let (status, v) = h
        .chat(image_chat(
            model,
            &[u("/cat.png"), u("/cat.png"), u("/cat.png")],
        ))
        .await;
    assert_eq!((status, code(&v)), (400, "too_many_images"), "{v}");
    let (status, v) = h.chat(image_chat(model, &[u("/cat.png")])).await;
    assert_eq!(status, 200, "{v}");
    h.stop().await;
}

/// A model whose engine reports no vision / no audio gets a clear 400 before the
/// engine sees the request; an engine that does not report capabilities (vLLM)
/// receives the parts unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_checked_before_the_engine() {
    let llama = common::llama(TinyModel::Chat);
    let ollama = Emulator::start(
        EmulatedKind::Ollama,
        EmulatorOptions::with_models([
            EmulatedModel::chat("gemma-audio").with_audio(),
            EmulatedModel::chat("llama3.2"),
        ]),
    )
    .await
    .unwrap();
    let (lms, vllm, h) = {
        let (lms, vllm, _) = (
            Emulator::start(
                EmulatedKind::LmStudio,
                EmulatorOptions::with_models([
                    EmulatedModel::chat("llava-tiny").with_vision(),
                    EmulatedModel::chat("text-only"),
                ]),
            )
            .await
            .unwrap(),
            Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
                .await
                .unwrap(),
            (),
        );
        let h = common::harness(&[
            (EngineKind::Ollama, ollama.base_url(), "ollama"),
            (EngineKind::LlamaCpp, llama.base_url(), "llama"),
            (EngineKind::LmStudio, lms.base_url(), "lms"),
            (EngineKind::Vllm, vllm.base_url(), "vllm"),
        ])
        .await;
        (lms, vllm, h)
    };
    let inline = format!("data:image/png;base64,{PNG_B64}");
    // The real llama-server's tiny model reports `modalities.vision: false`.
    for model in ["flm://llama/tiny-llama", "flm://lms/text-only"] {
        let before = lms.control().chat_requests();
        let (status, v) = h
            .chat(image_chat(model, std::slice::from_ref(&inline)))
            .await;
        assert_eq!(
            (status, code(&v)),
            (400, "model_not_multimodal"),
            "{model}: {v}"
        );
        assert_eq!(lms.control().chat_requests(), before);
    }
    let wav = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=";
    for model in ["flm://llama/tiny-llama", "flm://lms/llava-tiny"] {
        let (status, v) = h.chat(audio_chat(model, "wav", wav)).await;
        assert_eq!(
            (status, code(&v)),
            (400, "model_no_audio_input"),
            "{model}: {v}"
        );
    }
    // Ollama reports `audio` in /api/show: its native API gets the audio as media.
    let (status, v) = h
        .chat(audio_chat("flm://ollama/gemma-audio:latest", "wav", wav))
        .await;
    assert_eq!(status, 200, "{v}");
    let got = ollama.control().last_chat_body().unwrap();
    assert_eq!(got["messages"][0]["images"][0], wav, "{got}");
    let (status, v) = h
        .chat(audio_chat("flm://ollama/llama3.2:latest", "wav", wav))
        .await;
    assert_eq!((status, code(&v)), (400, "model_no_audio_input"), "{v}");
    // vLLM does not report modalities: the parts go through and the engine decides.
    let (status, v) = h
        .chat(audio_chat("flm://vllm/test-model", "wav", wav))
        .await;
    assert_eq!(status, 200, "{v}");
    let got = vllm.control().last_chat_body().unwrap();
    assert_eq!(got["messages"][0]["content"][1]["input_audio"]["data"], wav);
    // Malformed audio parts.
    let (status, v) = h
        .chat(audio_chat("flm://vllm/test-model", "aiff", wav))
        .await;
    assert_eq!((status, code(&v)), (400, "unsupported_audio_format"), "{v}");
    let (status, v) = h
        .chat(audio_chat("flm://vllm/test-model", "wav", "not base64!"))
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_input_audio"), "{v}");
    h.set_policy(&json!({"media_fetch": {"max_audio_bytes": 1024}}))
        .await;
    let big = "A".repeat(4096);
    let (status, v) = h
        .chat(audio_chat("flm://vllm/test-model", "wav", &big))
        .await;
    assert_eq!((status, code(&v)), (400, "audio_too_large"), "{v}");
    // A vision model with an inline image still works.
    let (status, v) = h.chat(image_chat("flm://lms/llava-tiny", &[inline])).await;
    assert_eq!(status, 200, "{v}");
    h.stop().await;
}

/// With a SOCKS5 egress (Debian's real `microsocks`), remote images are fetched
/// through it — the SOCKS server resolves names — and the guard still refuses
/// forbidden literals and local-looking names before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_images_follow_the_socks5_egress() {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncBufReadExt;

    let img = image_server().await;
    let (_lms, _vllm, h) = lms_harness().await;
    let socks_port = common::free_port();
    let mut child = tokio::process::Command::new("microsocks")
        .args(["-i", "127.0.0.1", "-p", &socks_port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("microsocks is installed (Debian package microsocks)");
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.lock().unwrap().push(l);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", socks_port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "microsocks did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let port = common::free_port();
    h.manager
        .start(flm_core::proxy::ProxyConfig {
            port,
            egress: flm_core::proxy::EgressConfig {
                mode: flm_core::proxy::EgressMode::Socks5,
                socks5_endpoint: Some(format!("127.0.0.1:{socks_port}")),
                fail_open: false,
            },
            ..flm_core::proxy::ProxyConfig::default()
        })
        .await
        .unwrap();
    h.set_policy(&json!({"media_fetch": {"allowed_cidrs": ["127.0.0.1"]}}))
        .await;
    let chat = |body: Value| {
        let http = h.http.clone();
        let key = h.key.clone();
        async move {
            let r = http
                .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let model = "flm://lms/llava-tiny";
    let saw = |what: &str| {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!("connected to {what}")))
    };
    // The allowed address is fetched through the SOCKS server.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, v) = chat(image_chat(model, &[format!("http://{img}/cat.png")])).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(saw(&img.to_string()), "{:?}", log.lock().unwrap());
    // A local name is refused by its spelling; a private literal by its address;
    // neither reaches the SOCKS server.
    for url in [
        format!("http://localhost:{}/cat.png", img.port()),
        format!("http://printer.local:{}/cat.png", img.port()),
        "http://10.0.0.1/cat.png".to_owned(),
        "http://[::ffff:169.254.169.254]/".to_owned(),
    ] {
        let (status, v) = chat(image_chat(model, std::slice::from_ref(&url))).await;
        assert_eq!(
            (status, code(&v)),
            (400, "image_url_forbidden"),
            "{url}: {v}"
        );
    }
    assert!(!saw("localhost") && !saw("printer.local") && !saw("10.0.0.1"));
    h.stop().await;
    child.kill().await.unwrap();
}
