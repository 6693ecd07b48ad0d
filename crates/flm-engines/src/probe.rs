//! Detection probes: confirm *which* engine answers at an address before trusting it.
//!
//! Ports are shared by many servers (8000 and 8080 above all), so a port that answers
//! proves nothing. Each kind has an identity check taken from the engines' own APIs
//! (reference §5.1): Ollama's `GET /` text, llama.cpp's `Server: llama.cpp` header,
//! vLLM's `GET /version`, LM Studio's `/api/v0/models` and `X-Powered-By: Express`,
//! whisper.cpp's `Server: whisper.cpp` header on `GET /health`.
//! Any response carrying [`flm_core::FLM_SERVER_HEADER`] is FLM's own proxy and is
//! never accepted as an engine.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use flm_core::ports::{EngineProber, ProbeOutcome};
use flm_core::{EngineCapabilities, EngineKind, EngineTarget, FLM_SERVER_HEADER};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::discovery::BinaryFinder;
use crate::http::{embedded_error, is_connect_error, one_line, root_cause, HttpClient};

/// The production [`EngineProber`]: HTTP identity probes plus binary discovery.
pub struct HttpProber {
    client: HttpClient,
    finder: BinaryFinder,
}

impl HttpProber {
    /// A prober using `client` for HTTP and `finder` for installed binaries.
    pub fn new(client: HttpClient, finder: BinaryFinder) -> Self {
        Self { client, finder }
    }
}

/// A fetched response.
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: bytes::Bytes,
    latency_ms: u64,
}

impl Resp {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_llamacpp(&self) -> bool {
        self.header("server")
            .is_some_and(|s| s.contains("llama.cpp"))
    }

    fn is_whispercpp(&self) -> bool {
        self.header("server")
            .is_some_and(|s| s.contains("whisper.cpp"))
    }

    fn is_express(&self) -> bool {
        self.header("x-powered-by")
            .is_some_and(|s| s.contains("Express"))
    }

    /// vLLM's HTTP server (FastAPI on uvicorn) names itself in `Server`.
    fn is_uvicorn(&self) -> bool {
        self.header("server")
            .is_some_and(|s| s.starts_with("uvicorn"))
    }

    /// vLLM's error shape: `{"error":{"type":"NotFoundError","code":404,…}}`, a Python
    /// exception name and the HTTP status as an integer (llama.cpp, the other engine
    /// with an integer `code`, uses snake_case types such as `unavailable_error`).
    fn is_vllm_error(&self) -> bool {
        self.json().is_some_and(|v| {
            let code = v.pointer("/error/code").and_then(Value::as_u64);
            let ty = v.pointer("/error/type").and_then(Value::as_str);
            code == Some(u64::from(self.status)) && ty.is_some_and(|t| t.ends_with("Error"))
        })
    }

    /// `{"version":"…"}`, as vLLM's `/version` and Ollama's `/api/version` answer.
    fn version(&self) -> Option<String> {
        self.json()
            .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned))
    }

    fn is_flm(&self) -> bool {
        self.headers.contains_key(FLM_SERVER_HEADER)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

/// Why a probe stopped early.
enum Stop {
    Outcome(ProbeOutcome),
}

impl From<ProbeOutcome> for Stop {
    fn from(o: ProbeOutcome) -> Self {
        Stop::Outcome(o)
    }
}

struct Ctx<'a> {
    client: &'a HttpClient,
    base: &'a str,
    deadline: Instant,
}

