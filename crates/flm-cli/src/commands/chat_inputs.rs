//! `flm chat --prompt-file` and `--image-url`: inputs checked before any request.

use std::io::Read as _;
use std::path::Path;

use crate::output::CliError;

/// Largest prompt file read (the proxy's default body limit is 10 MB).
pub const MAX_PROMPT_BYTES: u64 = 8 * 1024 * 1024;

fn bad(m: String) -> CliError {
    CliError::user("INVALID_ARGUMENT", m)
}

/// The prompt text of `path` (`-`: standard input): UTF-8, not empty, at most
/// [`MAX_PROMPT_BYTES`]. The text is sent as it is (line breaks kept).
pub fn read_prompt_file(path: &Path) -> Result<String, CliError> {
    let stdin = path.as_os_str() == "-";
    let shown = if stdin {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    let mut bytes = Vec::new();
    let read = if stdin {
        std::io::stdin()
            .lock()
            .take(MAX_PROMPT_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => return Err(bad(format!("prompt file {shown} is not a file"))),
            Ok(_) => {}
            Err(e) => return Err(bad(format!("cannot read prompt file {shown}: {e}"))),
        }
        std::fs::File::open(path).and_then(|f| f.take(MAX_PROMPT_BYTES + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| bad(format!("cannot read the prompt from {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_PROMPT_BYTES {
        return Err(bad(format!(
            "the prompt in {shown} is larger than {} MB",
            MAX_PROMPT_BYTES / (1024 * 1024)
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| bad(format!("the prompt in {shown} is not UTF-8 text")))?;
    if text.trim().is_empty() {
        return Err(bad(format!("the prompt in {shown} is empty")));
    }
    Ok(text)
}

/// The message: `--prompt`, or the contents of `--prompt-file`.
pub fn prompt(args: &crate::cli::ChatArgs) -> Result<String, CliError> {
    match &args.prompt_file {
        Some(p) => {
            let reads_stdin = args.api_key_stdin || args.api_key.as_deref() == Some("-");
            if p.as_os_str() == "-" && reads_stdin {
                return Err(bad(
                    "--prompt-file - and the API key cannot both come from standard input; use $FLM_API_KEY or --api-key-file".into(),
                ));
            }
            read_prompt_file(p)
        }
        None if args.prompt.is_empty() => Err(bad(
            "give the message with --prompt <text> or --prompt-file <path> (`-` for standard input)".into(),
        )),
        None => Ok(args.prompt.clone()),
    }
}

/// Checks an `--image-url`: an `http://` or `https://` URL with a host. The proxy
/// fetches it (and decides whether the address may be fetched).
pub fn check_image_url(url: &str) -> Result<String, CliError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| bad(format!("invalid --image-url `{url}`: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad(format!(
            "invalid --image-url `{url}`: use an http:// or https:// URL (for a local file, use --image)"
        )));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_urls() {
        assert!(check_image_url("https://example.com/a.png").is_ok());
        for u in [
            "file:///etc/passwd",
            "example.com/a.png",
            "data:image/png;base64,AA",
            "http://",
        ] {
            assert!(check_image_url(u).is_err(), "{u}");
        }
    }
}
