//! Streaming `/v1/responses`: SSE in, Responses events out.
//!
//! [`drive`] reads SSE events from a body and hands each `data:` payload to a
//! [`Convert`], which writes the events to send. Two converters:
//! - [`ChatEvents`] (the bridge): `chat.completion.chunk` events from the chat path
//!   become `response.created`, `response.in_progress`, `response.output_item.added`,
//!   `response.content_part.added`, `response.output_text.delta`…,
//!   `response.output_text.done`, `response.content_part.done`,
//!   `response.output_item.done` (and `response.function_call_arguments.delta` /
//!   `.done` for tool calls), then `response.completed` (`response.incomplete` when
//!   the token limit cut the answer);
//! - [`NativeEvents`] (relay to an engine that serves `/v1/responses`): the engine's
//!   events with the client's model id, numbered by FLM.
//!
//! Either way a stream that breaks ends with an `error` event and `response.failed`,
//! never silently and never with a hang (the ceiling of the inner stream applies).
//! Every event carries a `sequence_number`, counted from 0.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{json, Map, Value};

use super::bridge::{self, Shell};

/// An SSE event without a boundary for this long ends the stream as broken.
const MAX_EVENT_BYTES: usize = 4 << 20;

/// Called with the final response object of a stream that completed.
pub(crate) type OnComplete = Box<dyn FnOnce(&Value) + Send>;

/// Turns the `data:` payloads of one SSE stream into the events to send.
pub(crate) trait Convert: Send + 'static {
    /// Events to send before anything arrived.
    fn begin(&mut self, out: &mut Vec<u8>);
    /// One event's `data` payload.
    fn data(&mut self, data: &str, out: &mut Vec<u8>);
    /// The input ended; `error` says how it broke, if it did.
    fn end(&mut self, error: Option<String>, out: &mut Vec<u8>);
}

/// End of the first complete event in `buf`: (end of the event, start of the next).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn event_data(event: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(event);
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    (!data.is_empty()).then(|| data.join("\n"))
}

/// Runs `conv` over the SSE events of `input`.
pub(crate) fn drive<S, E, C>(
    input: S,
    mut conv: C,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display,
    C: Convert,
{
    struct St<S, C> {
        input: S,
        conv: C,
        buf: Vec<u8>,
        pending: Vec<u8>,
        done: bool,
    }
    let mut pending = Vec::new();
    conv.begin(&mut pending);
    let st = St {
        input,
        conv,
        buf: Vec::new(),
        pending,
        done: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            let mut start = 0;
            while let Some((end, next)) = event_end(&st.buf[start..]) {
                if let Some(d) = event_data(&st.buf[start..start + end]) {
                    st.conv.data(&d, &mut st.pending);
                }
                start += next;
            }
            st.buf.drain(..start);
            if !st.pending.is_empty() {
                let out = std::mem::take(&mut st.pending);
                return Some((Ok(Bytes::from(out)), st));
            }
            if st.done {
                return None;
            }
            match st.input.next().await {
                Some(Ok(chunk)) => {
                    st.buf.extend_from_slice(&chunk);
                    if st.buf.len() > MAX_EVENT_BYTES {
                        st.buf.clear();
                        st.done = true;
                        st.conv.end(
                            Some("an event of the engine's stream exceeds 4 MiB".into()),
                            &mut st.pending,
                        );
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    st.conv.end(Some(e.to_string()), &mut st.pending);
                }
                None => {
                    st.done = true;
                    let rest = std::mem::take(&mut st.buf);
                    if let Some(d) = event_data(&rest) {
                        st.conv.data(&d, &mut st.pending);
                    }
                    st.conv.end(None, &mut st.pending);
                }
            }
        }
    })
}

