//! DNS-01: the [`DnsProvider`] port and its two implementations.
//!
//! - [`HookDnsProvider`] runs an external program, so any DNS host can be driven by a
//!   small script (the `--lego-path` slot of spec 20-cli §4.3).
//! - [`ChallTestSrvDnsProvider`] drives `pebble-challtestsrv`, the DNS server pebble
//!   queries in tests.
//!
//! A Cloudflare provider (spec 20-cli §4.10 `flm secrets dns`) would be a third
//! implementation; it needs the keyring and lives with the integrator.

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::MAX_PROPAGATION_WAIT;

/// A DNS provider failed to create or delete a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DnsError(pub String);

impl DnsError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        DnsError(message.into())
    }
}

/// Creates and deletes the `_acme-challenge` TXT records of DNS-01 (RFC 8555 §8.4).
///
/// Contract for implementations:
/// - `name` is the absolute record name **with** its trailing dot, e.g.
///   `_acme-challenge.example.com.`; the same name serves `example.com` and
///   `*.example.com`.
/// - [`set_txt`](DnsProvider::set_txt) **adds** `value`; it must keep other values of
///   the same name, because a certificate for `example.com` + `*.example.com` needs two
///   TXT values on one name at once. Returns once the provider accepted the record.
/// - [`remove_txt`](DnsProvider::remove_txt) deletes that value (removing every value
///   of the name is tolerated). It is called after the issuance, successful or not;
///   an error there is logged, not fatal.
/// - Neither call retries forever: the caller bounds them with the issuance timeout.
#[async_trait]
pub trait DnsProvider: Send + Sync + fmt::Debug {
    /// Adds a TXT record `name` = `value`.
    async fn set_txt(&self, name: &str, value: &str) -> Result<(), DnsError>;

    /// Deletes the TXT record `name` = `value`.
    async fn remove_txt(&self, name: &str, value: &str) -> Result<(), DnsError>;

    /// How long to wait after all records are set before asking the CA to validate, so
    /// the records have reached every authoritative server. Clamped to
    /// [`MAX_PROPAGATION_WAIT`] (120 s) and added to the issuance timeout. Default:
    /// no wait (a provider whose `set_txt` returns only once the record is live).
    fn propagation_wait(&self) -> Duration {
        Duration::ZERO
    }
}

// === impl HookDnsProvider ===

/// Runs an external program for each record. The contract:
///
/// ```text
/// <command> set    <name> <value>     # add TXT <name> = <value>, keep other values
/// <command> remove <name> <value>     # delete that value
/// ```
///
/// - `<name>` is absolute with a trailing dot (`_acme-challenge.example.com.`), `<value>`
///   is the 43-character base64url TXT content. Both are single `argv` entries (no
///   shell is involved, nothing is interpolated).
/// - Exit status 0 means done; anything else is a failure, and the first 500 bytes of
///   standard error are reported. Standard input is empty; standard output is ignored.
/// - Each call may take at most [`HookDnsProvider::HOOK_TIMEOUT`] (60 s); the process is
///   killed after that or when the issuance is abandoned.
/// - After the last `set`, FLM waits [`propagation_wait`](HookDnsProvider::propagation_wait)
///   (default 30 s, at most 120 s). A hook that itself waits until the record is
///   visible can set it to zero.
#[derive(Debug, Clone)]
pub struct HookDnsProvider {
    /// The program to run.
    pub command: PathBuf,
    /// Wait after the records are set ([`HookDnsProvider::DEFAULT_PROPAGATION_WAIT`]).
    pub propagation_wait: Duration,
}

