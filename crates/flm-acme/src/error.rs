//! The crate's one error type.
//!
//! Every variant carries what a user needs to act on it without reading logs: the URL
//! that could not be reached, the ACME server's own problem document, the domain whose
//! challenge failed, the file that could not be written.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = AcmeError> = std::result::Result<T, E>;

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The configuration is unusable; nothing was sent to the ACME server.
    #[error("invalid ACME configuration: `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field (`contact_email`, `domains`, `directory_url`, …).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The ACME directory could not be fetched (DNS, connection refused, TLS, no answer,
    /// not an ACME directory).
    #[error("ACME directory `{url}` is unreachable: {cause}")]
    DirectoryUnreachable {
        /// The directory URL.
        url: String,
        /// What went wrong, with the underlying cause chain.
        cause: String,
    },
    /// The ACME server could be reached at first, but a later request failed in transit
    /// (connection reset, TLS failure, no answer).
    #[error("request to the ACME server failed: {cause}")]
    Network {
        /// What went wrong, with the underlying cause chain.
        cause: String,
    },
    /// The ACME server refused a request and said why (an RFC 7807 problem document,
    /// e.g. `urn:ietf:params:acme:error:rateLimited`).
    #[error("ACME server rejected the request: {detail} ({problem_type})")]
    Rejected {
        /// The problem `type` URN (`unknown` if the server sent none).
        problem_type: String,
        /// The problem `detail`, with any subproblems appended.
        detail: String,
        /// The HTTP status the server reported, if any.
        status: Option<u16>,
    },
    /// The ACME server could not validate control of a domain.
    #[error("challenge for `{domain}` failed: {reason}")]
    ChallengeFailed {
        /// The identifier whose authorization failed (`*.example.com` for wildcards).
        domain: String,
        /// Why: the server's validation error, or the local step that failed (DNS
        /// provider, missing challenge type).
        reason: String,
    },
    /// The whole issuance did not finish within the configured bound.
    #[error("ACME issuance timed out after {}s while {stage}", after.as_secs())]
    Timeout {
        /// The bound that was exceeded ([`AcmeConfig::timeout`](crate::AcmeConfig::timeout)).
        after: Duration,
        /// What was in progress (`waiting for validation`, …).
        stage: &'static str,
    },
    /// The ACME server answered something this client cannot use (malformed JSON,
    /// missing certificate, unexpected order state).
    #[error("unexpected ACME server behaviour: {0}")]
    Protocol(String),
    /// A file in the state directory could not be read or written.
    #[error("cannot access `{}`: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate the server issued could not be loaded back (it does not match the
    /// key, is not valid yet, …).
    #[error("issued certificate is unusable: {0}")]
    Certificate(#[from] flm_tls::TlsError),
}

impl AcmeError {
    /// Whether trying again later may succeed without the user changing anything.
    ///
    /// Network trouble, timeouts and server-side problems such as rate limits are
    /// transient; configuration errors, failed challenges (the domain does not point
    /// here, the DNS hook is broken) and local file errors need a human.
    pub fn is_transient(&self) -> bool {
        match self {
            AcmeError::DirectoryUnreachable { .. }
            | AcmeError::Network { .. }
            | AcmeError::Timeout { .. } => true,
            AcmeError::Rejected { problem_type, .. } => {
                problem_type.ends_with(":rateLimited")
                    || problem_type.ends_with(":serverInternal")
                    || problem_type.ends_with(":badNonce")
            }
            AcmeError::InvalidConfig { .. }
            | AcmeError::ChallengeFailed { .. }
            | AcmeError::Protocol(_)
            | AcmeError::Io { .. }
            | AcmeError::Certificate(_) => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AcmeError {
        let path = path.into();
        move |source| AcmeError::Io { path, source }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> AcmeError {
        AcmeError::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

/// Renders an error and its whole `source()` chain on one line (`a: b: c`), so causes
/// such as "connection refused" are not lost behind a generic "request failed".
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