impl Ctx<'_> {
    async fn get(&self, path: &str) -> Result<Resp, Stop> {
        let url = format!("{}{path}", self.base);
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ProbeOutcome::TimedOut {
                reason: format!("{url} did not answer in time"),
            }
            .into());
        }
        let started = Instant::now();
        let result = async {
            let r = self
                .client
                .raw()
                .get(&url)
                .timeout(remaining)
                .send()
                .await?;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        }
        .await;
        match result {
            Ok((status, headers, body)) => {
                let resp = Resp {
                    status,
                    headers,
                    body,
                    latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                };
                if resp.is_flm() {
                    return Err(ProbeOutcome::WrongIdentity {
                        found: "an FLM proxy (FLM never proxies itself)".into(),
                    }
                    .into());
                }
                Ok(resp)
            }
            Err(e) if e.is_timeout() => Err(ProbeOutcome::TimedOut {
                reason: format!(
                    "{url} accepted the connection but did not answer within {} ms",
                    remaining.as_millis()
                ),
            }
            .into()),
            Err(e) if is_connect_error(&e) => Err(ProbeOutcome::Unreachable {
                reason: format!("cannot connect to {url}: {}", root_cause(&e)),
            }
            .into()),
            Err(e) => Err(ProbeOutcome::Unreachable {
                reason: format!("{url}: {}", root_cause(&e)),
            }
            .into()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Names what answered, for "wrong engine on this port" messages.
fn describe(r: &Resp) -> String {
    if r.is_llamacpp() {
        "llama.cpp".into()
    } else if r.is_whispercpp() {
        "whisper.cpp".into()
    } else if r.is_express() {
        "LM Studio".into()
    } else if r.text() == "Ollama is running" {
        "Ollama".into()
    } else if r.json().is_some_and(|v| v.get("detail").is_some()) {
        "a FastAPI server (possibly vLLM)".into()
    } else if r.is_uvicorn() {
        "a uvicorn server (possibly vLLM)".into()
    } else {
        format!("an unknown HTTP server (HTTP {})", r.status)
    }
}

/// Parses a JSON body, or says why it is not JSON.
fn parse_json(r: &Resp, url: &str) -> Result<Value, ProbeOutcome> {
    serde_json::from_slice(&r.body).map_err(|e| ProbeOutcome::BadResponse {
        reason: format!(
            "`GET {url}` returned invalid JSON ({e}): {}",
            one_line(&String::from_utf8_lossy(&r.body), 80)
        ),
    })
}

/// Parses a model-listing body; `key` is the array (`data` or `models`).
fn listing(r: &Resp, key: &str, url: &str) -> Result<Vec<Value>, ProbeOutcome> {
    let v = parse_json(r, url)?;
    if let Some(err) = embedded_error(&v) {
        return Err(ProbeOutcome::BadResponse {
            reason: format!(
                "`GET {url}` answered with an error: {}",
                one_line(&err, 200)
            ),
        });
    }
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| ProbeOutcome::BadResponse {
            reason: format!("`GET {url}` returned JSON without a `{key}` array"),
        })
}

/// Warning for 429/503-type answers.
fn warning_status(r: &Resp, url: &str) -> Option<String> {
    matches!(r.status, 429 | 503).then(|| {
        let detail = crate::http::upstream_message(&r.body).unwrap_or_else(|| "busy".into());
        format!("`GET {url}` answered HTTP {}: {detail}", r.status)
    })
}

fn answered(
    r: &Resp,
    version: Option<String>,
    count: usize,
    warning: Option<String>,
    caps: EngineCapabilities,
) -> ProbeOutcome {
    ProbeOutcome::Answered {
        latency_ms: r.latency_ms,
        version,
        model_count: count,
        warning,
        capabilities: caps,
    }
}

fn non_ok(r: &Resp, url: &str) -> ProbeOutcome {
    ProbeOutcome::BadResponse {
        reason: format!(
            "`GET {url}` answered HTTP {}: {}",
            r.status,
            crate::http::upstream_message(&r.body).unwrap_or_else(|| "empty body".into())
        ),
    }
}

async fn probe_ollama(cx: &Ctx<'_>) -> Result<ProbeOutcome, Stop> {
    let root = cx.get("/").await?;
    let foreign = root.is_llamacpp() || root.is_express();
    if !foreign && root.status == 403 && root.body.is_empty() {
        // Ollama's Host guard: listening on loopback, it refuses with an empty 403 any
        // request whose Host is not a local name. No other engine answers `/` so.
        return Ok(ProbeOutcome::BadResponse {
            reason: format!(
                "`GET {}` answered an empty HTTP 403, which is how Ollama refuses a Host \
                 header that is not a local name; address it by IP or localhost",
                cx.url("/")
            ),
        });
    }
    if foreign || root.text() != "Ollama is running" {
        return Ok(ProbeOutcome::WrongIdentity {
            found: identify(cx, &root).await,
        });
    }
    let (version, tags) = futures::join!(cx.get("/api/version"), cx.get("/api/tags"));
    let version = version.ok().and_then(|r| r.version());
    let tags = tags?;
    let url = cx.url("/api/tags");
    if let Some(w) = warning_status(&tags, &url) {
        return Ok(answered(
            &tags,
            version,
            0,
            Some(w),
            EngineKind::Ollama.default_capabilities(),
        ));
    }
    if tags.status != 200 {
        return Ok(non_ok(&tags, &url));
    }
    let models = match listing(&tags, "models", &url) {
        Ok(m) => m,
        Err(o) => return Ok(o),
    };
    Ok(answered(
        &tags,
        version,
        models.len(),
        None,
        EngineKind::Ollama.default_capabilities(),
    ))
}

async fn probe_llamacpp(cx: &Ctx<'_>) -> Result<ProbeOutcome, Stop> {
    let health = cx.get("/health").await?;
    if !health.is_llamacpp() {
        return Ok(ProbeOutcome::WrongIdentity {
            found: identify(cx, &health).await,
        });
    }
    let caps = EngineKind::LlamaCpp.default_capabilities();
    if health.status == 503 {
        let detail =
            crate::http::upstream_message(&health.body).unwrap_or_else(|| "Loading model".into());
        return Ok(answered(&health, None, 0, Some(detail), caps));
    }
    let (models, props) = futures::join!(cx.get("/v1/models"), cx.get("/props"));
    let models = models?;
    let url = cx.url("/v1/models");
    if let Some(w) = warning_status(&models, &url) {
        return Ok(answered(&models, None, 0, Some(w), caps));
    }
    if models.status != 200 {
        return Ok(non_ok(&models, &url));
    }
    let data = match listing(&models, "data", &url) {
        Ok(d) => d,
        Err(o) => return Ok(o),
    };
    let props = props.ok().and_then(|p| p.json());
    let version = props.as_ref().and_then(|p| {
        p.get("build_info")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let mut caps = caps;
    if let Some(p) = &props {
        caps.vision_inputs = p
            .pointer("/modalities/vision")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        caps.audio_inputs = p
            .pointer("/modalities/audio")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    let sleeping = props
        .as_ref()
        .and_then(|p| p.get("is_sleeping"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let warning = sleeping.then(|| "the model is unloaded while idle (is_sleeping)".to_owned());
    Ok(answered(&models, version, data.len(), warning, caps))
}

async fn probe_vllm(cx: &Ctx<'_>) -> Result<ProbeOutcome, Stop> {
    let ver = cx.get("/version").await?;
    let caps = EngineKind::Vllm.default_capabilities();
    let version = ver.version();
    if ver.is_llamacpp() || ver.is_express() {
        return Ok(ProbeOutcome::WrongIdentity {
            found: describe(&ver),
        });
    }
    if ver.status != 200 || version.is_none() {
        let url = cx.url("/version");
        // Without a version, only vLLM's own server or error shape vouches for it.
        let vllm_like = ver.is_uvicorn() || ver.is_vllm_error();
        if vllm_like {
            // Newer builds and forks answer 503 on every route, `/version` included,
            // until the engine is ready: running, but not serving yet.
            if let Some(w) = warning_status(&ver, &url) {
                let health = cx.get("/health").await.ok();
                let warning = match health {
                    Some(h) if h.status == 503 => {
                        format!("{w} (`/health` answers 503 too: the engine is not ready)")
                    }
                    _ => w,
                };
                return Ok(answered(&ver, None, 0, Some(warning), caps));
            }
            if ver.status == 200 {
                return Ok(match parse_json(&ver, &url) {
                    Err(bad) => bad,
                    Ok(_) => ProbeOutcome::BadResponse {
                        reason: format!("`GET {url}` returned JSON without a `version` string"),
                    },
                });
            }
        }
        return Ok(ProbeOutcome::WrongIdentity {
            found: identify(cx, &ver).await,
        });
    }
    let (models, health) = futures::join!(cx.get("/v1/models"), cx.get("/health"));
    let models = models?;
    let url = cx.url("/v1/models");
    let health_warning = health.ok().and_then(|h| {
        (h.status == 503)
            .then(|| "`/health` answered 503: the engine is not ready or has died".to_owned())
    });
    if models.status == 401 {
        return Ok(answered(
            &models,
            version,
            0,
            Some("the engine requires an API key (HTTP 401 on /v1/models)".into()),
            caps,
        ));
    }
    if let Some(w) = warning_status(&models, &url) {
        return Ok(answered(&models, version, 0, Some(w), caps));
    }
    if models.status != 200 {
        return Ok(non_ok(&models, &url));
    }
    let data = match listing(&models, "data", &url) {
        Ok(d) => d,
        Err(o) => return Ok(o),
    };
    let foreign = data
        .iter()
        .filter_map(|m| m.get("owned_by").and_then(Value::as_str))
        .find(|o| *o != "vllm");
    if let Some(owner) = foreign {
        return Ok(ProbeOutcome::WrongIdentity {
            found: format!("a server whose models are owned by `{owner}`, not vLLM"),
        });
    }
    Ok(answered(&models, version, data.len(), health_warning, caps))
}

async fn probe_lmstudio(cx: &Ctx<'_>) -> Result<ProbeOutcome, Stop> {
    let (v0, models) = futures::join!(cx.get("/api/v0/models"), cx.get("/v1/models"));
    let v0 = v0?;
    let v0_is_lmstudio = v0.status == 200
        && v0.json().is_some_and(|v| {
            v.get("data").and_then(Value::as_array).is_some_and(|d| {
                d.iter()
                    .all(|m| m.get("state").is_some() || m.get("type").is_some())
            })
        });
    if v0.is_llamacpp() || !(v0.is_express() || v0_is_lmstudio) {
        return Ok(ProbeOutcome::WrongIdentity {
            found: identify(cx, &v0).await,
        });
    }
    let models = models?;
    let url = cx.url("/v1/models");
    let caps = EngineKind::LmStudio.default_capabilities();
    if let Some(w) = warning_status(&models, &url) {
        return Ok(answered(&models, None, 0, Some(w), caps));
    }
    if models.status != 200 {
        return Ok(non_ok(&models, &url));
    }
    let data = match listing(&models, "data", &url) {
        Ok(d) => d,
        Err(o) => return Ok(o),
    };
    Ok(answered(&models, None, data.len(), None, caps))
}

/// whisper.cpp's `whisper-server`: `GET /health` (a read-only route that loads
/// nothing) must carry `Server: whisper.cpp`; 503 means its model is still loading.
/// It serves exactly one model.
async fn probe_whispercpp(cx: &Ctx<'_>) -> Result<ProbeOutcome, Stop> {
    let health = cx.get("/health").await?;
    if !health.is_whispercpp() {
        return Ok(ProbeOutcome::WrongIdentity {
            found: identify(cx, &health).await,
        });
    }
    let caps = EngineKind::WhisperCpp.default_capabilities();
    let url = cx.url("/health");
    if health.status == 503 {
        let detail =
            crate::http::upstream_message(&health.body).unwrap_or_else(|| "loading model".into());
        return Ok(answered(&health, None, 0, Some(detail), caps));
    }
    if health.status != 200 {
        return Ok(non_ok(&health, &url));
    }
    if let Err(bad) = parse_json(&health, &url) {
        return Ok(bad);
    }
    Ok(answered(&health, None, 1, None, caps))
}

async fn probe_openai(cx: &Ctx<'_>) -> Result<ProbeOutcome, Stop> {
    let models = cx.get("/v1/models").await?;
    let url = cx.url("/v1/models");
    let caps = EngineKind::OpenAi.default_capabilities();
    if models.status == 401 {
        return Ok(answered(
            &models,
            None,
            0,
            Some("the server requires an API key (HTTP 401 on /v1/models)".into()),
            caps,
        ));
    }
    if let Some(w) = warning_status(&models, &url) {
        return Ok(answered(&models, None, 0, Some(w), caps));
    }
    if models.status != 200 {
        return Ok(non_ok(&models, &url));
    }
    let data = match listing(&models, "data", &url) {
        Ok(d) => d,
        Err(o) => return Ok(o),
    };
    Ok(answered(&models, None, data.len(), None, caps))
}

/// After an identity check failed, names what answers instead: from `first`, else
/// from `GET /`; a FastAPI/uvicorn server is confirmed as vLLM by its `/version`.
/// Extra requests that fail only leave the name less precise, except FLM's own
/// header, which always wins.
async fn identify(cx: &Ctx<'_>, first: &Resp) -> String {
    let mut named = describe(first);
    if named.starts_with("an unknown") {
        match cx.get("/").await {
            Ok(root) => named = describe(&root),
            Err(Stop::Outcome(ProbeOutcome::WrongIdentity { found })) => return found,
            Err(_) => {}
        }
    }
    if named.contains("possibly vLLM") {
        match cx.get("/version").await {
            Ok(v) if v.status == 200 && v.version().is_some() => return "vLLM".into(),
            Err(Stop::Outcome(ProbeOutcome::WrongIdentity { found })) => return found,
            _ => {}
        }
    }
    named
}

#[async_trait]
impl EngineProber for HttpProber {
    async fn probe(&self, target: &EngineTarget, timeout: Duration) -> ProbeOutcome {
        let cx = Ctx {
            client: &self.client,
            base: target.base_url.trim_end_matches('/'),
            deadline: Instant::now() + timeout,
        };
        let run = async {
            match target.kind {
                EngineKind::Ollama => probe_ollama(&cx).await,
                EngineKind::LlamaCpp => probe_llamacpp(&cx).await,
                EngineKind::Vllm => probe_vllm(&cx).await,
                EngineKind::LmStudio => probe_lmstudio(&cx).await,
                EngineKind::OpenAi => probe_openai(&cx).await,
                EngineKind::WhisperCpp => probe_whispercpp(&cx).await,
            }
        };
        // The per-request timeouts already use the remaining budget; this outer bound
        // also covers DNS and anything else that could stall.
        match tokio::time::timeout(timeout + Duration::from_millis(50), run).await {
            Ok(Ok(outcome)) | Ok(Err(Stop::Outcome(outcome))) => outcome,
            Err(_) => ProbeOutcome::TimedOut {
                reason: format!(
                    "{} did not answer within {} ms",
                    target.base_url,
                    timeout.as_millis()
                ),
            },
        }
    }

    fn find_binary(&self, kind: EngineKind) -> Option<String> {
        self.finder.find(kind)
    }
}