fn write_event(out: &mut Vec<u8>, event: &Value) {
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(event.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// `(code, message)` of an `{"error":…}` payload.
fn error_of(v: &Value) -> Option<(String, String)> {
    let e = v.get("error").filter(|e| !e.is_null())?;
    let code = e
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("stream_error")
        .to_owned();
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| e.to_string(), str::to_owned);
    Some((code, crate::error::scrub_addresses(&message).into_owned()))
}

struct Message {
    id: String,
    index: usize,
    text: String,
}

struct Call {
    chat_index: u64,
    id: String,
    index: usize,
    call_id: String,
    name: String,
    arguments: String,
}

/// The bridge's converter: chat chunks in, Responses events out.
pub(crate) struct ChatEvents {
    shell: Shell,
    seq: u64,
    next_index: usize,
    message: Option<Message>,
    call: Option<Call>,
    /// Items closed so far, in output order.
    output: Vec<Value>,
    finish: Option<String>,
    usage: Option<Value>,
    finished: bool,
    on_complete: Option<OnComplete>,
}

impl ChatEvents {
    pub(crate) fn new(shell: Shell, on_complete: OnComplete) -> Self {
        Self {
            shell,
            seq: 0,
            next_index: 0,
            message: None,
            call: None,
            output: Vec::new(),
            finish: None,
            usage: None,
            finished: false,
            on_complete: Some(on_complete),
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, fields: Value) {
        let mut m = Map::new();
        m.insert("type".into(), json!(kind));
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        m.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        write_event(out, &Value::Object(m));
    }

    fn open_message(&mut self, out: &mut Vec<u8>) {
        self.close_call(out);
        let m = Message {
            id: bridge::new_id("msg"),
            index: self.next_index,
            text: String::new(),
        };
        self.next_index += 1;
        let item = json!({"id": m.id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": m.index, "item": item}),
        );
        self.emit(
            out,
            "response.content_part.added",
            json!({"item_id": m.id, "output_index": m.index, "content_index": 0, "part": bridge::output_text("")}),
        );
        self.message = Some(m);
    }

    fn close_message(&mut self, out: &mut Vec<u8>) {
        let Some(m) = self.message.take() else {
            return;
        };
        self.emit(
            out,
            "response.output_text.done",
            json!({"item_id": m.id, "output_index": m.index, "content_index": 0, "text": m.text, "logprobs": []}),
        );
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": m.id, "output_index": m.index, "content_index": 0, "part": bridge::output_text(&m.text)}),
        );
        let item = bridge::message_item(&m.id, &m.text, "completed");
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": m.index, "item": item}),
        );
        self.output.push(item);
    }

    fn close_call(&mut self, out: &mut Vec<u8>) {
        let Some(c) = self.call.take() else {
            return;
        };
        self.emit(
            out,
            "response.function_call_arguments.done",
            json!({"item_id": c.id, "output_index": c.index, "name": c.name, "arguments": c.arguments}),
        );
        let item = bridge::call_item(&c.id, &c.call_id, &c.name, &c.arguments, "completed");
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": c.index, "item": item}),
        );
        self.output.push(item);
    }

    fn tool_delta(&mut self, tc: &Value, out: &mut Vec<u8>) {
        let chat_index = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
        let name = tc
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let args = bridge::arguments_string(tc.pointer("/function/arguments"));
        let same = self
            .call
            .as_ref()
            .is_some_and(|c| c.chat_index == chat_index);
        if !same {
            self.close_message(out);
            self.close_call(out);
            let c = Call {
                chat_index,
                id: bridge::new_id("fc"),
                index: self.next_index,
                call_id: tc
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| bridge::new_id("call"), str::to_owned),
                name: name.to_owned(),
                arguments: String::new(),
            };
            self.next_index += 1;
            let item = bridge::call_item(&c.id, &c.call_id, &c.name, "", "in_progress");
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": c.index, "item": item}),
            );
            self.call = Some(c);
        } else if let Some(c) = self.call.as_mut().filter(|c| c.name.is_empty()) {
            c.name = name.to_owned();
        }
        if !args.is_empty() {
            let (id, index) = match self.call.as_mut() {
                Some(c) => {
                    c.arguments.push_str(&args);
                    (c.id.clone(), c.index)
                }
                None => return,
            };
            self.emit(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": args}),
            );
        }
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        if self.output.is_empty() && self.message.is_none() && self.call.is_none() {
            self.open_message(out);
        }
        self.close_message(out);
        self.close_call(out);
        self.finished = true;
        let (status, incomplete) = bridge::status_of(self.finish.as_deref());
        let usage = bridge::usage(self.usage.as_ref());
        let response =
            self.shell
                .object(status, self.output.clone(), usage, incomplete, Value::Null);
        if let Some(f) = self.on_complete.take() {
            f(&response);
        }
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({"response": response}));
    }

    fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.emit(
            out,
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let mut output = self.output.clone();
        if let Some(m) = &self.message {
            output.push(bridge::message_item(&m.id, &m.text, "incomplete"));
        }
        if let Some(c) = &self.call {
            output.push(bridge::call_item(
                &c.id,
                &c.call_id,
                &c.name,
                &c.arguments,
                "incomplete",
            ));
        }
        let usage = bridge::usage(self.usage.as_ref());
        let response = self.shell.object(
            "failed",
            output,
            usage,
            Value::Null,
            json!({"code": code, "message": message}),
        );
        self.emit(out, "response.failed", json!({"response": response}));
    }
}

