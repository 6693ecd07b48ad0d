//! Image and audio parts of a chat request, before it goes to an engine:
//!
//! 1. the model must take them: a model whose engine *reports* no vision (or no
//!    audio input) is refused with `400 model_not_multimodal` / `model_no_audio_input`
//!    instead of the engine's own error; when the engine does not report it (vLLM,
//!    name guesses) the request passes and the engine decides;
//! 2. limits of the policy's `media_fetch` section: image count, audio size, per-image
//!    and per-request bytes, time;
//! 3. remote `image_url` parts (`http(s)`) are fetched here ([`crate::media_fetch`],
//!    with the SSRF guard) and replaced by `data:` URLs, which every engine takes
//!    (Ollama and LM Studio refuse remote URLs; Ollama's native API then gets the bare
//!    Base64 from the translator).
//!
//! A request without array content is left untouched at the cost of one scan.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::app::SharedState;
use crate::error::ApiError;
use crate::media_fetch::{self, FetchError};
use crate::routing::Resolved;

/// Audio formats accepted in `input_audio.format`.
const AUDIO_FORMATS: &[&str] = &["wav", "mp3", "flac", "ogg", "m4a", "webm", "pcm16"];

/// Requests fetching remote images at the same time, process-wide: each may hold up
/// to `media_fetch.max_total_bytes` (and its Base64 copy) in memory. Waiting for a
/// slot counts towards `media_fetch.timeout_secs`.
static FETCH_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(16);

/// Where a remote image sits: message index, part index.
type PartAt = (usize, usize);

