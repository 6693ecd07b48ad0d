//! A streaming `multipart/form-data` reader and writer (RFC 7578), for the audio
//! upload routes: the proxy reads the small text fields (`model`, `language`, …) to
//! route the request, then relays the file part to the engine chunk by chunk, under a
//! new boundary, without holding the whole upload in memory.
//!
//! The reader is an incremental state machine over byte chunks: it never needs more
//! than one part header (bounded by [`MAX_HEADER_BYTES`]) plus one boundary's length
//! of look-ahead.

use bytes::{Bytes, BytesMut};

/// Longest header block of one part.
pub(crate) const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// What is wrong with a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub String);

/// The boundary of a `multipart/form-data` content type; `None` for any other type
/// or a missing / invalid boundary.
pub(crate) fn form_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    for p in parts {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim().trim_matches('"');
            let ok = !v.is_empty()
                && v.len() <= MAX_BOUNDARY
                && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            return ok.then(|| v.to_owned());
        }
    }
    None
}

/// The headers of one part that matter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PartHead {
    /// `name` of `Content-Disposition`.
    pub name: String,
    /// `filename`, for a file part.
    pub filename: Option<String>,
    /// `Content-Type` of the part.
    pub content_type: Option<String>,
}

/// One step of the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A part begins.
    Part(PartHead),
    /// Bytes of the current part's content.
    Data(Bytes),
    /// The current part ended.
    PartEnd,
    /// The closing boundary was read: the body is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first boundary.
    Preamble,
    /// Right after a boundary: `--` (end) or CRLF (a part follows).
    AfterBoundary,
    /// Reading a part's headers.
    Headers,
    /// Reading a part's content.
    Body,
    /// After the closing boundary.
    Done,
}

/// Incremental reader: [`Reader::push`] bytes, then [`Reader::next_event`] until it
/// returns `Ok(None)` (needs more input).
pub(crate) struct Reader {
    /// `\r\n--boundary`.
    delim: Vec<u8>,
    buf: BytesMut,
    state: State,
}