impl Convert for ChatEvents {
    fn begin(&mut self, out: &mut Vec<u8>) {
        let r = self
            .shell
            .object("in_progress", vec![], Value::Null, Value::Null, Value::Null);
        self.emit(out, "response.created", json!({"response": r}));
        self.emit(out, "response.in_progress", json!({"response": r}));
    }

    fn data(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        if data.trim() == "[DONE]" {
            return self.complete(out);
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return self.fail(
                out,
                "stream_error",
                "the engine sent an event that is not JSON",
            );
        };
        if let Some((code, message)) = error_of(&v) {
            return self.fail(out, &code, &message);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return;
        };
        if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
            if !text.is_empty() {
                if self.message.is_none() {
                    self.open_message(out);
                }
                let (id, index) = match self.message.as_mut() {
                    Some(m) => {
                        m.text.push_str(text);
                        (m.id.clone(), m.index)
                    }
                    None => return,
                };
                self.emit(
                    out,
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}),
                );
            }
        }
        if let Some(calls) = choice
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
        {
            for tc in calls {
                self.tool_delta(tc, out);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_owned());
        }
    }

    fn end(&mut self, error: Option<String>, out: &mut Vec<u8>) {
        match error {
            Some(e) => self.fail(out, "stream_error", &crate::error::scrub_addresses(&e)),
            None if self.finish.is_some() => self.complete(out),
            None => self.fail(
                out,
                "stream_error",
                "the engine's stream ended before the answer was complete",
            ),
        }
    }
}

/// The relay's converter: the engine's Responses events, with the client's model id.
pub(crate) struct NativeEvents {
    shown: super::Shown,
    seq: u64,
    last: Option<Value>,
    finished: bool,
    saw_error: bool,
    error: Option<(String, String)>,
    on_complete: Option<OnComplete>,
}

impl NativeEvents {
    pub(crate) fn new(shown: super::Shown, on_complete: OnComplete) -> Self {
        Self {
            shown,
            seq: 0,
            last: None,
            finished: false,
            saw_error: false,
            error: None,
            on_complete: Some(on_complete),
        }
    }

    fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        if self.finished {
            return;
        }
        self.finished = true;
        if !self.saw_error {
            let ev = json!({"type": "error", "code": code, "message": message, "param": null, "sequence_number": self.seq});
            self.seq += 1;
            write_event(out, &ev);
        }
        let mut response = self
            .last
            .clone()
            .unwrap_or_else(|| json!({"object": "response"}));
        response["status"] = json!("failed");
        response["error"] = json!({"code": code, "message": message});
        let ev =
            json!({"type": "response.failed", "response": response, "sequence_number": self.seq});
        self.seq += 1;
        write_event(out, &ev);
    }
}

impl Convert for NativeEvents {
    fn begin(&mut self, _out: &mut Vec<u8>) {}

