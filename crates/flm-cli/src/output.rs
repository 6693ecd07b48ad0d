//! Printing results: the JSON envelope or human text, and errors in both forms.

use std::borrow::Cow;
use std::io::Write;

use flm_core::{CoreError, RepoError, ENVELOPE_VERSION};
use serde::Serialize;
use serde_json::json;

use crate::cli::Format;

/// An error as the CLI reports it: stable code, one clear message, exit code.
#[derive(Debug)]
pub struct CliError {
    /// Error code (spec 20-cli §3.3), or the code a server answered with.
    pub code: Cow<'static, str>,
    /// English message.
    pub message: String,
    /// Process exit code.
    pub exit: i32,
    /// Structured details (`error.details` of the JSON envelope), e.g. every field
    /// error of an invalid policy.
    pub details: Option<serde_json::Value>,
}

impl CliError {
    /// A user error (exit 1).
    pub fn user(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code: Cow::Borrowed(code),
            message: message.into(),
            exit: 1,
            details: None,
        }
    }

    /// An internal error (exit 2).
    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code: Cow::Borrowed(code),
            message: message.into(),
            exit: 2,
            details: None,
        }
    }
}

impl CliError {
    /// The same error with structured `details`.
    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// An error whose code comes from a server (the admin API, the proxy).
    pub fn remote(code: impl Into<String>, message: impl Into<String>, exit: i32) -> Self {
        Self {
            code: Cow::Owned(code.into()),
            message: message.into(),
            exit,
            details: None,
        }
    }
}

impl From<CoreError> for CliError {
    fn from(e: CoreError) -> Self {
        Self {
            code: Cow::Borrowed(e.code()),
            message: e.to_string(),
            exit: e.exit_code(),
            details: None,
        }
    }
}

impl From<RepoError> for CliError {
    fn from(e: RepoError) -> Self {
        CoreError::from(e).into()
    }
}

/// Prints to stdout in the chosen format.
pub struct Printer {
    /// Chosen format.
    pub format: Format,
}

impl Printer {
    /// Prints a success: the envelope in JSON mode, `text` otherwise.
    pub fn success<T: Serialize>(
        &self,
        data: &T,
        text: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        let out = match self.format {
            Format::Json => {
                let v = json!({"version": ENVELOPE_VERSION, "data": data});
                let mut s = serde_json::to_string(&v).map_err(|e| {
                    CliError::internal("INTERNAL", format!("cannot encode the result: {e}"))
                })?;
                s.push('\n');
                s
            }
            Format::Text => {
                let mut s = text();
                if !s.ends_with('\n') {
                    s.push('\n');
                }
                s
            }
        };
        write_stdout(&out)
    }

    /// Prints an error: the error envelope on stdout in JSON mode, one line on stderr
    /// otherwise.
    pub fn error(&self, e: &CliError) {
        match self.format {
            Format::Json => {
                let mut v = json!({"error": {"code": e.code.as_ref(), "message": e.message}});
                if let Some(d) = &e.details {
                    v["error"]["details"] = d.clone();
                }
                let _ = write_stdout(&format!("{v}\n"));
            }
            Format::Text => {
                let _ = writeln!(std::io::stderr(), "error: {} [{}]", e.message, e.code);
            }
        }
    }
}

pub(crate) fn write_stdout(s: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`flm … | head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::internal(
            "IO_ERROR",
            format!("cannot write to stdout: {e}"),
        )),
    }
}

/// Renders a left-aligned table with a header row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}
