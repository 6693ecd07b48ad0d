//! `flm chat`: one message through the running proxy, as any OpenAI client would
//! send it (`POST /v1/chat/completions` with a Bearer key; `--responses`:
//! `POST /v1/responses`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::app::App;
use crate::cli::ChatArgs;
use crate::client::{error_chain, root_cause};
use crate::commands::chat_responses;
use crate::commands::proxy::{not_running, running_daemon};
use crate::output::{write_stdout, CliError, Printer};

/// Largest image `--image` accepts.
pub const MAX_IMAGE_BYTES: u64 = 8 * 1024 * 1024;

/// Connect timeout towards the proxy.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The MIME type of an image, from its magic bytes: PNG, JPEG or WebP.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Reads an image file into a `data:` URL, refusing what the proxy would refuse.
fn load_image(path: &Path) -> Result<String, CliError> {
    let bad = |m: String| CliError::user("INVALID_ARGUMENT", m);
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| bad(format!("cannot read image {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(bad(format!("image {shown} is not a file")));
    }
    if meta.len() > MAX_IMAGE_BYTES {
        return Err(bad(format!(
            "image {shown} is {:.1} MB; images may be at most 8 MB",
            meta.len() as f64 / (1024.0 * 1024.0)
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read image {shown}: {e}")))?;
    let mime = sniff_image(&bytes).ok_or_else(|| {
        let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        bad(format!(
            "{shown} is not a PNG, JPEG or WebP image (it starts with {}); convert it to one of these formats",
            if head.is_empty() { "nothing: the file is empty".to_owned() } else { format!("bytes {head}") }
        ))
    })?;
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    ))
}

/// The request body.
fn body(args: &ChatArgs, images: &[String]) -> Result<Value, CliError> {
    let content = if images.is_empty() {
        json!(args.prompt)
    } else {
        let mut parts = vec![json!({"type": "text", "text": args.prompt})];
        parts.extend(
            images
                .iter()
                .map(|url| json!({"type": "image_url", "image_url": {"url": url}})),
        );
        Value::Array(parts)
    };
    let mut body = json!({
        "model": args.model,
        "messages": [{"role": "user", "content": content}],
        "stream": args.stream,
    });
    if let Some(t) = args.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(CliError::user(
                "INVALID_ARGUMENT",
                format!("invalid --temperature {t}: must be from 0.0 to 2.0"),
            ));
        }
        body["temperature"] = json!(t);
    }
    if let Some(n) = args.max_tokens {
        body["max_tokens"] = json!(n);
    }
    Ok(body)
}

/// Where to connect for a proxy listening on `listen_addr`.
fn connect_ip(listen_addr: &str) -> IpAddr {
    match listen_addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ok(IpAddr::V6(v6)) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Ok(ip) => ip,
        Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// Longest key file or standard input line read (a key is 53 characters).
const MAX_KEY_INPUT: u64 = 4096;

/// The first line of `input` (at most [`MAX_KEY_INPUT`] bytes), trimmed; `None` when
/// it is empty.
fn first_line(input: impl std::io::Read, what: &str) -> Result<Option<String>, CliError> {
    use std::io::BufRead as _;
    let mut line = String::new();
    std::io::BufReader::new(input.take(MAX_KEY_INPUT))
        .read_line(&mut line)
        .map_err(|e| {
            CliError::user(
                "INVALID_ARGUMENT",
                format!("cannot read the API key from {what}: {e}"),
            )
        })?;
    let key = line.trim();
    Ok((!key.is_empty()).then(|| key.to_owned()))
}

/// The key the user gave: `--api-key` (`-`: standard input), `--api-key-file`,
/// `--api-key-stdin`, else `$FLM_API_KEY`. An empty source is an error, not a
/// silent fall-back to another key.
fn explicit_key(args: &ChatArgs, printer: &Printer) -> Result<Option<String>, CliError> {
    let empty = |what: &str| CliError::user("INVALID_ARGUMENT", format!("{what} holds no API key"));
    if args.api_key_stdin || args.api_key.as_deref() == Some("-") {
        return first_line(std::io::stdin().lock(), "standard input")?
            .map(Some)
            .ok_or_else(|| empty("standard input"));
    }
    if let Some(path) = &args.api_key_file {
        let what = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| {
            CliError::user(
                "INVALID_ARGUMENT",
                format!("cannot read the API key file {what}: {e}"),
            )
        })?;
        return first_line(file, &what)?
            .map(Some)
            .ok_or_else(|| empty(&format!("the API key file {what}")));
    }
    if let Some(k) = &args.api_key {
        let msg = "--api-key shows the key to every user of this machine (process list); use FLM_API_KEY, --api-key-file or --api-key-stdin";
        if printer.format == crate::cli::Format::Text {
            eprintln!("warning: {msg}");
        } else {
            tracing::warn!("{msg}");
        }
        let k = k.trim();
        return if k.is_empty() {
            Err(empty("--api-key"))
        } else {
            Ok(Some(k.to_owned()))
        };
    }
    Ok(std::env::var("FLM_API_KEY")
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty()))
}