    fn data(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.finished || data.trim() == "[DONE]" {
            return;
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            return self.fail(
                out,
                "stream_error",
                "the engine sent an event that is not JSON",
            );
        };
        if let Some((code, message)) = error_of(&v) {
            return self.fail(out, &code, &message);
        }
        // Numbered by FLM: events it adds (a failure) stay in one sequence.
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(r) = v.get_mut("response").filter(|r| r.is_object()) {
            self.shown.apply(r);
            self.last = Some(r.clone());
        }
        match kind.as_str() {
            "response.completed" | "response.incomplete" => {
                self.finished = true;
                if let (Some(f), Some(r)) = (self.on_complete.take(), v.get("response")) {
                    f(r);
                }
            }
            "response.failed" => self.finished = true,
            // The engine's own error event: `response.failed` follows (from the
            // engine, or from [`Convert::end`]).
            "error" => {
                self.saw_error = true;
                self.error = Some((
                    v.get("code")
                        .and_then(Value::as_str)
                        .unwrap_or("stream_error")
                        .to_owned(),
                    v.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("the engine failed")
                        .to_owned(),
                ));
            }
            _ => {}
        }
        write_event(out, &v);
    }

    fn end(&mut self, error: Option<String>, out: &mut Vec<u8>) {
        let (code, message) = match (error, self.error.take()) {
            (Some(e), _) => (
                "stream_error".to_owned(),
                crate::error::scrub_addresses(&e).into_owned(),
            ),
            (None, Some(engine)) => engine,
            (None, None) => (
                "stream_error".to_owned(),
                "the engine's stream ended before the response was complete".to_owned(),
            ),
        };
        self.fail(out, &code, &message);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    fn shell() -> Shell {
        let p = bridge::parse(
            json!({"model": "flm://e/m", "input": "hi"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        Shell::new(&p)
    }

    async fn run(parts: &[&'static str], conv: impl Convert) -> Vec<Value> {
        let input = futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p.as_bytes())))
                .collect::<Vec<_>>(),
        );
        let out: Vec<u8> = drive(input, conv)
            .map(|b| b.unwrap().to_vec())
            .collect::<Vec<_>>()
            .await
            .concat();
        String::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[tokio::test]
    async fn text_and_tool_calls_become_the_event_sequence() {
        let done = Arc::new(Mutex::new(None));
        let d = done.clone();
        let events = run(
            &[
                "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"He\"}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"content\":\"llo\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6}}\n\ndata: [DONE]\n\n",
            ],
            ChatEvents::new(shell(), Box::new(move |r| *d.lock().unwrap() = Some(r.clone()))),
        )
        .await;
        assert_eq!(
            types(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        let last = events.last().unwrap();
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(last["response"]["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(last["response"]["output"][1]["call_id"], "call_1");
        assert_eq!(last["response"]["usage"]["total_tokens"], 10);
        assert_eq!(
            done.lock().unwrap().as_ref().unwrap()["status"],
            "completed"
        );
    }

    #[tokio::test]
    async fn broken_streams_end_failed() {
        let events = run(
            &[
                "data: {\"choices\":[{\"delta\":{\"content\":\"He\"}}]}\n\n",
                "data: {\"error\":{\"code\":\"stream_error\",\"message\":\"engine went away\"}}\n\ndata: [DONE]\n\n",
            ],
            ChatEvents::new(shell(), Box::new(|_| panic!("not completed"))),
        )
        .await;
        let t = types(&events);
        assert_eq!(&t[t.len() - 2..], ["error", "response.failed"]);
        assert_eq!(
            events.last().unwrap()["response"]["error"]["message"],
            "engine went away"
        );
        // Cut without [DONE] nor finish_reason: failed too.
        let events = run(
            &["data: {\"choices\":[{\"delta\":{\"content\":\"He\"}}]}\n\n"],
            ChatEvents::new(shell(), Box::new(|_| panic!("not completed"))),
        )
        .await;
        assert_eq!(types(&events).last(), Some(&"response.failed"));
        // Native: the engine's events pass with the client's model; a cut ends failed.
        let events = run(
            &["event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"m\",\"status\":\"in_progress\"}}\n\n"],
            NativeEvents::new(
                super::super::Shown {
                    model: "flm://e/m".into(),
                    previous_response_id: None,
                    store: true,
                    instructions: Value::Null,
                },
                Box::new(|_| panic!("not completed")),
            ),
        )
        .await;
        assert_eq!(
            types(&events),
            ["response.created", "error", "response.failed"]
        );
        assert_eq!(events[0]["response"]["model"], "flm://e/m");
        assert_eq!(events[2]["sequence_number"], 2);
        assert_eq!(events[2]["response"]["id"], "resp_1");
    }
}