/// Checks and prepares the image and audio parts of `body`, narrowing `resolved` to
/// the engines whose model can take them.
pub(crate) async fn prepare(
    st: &SharedState,
    body: &mut Map<String, Value>,
    resolved: &mut Resolved,
) -> Result<(), ApiError> {
    // The common case (text only) costs one scan and no policy read.
    let has_media = messages(body).iter().any(|m| {
        m.get("content")
            .and_then(Value::as_array)
            .is_some_and(|parts| {
                parts.iter().any(|p| {
                    matches!(
                        p.get("type").and_then(Value::as_str),
                        Some("image_url" | "input_image" | "input_audio")
                    )
                })
            })
    });
    if !has_media {
        return Ok(());
    }
    let policy = st.guard.policies().raw.media_fetch.clone();
    let mut images = 0usize;
    let mut remote: Vec<PartAt> = Vec::new();
    let mut audio = 0usize;
    let mut inline_total = 0u64;
    for (i, m) in messages(body).iter().enumerate() {
        let Some(parts) = m.get("content").and_then(Value::as_array) else {
            continue;
        };
        for (j, p) in parts.iter().enumerate() {
            match p.get("type").and_then(Value::as_str) {
                Some("image_url" | "input_image") => {
                    images += 1;
                    let url = p
                        .pointer("/image_url/url")
                        .or_else(|| p.get("image_url"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
                    if lower.starts_with("http://") || lower.starts_with("https://") {
                        remote.push((i, j));
                    } else if lower.starts_with("data:") {
                        // Inline images count against the same limits as fetched ones.
                        let bytes = inline_bytes(url);
                        if bytes > u64::from(policy.max_image_bytes) {
                            return Err(ApiError::bad_request(
                                "image_too_large",
                                format!(
                                    "messages[{i}].content[{j}]: the image exceeds {} bytes (media_fetch.max_image_bytes)",
                                    policy.max_image_bytes
                                ),
                            ));
                        }
                        inline_total = inline_total.saturating_add(bytes);
                    } else {
                        // Nothing else is relayed: llama-server would read `file://`
                        // URLs from its --media-path.
                        return Err(ApiError::bad_request(
                            "invalid_media_url",
                            format!("messages[{i}].content[{j}]: an image must be a data: URL or an http(s):// URL"),
                        ));
                    }
                }
                Some("input_audio") => {
                    audio += 1;
                    check_audio(p, i, j, policy.max_audio_bytes)?;
                }
                _ => {}
            }
        }
    }
    if images == 0 && audio == 0 {
        return Ok(());
    }
    if images > policy.max_images as usize {
        return Err(ApiError::bad_request(
            "too_many_images",
            format!(
                "the request carries {images} images; at most {} are accepted (media_fetch.max_images)",
                policy.max_images
            ),
        ));
    }
    if inline_total > u64::from(policy.max_total_bytes) {
        return Err(ApiError::bad_request(
            "image_too_large",
            format!(
                "the images of this request exceed {} bytes in total (media_fetch.max_total_bytes)",
                policy.max_total_bytes
            ),
        ));
    }
    narrow(resolved, images > 0, audio > 0)?;
    if remote.is_empty() {
        return Ok(());
    }
    let socks = st.media_egress.as_deref();
    let limit = Duration::from_secs(u64::from(policy.timeout_secs));
    let fetched = tokio::time::timeout(limit, async {
        let _slot = FETCH_SLOTS
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the image fetch slots are closed"))?;
        let mut remaining = u64::from(policy.max_total_bytes).saturating_sub(inline_total);
        let mut out = Vec::with_capacity(remote.len());
        for &(i, j) in &remote {
            let url = messages(body)
                .get(i)
                .and_then(|m| m.pointer(&format!("/content/{j}")))
                .and_then(|p| p.pointer("/image_url/url").or_else(|| p.get("image_url")))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let img = media_fetch::fetch_image(&url, &policy, socks, remaining)
                .await
                .map_err(|e| fetch_error(e, i, j))?;
            remaining = remaining.saturating_sub(img.bytes.len() as u64);
            out.push(img);
        }
        Ok::<_, ApiError>(out)
    })
    .await
    .map_err(|_| {
        ApiError::bad_request(
            "image_fetch_timeout",
            format!(
                "the remote images were not fetched within {} s (media_fetch.timeout_secs)",
                policy.timeout_secs
            ),
        )
    })??;
    for (&(i, j), img) in remote.iter().zip(fetched) {
        let data_url = format!(
            "data:{};base64,{}",
            img.mime,
            media_fetch::base64(&img.bytes)
        );
        if let Some(part) = body
            .get_mut("messages")
            .and_then(|m| m.get_mut(i))
            .and_then(|m| m.get_mut("content"))
            .and_then(|c| c.get_mut(j))
            .and_then(Value::as_object_mut)
        {
            let detail = part.get("image_url").and_then(|u| u.get("detail")).cloned();
            let mut url = Map::new();
            url.insert("url".into(), Value::String(data_url));
            if let Some(d) = detail {
                url.insert("detail".into(), d);
            }
            part.insert("image_url".into(), Value::Object(url));
        }
    }
    Ok(())
}

/// Decoded size of a `data:` URL's Base64 payload (an upper bound for other
/// encodings: the body limit already bounds those).
fn inline_bytes(url: &str) -> u64 {
    let payload = url.split_once(',').map_or("", |(_, p)| p);
    let len = payload.trim_end_matches('=').len() as u64;
    len.saturating_mul(3) / 4
}

fn messages(body: &Map<String, Value>) -> &[Value] {
    body.get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Keeps the engines whose model may take the parts; refuses when the engines all
/// report that it cannot.
fn narrow(resolved: &mut Resolved, images: bool, audio: bool) -> Result<(), ApiError> {
    let model = resolved.model.clone();
    // `None`: the engine does not report it; `Some(ok)`: its own word.
    let verdict = |e: &crate::routing::EngineEntry| -> (Option<bool>, Option<bool>) {
        match e.models.iter().find(|m| m.name == model) {
            Some(m) if m.modalities_known => (Some(m.vision), Some(m.audio_inputs)),
            _ => (None, None),
        }
    };
    let before: Vec<_> = resolved.candidates.iter().map(|e| verdict(e)).collect();
    let fits = |(v, a): (Option<bool>, Option<bool>)| {
        (!images || v != Some(false)) && (!audio || a != Some(false))
    };
    if before.iter().any(|x| fits(*x)) {
        let mut k = 0;
        resolved.candidates.retain(|_| {
            let keep = fits(before[k]);
            k += 1;
            keep
        });
        return Ok(());
    }
    if images && before.iter().all(|(v, _)| *v == Some(false)) {
        return Err(ApiError::bad_request(
            "model_not_multimodal",
            format!("model `{model}` does not accept images (its engine reports no vision input); choose a vision model (see GET /v1/models)"),
        ));
    }
    Err(ApiError::bad_request(
        "model_no_audio_input",
        format!("model `{model}` does not accept audio (its engine reports no audio input); choose an audio-capable model or transcribe first with /v1/audio/transcriptions"),
    ))
}

fn check_audio(p: &Value, i: usize, j: usize, max: u32) -> Result<(), ApiError> {
    let at = format!("messages[{i}].content[{j}]");
    let bad = |why: String| ApiError::bad_request("invalid_input_audio", why);
    let Some(a) = p.get("input_audio").and_then(Value::as_object) else {
        return Err(bad(format!(
            "{at}: an `input_audio` part needs an `input_audio` object with `data` (Base64) and `format`"
        )));
    };
    let Some(data) = a.get("data").and_then(Value::as_str) else {
        return Err(bad(format!(
            "{at}.input_audio.data must be a Base64 string"
        )));
    };
    let format = a.get("format").and_then(Value::as_str).unwrap_or("");
    if !AUDIO_FORMATS.contains(&format) {
        return Err(ApiError::bad_request(
            "unsupported_audio_format",
            format!(
                "{at}.input_audio.format must be one of {}",
                AUDIO_FORMATS.join(", ")
            ),
        ));
    }
    let valid = !data.is_empty()
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'));
    if !valid {
        return Err(bad(format!("{at}.input_audio.data is not valid Base64")));
    }
    let decoded = (data.len() as u64 / 4) * 3;
    if decoded > u64::from(max) {
        return Err(ApiError::bad_request(
            "audio_too_large",
            format!("{at}: the audio exceeds {max} bytes (media_fetch.max_audio_bytes)"),
        ));
    }
    Ok(())
}

fn fetch_error(e: FetchError, i: usize, j: usize) -> ApiError {
    let at = format!("messages[{i}].content[{j}]");
    let code = match &e {
        FetchError::BadUrl(_) => "invalid_media_url",
        FetchError::Forbidden => "image_url_forbidden",
        FetchError::Failed(_) => "image_fetch_failed",
        FetchError::TooLarge(_) => "image_too_large",
        FetchError::NotImage(_) => "unsupported_image_type",
    };
    ApiError::bad_request(code, format!("{at}: {e}"))
}