/// Base URL and key: `--port` or the daemon's first proxy; the key the user gave
/// ([`explicit_key`]), else the daemon's key for this machine.
pub(super) async fn target(
    app: &App,
    args: &ChatArgs,
    printer: &Printer,
) -> Result<(String, String, Option<String>), CliError> {
    let explicit = explicit_key(args, printer)?;
    let daemon = running_daemon(app, printer).await?;
    let proxies = match &daemon {
        Some(d) => d.status().await?.proxies,
        None => Vec::new(),
    };
    let handle = match args.port {
        Some(p) => proxies
            .iter()
            .find(|h| h.port == p || h.https_port == Some(p)),
        None => Some(proxies.first().ok_or_else(not_running)?),
    };
    let (ip, port, served_by_daemon) = match (args.port, handle) {
        (_, Some(h)) => (connect_ip(&h.listen_addr), h.port, true),
        (Some(p), None) => (IpAddr::V4(Ipv4Addr::LOCALHOST), p, false),
        (None, None) => return Err(not_running()),
    };
    // TLS modes: talk HTTPS on port+1, trusting the certificate the proxy reports.
    let (scheme, port, trust) = match handle.and_then(|h| h.https_port.zip(h.tls.as_ref())) {
        Some((https, tls)) => ("https", https, Some(tls.trust_cert_path.clone())),
        None => ("http", port, None),
    };
    let key = match (explicit, &daemon) {
        (Some(k), _) => k,
        (None, Some(d)) if served_by_daemon => d.state.cli_key.clone(),
        _ => {
            return Err(CliError::user(
                "INVALID_ARGUMENT",
                format!(
                    "no API key for the proxy on port {port}: set FLM_API_KEY, or pass --api-key-file or --api-key-stdin"
                ),
            ))
        }
    };
    Ok((
        format!("{scheme}://{}", SocketAddr::new(ip, port)),
        key,
        trust,
    ))
}

/// The HTTP client that talks to the proxy, trusting `trust` (a PEM file: the proxy's
/// own certificate or FLM's CA) when the proxy serves HTTPS.
pub(super) fn proxy_client(trust: Option<String>) -> Result<reqwest::Client, CliError> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(path) = trust {
        let pem = std::fs::read(&path).map_err(|e| {
            CliError::user(
                "IO_ERROR",
                format!("cannot read the proxy certificate {path}: {e}"),
            )
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            CliError::user("IO_ERROR", format!("{path} is not a PEM certificate: {e}"))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| {
        CliError::internal(
            "INTERNAL",
            format!("cannot create an HTTP client: {}", error_chain(&e)),
        )
    })
}

/// The CLI error for a request to the proxy that got no answer.
pub(super) fn send_error(base: &str, e: &reqwest::Error) -> CliError {
    if e.is_timeout() {
        CliError::user(
            "REQUEST_TIMEOUT",
            format!("the proxy at {base} did not answer in time"),
        )
    } else if e.is_connect() {
        CliError::user(
            "PROXY_NOT_RUNNING",
            format!(
                "cannot connect to the proxy at {base} ({}); start it with `flm proxy start`",
                root_cause(e)
            ),
        )
    } else {
        CliError::user(
            "PROXY_ERROR",
            format!("request to {base} failed: {}", root_cause(e)),
        )
    }
}

/// A non-2xx answer of the proxy as an error with the proxy's own code.
pub(super) async fn proxy_error(resp: reqwest::Response) -> CliError {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
        (Some(code), Some(message)) => CliError::remote(code, message, 1),
        (None, Some(message)) => CliError::remote("PROXY_ERROR", message, 1),
        _ => CliError::user(
            "PROXY_ERROR",
            format!(
                "the proxy answered HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            ),
        ),
    }
}

pub(crate) async fn run(app: &App, mut args: ChatArgs, printer: &Printer) -> Result<(), CliError> {
    if let Some(audio) = args.audio.clone() {
        // With --audio the prompt is optional: a hint for the transcription.
        if args.prompt_file.is_some() {
            args.prompt = super::chat_inputs::prompt(&args)?;
        }
        return super::chat_audio::run(app, &args, &audio, printer).await;
    }
    // Everything that can be checked locally is checked before any request.
    args.prompt = super::chat_inputs::prompt(&args)?;
    let mut images = args
        .image
        .iter()
        .map(|p| load_image(p))
        .collect::<Result<Vec<_>, _>>()?;
    for u in &args.image_url {
        images.push(super::chat_inputs::check_image_url(u)?);
    }
    let body = body(&args, &images)?;
    let (body, path) = if args.responses {
        (chat_responses::body(&args, &images), "/v1/responses")
    } else {
        (body, "/v1/chat/completions")
    };
    let (base, key, trust) = target(app, &args, printer).await?;
    let client = proxy_client(trust)?;
    let mut req = client
        .post(format!("{base}{path}"))
        .bearer_auth(&key)
        .json(&body);
    if !args.stream {
        // The proxy gives up after its own request timeout; wait a little longer.
        let settings = app.config.proxy_settings().await?;
        req = req.timeout(settings.request_timeout + Duration::from_secs(15));
    }
    let resp = req.send().await.map_err(|e| send_error(&base, &e))?;
    if !resp.status().is_success() {
        return Err(proxy_error(resp).await);
    }
    if args.stream {
        stream(resp, args.json).await
    } else {
        full(resp, args.json).await
    }
}

async fn full(resp: reqwest::Response, raw: bool) -> Result<(), CliError> {
    let text = resp.text().await.map_err(|e| {
        CliError::user(
            "PROXY_ERROR",
            format!("the answer broke off: {}", error_chain(&e)),
        )
    })?;
    if raw {
        return write_stdout(&format!("{}\n", text.trim()));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::user(
            "PROXY_ERROR",
            format!("the proxy answered invalid JSON: {e}"),
        )
    })?;
    let content = match v["choices"][0]["message"]["content"].as_str() {
        Some(c) => c.to_owned(),
        None => chat_responses::output_text(&v),
    };
    write_stdout(&format!("{content}\n"))
}