impl HookDnsProvider {
    /// Bound on one hook invocation.
    pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default propagation wait: long enough for the usual DNS hosting APIs (which
    /// publish within seconds) to reach their secondaries, short enough to stay well
    /// inside the 120 s of spec 30-proxy §10.3.
    pub const DEFAULT_PROPAGATION_WAIT: Duration = Duration::from_secs(30);

    /// A hook provider running `command`, with the default propagation wait.
    pub fn new(command: impl Into<PathBuf>) -> Self {
        HookDnsProvider {
            command: command.into(),
            propagation_wait: Self::DEFAULT_PROPAGATION_WAIT,
        }
    }

    /// Sets the propagation wait (clamped to 120 s when used).
    pub fn with_propagation_wait(mut self, wait: Duration) -> Self {
        self.propagation_wait = wait;
        self
    }

    async fn run(&self, verb: &str, name: &str, value: &str) -> Result<(), DnsError> {
        let shown = format!("`{} {verb} {name} …`", self.command.display());
        let child = tokio::process::Command::new(&self.command)
            .arg(verb)
            .arg(name)
            .arg(value)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DnsError::new(format!("cannot run DNS hook {shown}: {e}")))?;
        let output = tokio::time::timeout(Self::HOOK_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                DnsError::new(format!(
                    "DNS hook {shown} did not finish within {}s (killed)",
                    Self::HOOK_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| DnsError::new(format!("DNS hook {shown} failed: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = truncate(stderr.trim(), 500);
        Err(DnsError::new(format!(
            "DNS hook {shown} exited with {}{}",
            output.status,
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        )))
    }
}

#[async_trait]
impl DnsProvider for HookDnsProvider {
    async fn set_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        self.run("set", name, value).await
    }

    async fn remove_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        self.run("remove", name, value).await
    }

    fn propagation_wait(&self) -> Duration {
        self.propagation_wait
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// === impl ChallTestSrvDnsProvider ===

/// Drives `pebble-challtestsrv`'s management API (tests and local pebble setups):
/// `POST {management_url}/set-txt {"host":…,"value":…}` and
/// `POST {management_url}/clear-txt {"host":…}`.
///
/// `clear-txt` removes every value of the name, which the [`DnsProvider`] contract
/// tolerates. Records are live at once, so there is no propagation wait.
#[derive(Debug, Clone)]
pub struct ChallTestSrvDnsProvider {
    /// Base URL of the management API, e.g. `http://127.0.0.1:8055`.
    pub management_url: String,
    client: reqwest::Client,
}

impl ChallTestSrvDnsProvider {
    /// Bound on one management call.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// A provider for the challtestsrv at `management_url`.
    pub fn new(management_url: impl Into<String>) -> Result<Self, DnsError> {
        let client = reqwest::Client::builder()
            .timeout(Self::REQUEST_TIMEOUT)
            .build()
            .map_err(|e| DnsError::new(format!("cannot build HTTP client: {e}")))?;
        Ok(ChallTestSrvDnsProvider {
            management_url: management_url.into().trim_end_matches('/').to_owned(),
            client,
        })
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<(), DnsError> {
        let url = format!("{}{path}", self.management_url);
        let rsp = self
            .client
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                DnsError::new(format!("`POST {url}` failed: {}", crate::error::chain(&e)))
            })?;
        let status = rsp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = rsp.text().await.unwrap_or_default();
        Err(DnsError::new(format!(
            "`POST {url}` answered {status}: {}",
            truncate(text.trim(), 500)
        )))
    }
}

#[async_trait]
impl DnsProvider for ChallTestSrvDnsProvider {
    async fn set_txt(&self, name: &str, value: &str) -> Result<(), DnsError> {
        self.post(
            "/set-txt",
            serde_json::json!({ "host": absolute(name), "value": value }),
        )
        .await
    }

    async fn remove_txt(&self, name: &str, _value: &str) -> Result<(), DnsError> {
        self.post("/clear-txt", serde_json::json!({ "host": absolute(name) }))
            .await
    }
}

/// `name` with exactly one trailing dot.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The clamped wait actually used for `provider`.
pub(crate) fn effective_propagation_wait(provider: &dyn DnsProvider) -> Duration {
    provider.propagation_wait().min(MAX_PROPAGATION_WAIT)
}

/// The DNS-01 record name for an authorization's identifier (`example.com` for both
/// `example.com` and `*.example.com`).
pub(crate) fn challenge_record_name(base_domain: &str) -> String {
    format!(
        "_acme-challenge.{}.",
        base_domain.trim_start_matches("*.").trim_end_matches('.')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names() {
        assert_eq!(
            challenge_record_name("example.com"),
            "_acme-challenge.example.com."
        );
        assert_eq!(
            challenge_record_name("*.example.com"),
            "_acme-challenge.example.com."
        );
        assert_eq!(absolute("a.b."), "a.b.");
        assert_eq!(absolute("a.b"), "a.b.");
    }

    #[test]
    fn propagation_wait_is_clamped() {
        let p = HookDnsProvider::new("/bin/true").with_propagation_wait(Duration::from_secs(900));
        assert_eq!(effective_propagation_wait(&p), MAX_PROPAGATION_WAIT);
        let p = HookDnsProvider::new("/bin/true");
        assert_eq!(effective_propagation_wait(&p), Duration::from_secs(30));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
