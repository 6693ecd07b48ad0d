//! A small, buffered `multipart/form-data` parser for the emulators' upload routes
//! (the engines read the whole upload before answering too).

use bytes::Bytes;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart {
    /// `name` of the part.
    pub name: String,
    /// `filename`, for a file.
    pub filename: Option<String>,
    /// The part's `Content-Type`.
    pub content_type: Option<String>,
    /// The content.
    pub data: Bytes,
}

impl FormPart {
    /// The content as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// The boundary of a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut it = content_type.split(';');
    if !it
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    it.filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .filter(|b| !b.is_empty())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Parses a whole form body; `Err` explains what is malformed.
pub(crate) fn parse(content_type: &str, body: &[u8]) -> Result<Vec<FormPart>, String> {
    let b = boundary(content_type).ok_or("expected multipart/form-data with a boundary")?;
    let delim = format!("--{b}");
    let mut pos = find(body, delim.as_bytes(), 0).ok_or("no boundary in the body")?;
    let mut parts = Vec::new();
    loop {
        pos += delim.len();
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(parts);
        }
        if body.get(pos..pos + 2) != Some(b"\r\n") {
            return Err("a boundary is not followed by CRLF".into());
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("a part has no header end")?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let next_delim = format!("\r\n{delim}");
        let end = find(body, next_delim.as_bytes(), head_end + 4).ok_or("a part has no end")?;
        let mut part = FormPart {
            name: String::new(),
            filename: None,
            content_type: None,
            data: Bytes::copy_from_slice(&body[head_end + 4..end]),
        };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for p in v.split(';').skip(1) {
                    if let Some((pk, pv)) = p.split_once('=') {
                        let pv = pv.trim().trim_matches('"').to_owned();
                        match pk.trim() {
                            "name" => part.name = pv,
                            "filename" => part.filename = Some(pv),
                            _ => {}
                        }
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(v.trim().to_owned());
            }
        }
        parts.push(part);
        pos = end + 2;
    }
}