/// Relays an SSE stream: the text deltas (or each chunk's JSON with `--json`) are
/// printed and flushed as they arrive.
async fn stream(resp: reqwest::Response, raw: bool) -> Result<(), CliError> {
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut data: Vec<String> = Vec::new();
    let mut printer = Deltas {
        raw,
        open_line: false,
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            printer.end_line();
            CliError::user(
                "PROXY_ERROR",
                format!("the stream broke off: {}", error_chain(&e)),
            )
        })?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if printer.event(&data.join("\n"))? {
                    return Ok(());
                }
                data.clear();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
            }
        }
    }
    if !data.is_empty() && printer.event(&data.join("\n"))? {
        return Ok(());
    }
    printer.end_line();
    Err(CliError::user(
        "PROXY_ERROR",
        "the proxy ended the stream without [DONE]; the answer may be incomplete",
    ))
}

struct Deltas {
    raw: bool,
    open_line: bool,
}

impl Deltas {
    /// Handles one SSE event; `Ok(true)` at `[DONE]`.
    fn event(&mut self, data: &str) -> Result<bool, CliError> {
        if data.is_empty() {
            return Ok(false);
        }
        if data.trim() == "[DONE]" {
            self.end_line();
            return Ok(true);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            self.end_line();
            CliError::user(
                "PROXY_ERROR",
                format!("the proxy sent an invalid stream event ({e}): {data}"),
            )
        })?;
        if let Some(err) = v.get("error") {
            self.end_line();
            return Err(CliError::remote(
                err["code"].as_str().unwrap_or("PROXY_ERROR"),
                err["message"].as_str().unwrap_or("the stream failed"),
                1,
            ));
        }
        if v["type"].as_str().is_some() {
            // A Responses event (`--responses`): the stream ends at the final one.
            let mut done = false;
            let text = chat_responses::event(&v, &mut done).inspect_err(|_| self.end_line())?;
            if self.raw {
                write_stdout(&format!("{data}\n"))?;
            } else if let Some(t) = text.filter(|t| !t.is_empty()) {
                write_stdout(&t)?;
                self.open_line = !t.ends_with('\n');
            }
            if done {
                self.end_line();
            }
            return Ok(done);
        }
        if self.raw {
            write_stdout(&format!("{data}\n"))?;
        } else if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            if !t.is_empty() {
                write_stdout(t)?;
                self.open_line = !t.ends_with('\n');
            }
        }
        Ok(false)
    }

    fn end_line(&mut self) {
        if !self.raw && self.open_line {
            let _ = write_stdout("\n");
            self.open_line = false;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn images_are_recognised_by_their_magic_bytes() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"GIF89a"), None);
        assert_eq!(sniff_image(b""), None);
    }

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        assert_eq!(connect_ip("0.0.0.0"), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(connect_ip("::"), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(connect_ip("192.168.1.5").to_string(), "192.168.1.5");
    }
}