impl Reader {
    pub(crate) fn new(boundary: &str) -> Self {
        let mut delim = b"\r\n--".to_vec();
        delim.extend_from_slice(boundary.as_bytes());
        Self {
            delim,
            buf: BytesMut::new(),
            state: State::Preamble,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Whether the closing boundary was read.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next event, `Ok(None)` when more input is needed.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, Malformed> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Preamble => {
                    // The first boundary may start the body (no leading CRLF).
                    let first = &self.delim[2..];
                    if self.buf.len() >= first.len() && self.buf.starts_with(first) {
                        let _ = self.buf.split_to(first.len());
                        self.state = State::AfterBoundary;
                        continue;
                    }
                    match find(&self.buf, &self.delim) {
                        Some(i) => {
                            let _ = self.buf.split_to(i + self.delim.len());
                            self.state = State::AfterBoundary;
                        }
                        None => {
                            // Keep only what could start a boundary.
                            let keep = self.delim.len();
                            if self.buf.len() > MAX_HEADER_BYTES + keep {
                                return Err(Malformed(
                                    "no multipart boundary found at the start of the body".into(),
                                ));
                            }
                            return Ok(None);
                        }
                    }
                }
                State::AfterBoundary => {
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = State::Done;
                        self.buf.clear();
                        return Ok(Some(Event::End));
                    }
                    // Transport padding (spaces, tabs) may follow a boundary.
                    let pad = self
                        .buf
                        .iter()
                        .take_while(|b| **b == b' ' || **b == b'\t')
                        .count();
                    if self.buf.len() < pad + 2 {
                        return Ok(None);
                    }
                    if &self.buf[pad..pad + 2] != b"\r\n" {
                        return Err(Malformed(
                            "a multipart boundary is not followed by a line break".into(),
                        ));
                    }
                    let _ = self.buf.split_to(pad + 2);
                    self.state = State::Headers;
                }
                State::Headers => {
                    // An empty header block is legal: the part starts with CRLF.
                    let end = if self.buf.starts_with(b"\r\n") {
                        Some(0)
                    } else {
                        find(&self.buf, b"\r\n\r\n").map(|i| i + 2)
                    };
                    let Some(end) = end else {
                        if self.buf.len() > MAX_HEADER_BYTES {
                            return Err(Malformed(format!(
                                "the headers of a multipart part exceed {MAX_HEADER_BYTES} bytes"
                            )));
                        }
                        return Ok(None);
                    };
                    let block = self.buf.split_to(end);
                    let _ = self.buf.split_to(2);
                    let head = parse_head(&block)?;
                    self.state = State::Body;
                    return Ok(Some(Event::Part(head)));
                }
                State::Body => {
                    if let Some(i) = find(&self.buf, &self.delim) {
                        if i > 0 {
                            return Ok(Some(Event::Data(self.buf.split_to(i).freeze())));
                        }
                        let _ = self.buf.split_to(self.delim.len());
                        self.state = State::AfterBoundary;
                        return Ok(Some(Event::PartEnd));
                    }
                    // Everything except a possible partial delimiter at the end.
                    let safe = self.buf.len().saturating_sub(self.delim.len() - 1);
                    if safe == 0 {
                        return Ok(None);
                    }
                    return Ok(Some(Event::Data(self.buf.split_to(safe).freeze())));
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(block: &[u8]) -> Result<PartHead, Malformed> {
    let text = std::str::from_utf8(block)
        .map_err(|_| Malformed("the headers of a multipart part are not UTF-8".into()))?;
    let mut head = PartHead::default();
    let mut disposition = false;
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Malformed(format!(
                "invalid multipart header line `{}`",
                flm_core::upstream::one_line(line, 60)
            )));
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            disposition = true;
            let mut params = split_params(value);
            let kind = params.next().unwrap_or_default();
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return Err(Malformed(format!(
                    "a multipart part has `Content-Disposition: {}` instead of form-data",
                    kind.trim()
                )));
            }
            for p in params {
                if let Some((k, v)) = p.split_once('=') {
                    let v = unquote(v.trim());
                    match k.trim().to_ascii_lowercase().as_str() {
                        "name" => head.name = v,
                        "filename" => head.filename = Some(v),
                        _ => {}
                    }
                }
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(value.trim().to_owned());
        }
    }
    if !disposition || head.name.is_empty() {
        return Err(Malformed(
            "a multipart part has no `Content-Disposition: form-data; name=…` header".into(),
        ));
    }
    Ok(head)
}

/// Splits `a; b="x;y"; c` on semicolons outside quotes.
fn split_params(s: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

/// Writes parts under `boundary`.
pub(crate) struct Writer {
    boundary: String,
}

impl Writer {
    pub(crate) fn new(boundary: String) -> Self {
        Self { boundary }
    }

    /// The request's `Content-Type`.
    pub(crate) fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The delimiter and headers that open a part.
    pub(crate) fn part_head(&self, head: &PartHead) -> Bytes {
        let mut out = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{}\"",
            self.boundary,
            escape(&head.name)
        );
        if let Some(f) = &head.filename {
            out.push_str(&format!("; filename=\"{}\"", escape(f)));
        }
        out.push_str("\r\n");
        if let Some(ct) = &head.content_type {
            out.push_str(&format!("Content-Type: {}\r\n", one_header_line(ct)));
        }
        out.push_str("\r\n");
        Bytes::from(out)
    }

    /// A whole text field.
    pub(crate) fn field(&self, name: &str, value: &str) -> Bytes {
        let head = self.part_head(&PartHead {
            name: name.to_owned(),
            ..PartHead::default()
        });
        let mut out = BytesMut::from(&head[..]);
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.freeze()
    }

    /// The end of a part's content.
    pub(crate) fn part_end() -> Bytes {
        Bytes::from_static(b"\r\n")
    }

    /// The closing delimiter.
    pub(crate) fn end(&self) -> Bytes {
        Bytes::from(format!("--{}--\r\n", self.boundary))
    }
}

