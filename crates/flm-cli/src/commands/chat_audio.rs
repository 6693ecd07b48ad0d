//! `flm chat --audio FILE`: speech-to-text through the running proxy
//! (`POST /v1/audio/transcriptions`, multipart, as the OpenAI SDKs send it); prints
//! the text (or the proxy's JSON with `--json`).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::app::App;
use crate::cli::ChatArgs;
use crate::client::error_chain;
use crate::output::{write_stdout, CliError, Printer};

/// Largest audio file accepted (the proxy's upload limit).
pub const MAX_AUDIO_BYTES: u64 = 25 * 1024 * 1024;

/// The MIME type of an audio file from its magic bytes, when it is a known format.
pub fn sniff_audio(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        Some("audio/wav")
    } else if bytes.starts_with(b"ID3") || bytes.starts_with(&[0xFF, 0xFB]) {
        Some("audio/mpeg")
    } else if bytes.starts_with(b"fLaC") {
        Some("audio/flac")
    } else if bytes.starts_with(b"OggS") {
        Some("audio/ogg")
    } else if bytes.len() >= 8 && &bytes[4..8] == b"ftyp" {
        Some("audio/mp4")
    } else {
        None
    }
}

fn load_audio(path: &Path) -> Result<(String, &'static str, Vec<u8>), CliError> {
    let bad = |m: String| CliError::user("INVALID_ARGUMENT", m);
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| bad(format!("cannot read audio {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(bad(format!("audio {shown} is not a file")));
    }
    if meta.len() > MAX_AUDIO_BYTES {
        return Err(bad(format!(
            "audio {shown} is {:.1} MB; uploads may be at most 25 MB",
            meta.len() as f64 / (1024.0 * 1024.0)
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read audio {shown}: {e}")))?;
    if bytes.is_empty() {
        return Err(bad(format!("audio {shown} is empty")));
    }
    let mime = sniff_audio(&bytes).unwrap_or("application/octet-stream");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("audio")
        .replace(['"', '\r', '\n', '\\'], "_");
    Ok((name, mime, bytes))
}

/// A `multipart/form-data` body: the text fields, then the file.
fn form(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    let boundary = format!("flm-cli-{:016x}", rand::random::<u64>());
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    let (name, mime, data) = file;
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) async fn run(
    app: &App,
    args: &ChatArgs,
    audio: &Path,
    printer: &Printer,
) -> Result<(), CliError> {
    if args.stream || !args.image.is_empty() || !args.image_url.is_empty() {
        return Err(CliError::user(
            "INVALID_ARGUMENT",
            "--audio transcribes a file: it cannot be combined with --stream, --image or --image-url",
        ));
    }
    let (name, mime, bytes) = load_audio(audio)?;
    let mut fields: Vec<(&str, String)> = vec![("model", args.model.clone())];
    if !args.prompt.is_empty() {
        fields.push(("prompt", args.prompt.clone()));
    }
    if let Some(t) = args.temperature {
        fields.push(("temperature", t.to_string()));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (content_type, body) = form(&fields, (&name, mime, &bytes));
    let (base, key, trust) = super::chat::target(app, args, printer).await?;
    let client = super::chat::proxy_client(trust)?;
    let settings = app.config.proxy_settings().await?;
    let resp = client
        .post(format!("{base}/v1/audio/transcriptions"))
        .bearer_auth(&key)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .timeout(settings.request_timeout + Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| super::chat::send_error(&base, &e))?;
    if !resp.status().is_success() {
        return Err(super::chat::proxy_error(resp).await);
    }
    let text = resp.text().await.map_err(|e| {
        CliError::user(
            "PROXY_ERROR",
            format!("the answer broke off: {}", error_chain(&e)),
        )
    })?;
    if args.json {
        return write_stdout(&format!("{}\n", text.trim()));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::user(
            "PROXY_ERROR",
            format!("the proxy answered invalid JSON: {e}"),
        )
    })?;
    let transcript = v["text"].as_str().unwrap_or("").trim();
    write_stdout(&format!("{transcript}\n"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn audio_formats_are_recognised_by_their_magic_bytes() {
        assert_eq!(sniff_audio(b"RIFF\x24\0\0\0WAVEfmt "), Some("audio/wav"));
        assert_eq!(sniff_audio(b"ID3\x04\0\0"), Some("audio/mpeg"));
        assert_eq!(sniff_audio(b"fLaC\0\0\0\x22"), Some("audio/flac"));
        assert_eq!(sniff_audio(b"OggS\0\x02"), Some("audio/ogg"));
        assert_eq!(sniff_audio(b"\0\0\0\x20ftypM4A "), Some("audio/mp4"));
        assert_eq!(sniff_audio(b"RIFF\x10\0\0\0WEBPVP8 "), None);
    }

    #[test]
    fn forms_carry_fields_then_the_file() {
        let (ct, body) = form(&[("model", "whisper-1")], ("a.wav", "audio/wav", b"RIFF"));
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        )));
        assert!(text.ends_with(&format!("RIFF\r\n--{boundary}--\r\n")));
    }
}
