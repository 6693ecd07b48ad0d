//! Incremental parsers for the two streaming framings engines use: Server-Sent Events
//! (OpenAI-compatible engines) and NDJSON (Ollama's native API).
//!
//! Parsers are fed raw byte chunks as they arrive and emit complete frames at once,
//! so no chunk waits for the next one. A frame split across TCP reads is kept until
//! it is complete; `\r\n` line ends are accepted.

use std::collections::VecDeque;

use bytes::Bytes;
use flm_core::EngineError;
use futures::{Stream, StreamExt};

use crate::http::root_cause;

/// One frame of an engine stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An SSE `data:` payload (multi-line data joined with `\n`) or one NDJSON line.
    Data(String),
    /// A legacy llama.cpp `error: {…}` SSE field.
    Error(String),
}

/// Which framing to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`.
    Sse,
    /// One JSON document per line.
    Ndjson,
}

/// Incremental frame parser.
#[derive(Debug)]
pub struct FrameParser {
    framing: Framing,
    buf: Vec<u8>,
    data: String,
    has_data: bool,
}

impl FrameParser {
    /// A parser for `framing`.
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            buf: Vec::new(),
            data: String::new(),
            has_data: false,
        }
    }

    /// Feeds bytes; complete frames are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut VecDeque<Frame>) {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            self.line(&line, out);
            start = end + 1;
        }
        self.buf.drain(..start);
    }

    /// Flushes what is left at the end of the stream.
    pub fn finish(&mut self, out: &mut VecDeque<Frame>) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = String::from_utf8_lossy(&rest)
                .trim_end_matches('\r')
                .to_owned();
            self.line(&line, out);
        }
        if self.framing == Framing::Sse && self.has_data {
            self.dispatch(out);
        }
    }

    fn line(&mut self, line: &str, out: &mut VecDeque<Frame>) {
        match self.framing {
            Framing::Ndjson => {
                if !line.trim().is_empty() {
                    out.push_back(Frame::Data(line.to_owned()));
                }
            }
            Framing::Sse => {
                if line.is_empty() {
                    if self.has_data {
                        self.dispatch(out);
                    }
                    return;
                }
                if line.starts_with(':') {
                    return; // comment, e.g. llama.cpp's `: ping`
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "data" => {
                        if self.has_data {
                            self.data.push('\n');
                        }
                        self.data.push_str(value);
                        self.has_data = true;
                    }
                    "error" => out.push_back(Frame::Error(value.to_owned())),
                    _ => {} // `event:`, `id:`, `retry:` carry nothing FLM needs here
                }
            }
        }
    }

    fn dispatch(&mut self, out: &mut VecDeque<Frame>) {
        out.push_back(Frame::Data(std::mem::take(&mut self.data)));
        self.has_data = false;
    }
}

/// Turns a byte stream into a stream of frames. A transport failure becomes an
/// `Err` item naming `url`, after which the stream ends.
pub fn frames<S>(
    body: S,
    framing: Framing,
    url: String,
) -> impl Stream<Item = Result<Frame, EngineError>> + Send
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
{
    struct St<S> {
        body: S,
        parser: FrameParser,
        queue: VecDeque<Frame>,
        done: bool,
        url: String,
    }
    let st = St {
        body,
        parser: FrameParser::new(framing),
        queue: VecDeque::new(),
        done: false,
        url,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(f) = st.queue.pop_front() {
                return Some((Ok(f), st));
            }
            if st.done {
                return None;
            }
            match st.body.next().await {
                Some(Ok(bytes)) => st.parser.feed(&bytes, &mut st.queue),
                Some(Err(e)) => {
                    st.done = true;
                    let err = EngineError::Network(format!(
                        "the stream from {} broke: {}",
                        st.url,
                        root_cause(&e)
                    ));
                    return Some((Err(err), st));
                }
                None => {
                    st.parser.finish(&mut st.queue);
                    st.done = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(framing: Framing, parts: &[&str]) -> Vec<Frame> {
        let mut p = FrameParser::new(framing);
        let mut out = VecDeque::new();
        for part in parts {
            p.feed(part.as_bytes(), &mut out);
        }
        p.finish(&mut out);
        out.into_iter().collect()
    }

    #[test]
    fn sse_split_across_reads_comments_and_crlf() {
        let got = parse(
            Framing::Sse,
            &[
                "data: {\"a\"",
                ":1}\r\n\r\n: ping\n\nevent: x\ndata: [DONE]\n",
                "\n",
            ],
        );
        assert_eq!(
            got,
            vec![
                Frame::Data("{\"a\":1}".into()),
                Frame::Data("[DONE]".into())
            ]
        );
    }

    #[test]
    fn sse_multiline_data_and_legacy_error_and_unterminated_tail() {
        let got = parse(
            Framing::Sse,
            &["data: a\ndata: b\n\nerror: {\"x\":1}\ndata: tail"],
        );
        assert_eq!(
            got,
            vec![
                Frame::Data("a\nb".into()),
                Frame::Error("{\"x\":1}".into()),
                Frame::Data("tail".into())
            ]
        );
    }

    #[test]
    fn ndjson_lines() {
        let got = parse(Framing::Ndjson, &["{\"a\":1}\n{\"b\"", ":2}\n\n{\"c\":3}"]);
        assert_eq!(
            got,
            vec![
                Frame::Data("{\"a\":1}".into()),
                Frame::Data("{\"b\":2}".into()),
                Frame::Data("{\"c\":3}".into())
            ]
        );
    }
}