/// Quoted-string escaping for `name` / `filename` (no line breaks can get through).
fn escape(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            _ => vec![c],
        })
        .collect()
}

fn one_header_line(s: &str) -> String {
    s.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Vec<u8> {
        b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nflm://e/whisper-1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a;\\\"b.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--Xy not yet\r\n--XyZ--\r\nepilogue".to_vec()
    }

    fn read_all(input: &[u8], chunk: usize) -> Result<Vec<Event>, Malformed> {
        let mut r = Reader::new("XyZ");
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            r.push(c);
            while let Some(e) = r.next_event()? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Merges consecutive data events, whatever the chunking.
    fn normalise(events: Vec<Event>) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for e in events {
            match (out.last_mut(), e) {
                (Some(Event::Data(prev)), Event::Data(d)) => {
                    let mut m = BytesMut::from(&prev[..]);
                    m.extend_from_slice(&d);
                    *prev = m.freeze();
                }
                (_, e) => out.push(e),
            }
        }
        out
    }

    #[test]
    fn reads_parts_whatever_the_chunking() {
        let want = vec![
            Event::Part(PartHead {
                name: "model".into(),
                ..PartHead::default()
            }),
            Event::Data(Bytes::from_static(b"flm://e/whisper-1")),
            Event::PartEnd,
            Event::Part(PartHead {
                name: "file".into(),
                filename: Some("a;\"b.wav".into()),
                content_type: Some("audio/wav".into()),
            }),
            Event::Data(Bytes::from_static(b"RIFF\r\n--Xy not yet")),
            Event::PartEnd,
            Event::End,
        ];
        for chunk in [1, 2, 3, 5, 7, 64, 4096] {
            assert_eq!(
                normalise(read_all(&body(), chunk).unwrap()),
                want,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let no_disposition = b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--";
        assert!(read_all(no_disposition, 4).is_err());
        let garbage = vec![b'a'; MAX_HEADER_BYTES * 2];
        assert!(read_all(&garbage, 1024).is_err());
        let bad_after =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--XyZjunk";
        assert!(read_all(bad_after, 3).is_err());
    }

    #[test]
    fn boundaries_come_only_from_form_data() {
        assert_eq!(
            form_boundary("multipart/form-data; boundary=\"abc def\"").as_deref(),
            Some("abc def")
        );
        assert_eq!(
            form_boundary("Multipart/Form-Data;boundary=x1").as_deref(),
            Some("x1")
        );
        assert_eq!(form_boundary("application/json"), None);
        assert_eq!(form_boundary("multipart/form-data"), None);
        assert_eq!(form_boundary("multipart/mixed; boundary=x"), None);
    }

    #[test]
    fn written_parts_read_back() {
        let w = Writer::new("flm-b".into());
        let mut body = BytesMut::new();
        body.extend_from_slice(&w.field("model", "m"));
        body.extend_from_slice(&w.part_head(&PartHead {
            name: "file".into(),
            filename: Some("x\r\n\".wav".into()),
            content_type: Some("audio/wav".into()),
        }));
        body.extend_from_slice(b"data");
        body.extend_from_slice(&Writer::part_end());
        body.extend_from_slice(&w.end());
        let mut r = Reader::new("flm-b");
        r.push(&body);
        let mut events = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            events.push(e);
        }
        assert!(r.is_done());
        assert_eq!(events.len(), 7, "{events:?}");
        assert_eq!(
            events[3],
            Event::Part(PartHead {
                name: "file".into(),
                filename: Some("x\".wav".into()),
                content_type: Some("audio/wav".into()),
            })
        );
    }
}
