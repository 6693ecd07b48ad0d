//! Egress checks (spec 30-proxy §11): before a proxy starts with a Tor/SOCKS5 egress,
//! the endpoint must complete an anonymous SOCKS5 handshake.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Handshake attempts at start (spec 30-proxy §11).
pub const START_ATTEMPTS: u32 = 3;

/// Bound of one attempt (connect + greeting).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Why a SOCKS5 check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// Nothing usable answered (refused, timed out, closed): worth retrying.
    Unreachable(String),
    /// Something answered, but not an anonymous SOCKS5 server (an HTTP server, a
    /// SOCKS5 server demanding authentication…): retrying cannot help.
    NotSocks5(String),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Unreachable(m) | CheckError::NotSocks5(m) => f.write_str(m),
        }
    }
}

/// One SOCKS5 greeting offering "no authentication" (RFC 1928 §3).
async fn handshake(endpoint: &str) -> Result<(), CheckError> {
    let mut s = tokio::net::TcpStream::connect(endpoint)
        .await
        .map_err(|e| CheckError::Unreachable(format!("cannot connect: {e}")))?;
    s.write_all(&[0x05, 0x01, 0x00])
        .await
        .map_err(|e| CheckError::Unreachable(format!("cannot send the SOCKS5 greeting: {e}")))?;
    let mut reply = [0u8; 2];
    match tokio::time::timeout(ATTEMPT_TIMEOUT, s.read_exact(&mut reply)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(CheckError::Unreachable(format!(
                "the connection was accepted but closed without a SOCKS5 answer: {e}"
            )))
        }
        Err(_) => {
            return Err(CheckError::NotSocks5(format!(
                "the endpoint accepted the connection but did not answer the SOCKS5 greeting within {} s: it did not speak SOCKS5",
                ATTEMPT_TIMEOUT.as_secs()
            )))
        }
    }
    match reply {
        [0x05, 0x00] => Ok(()),
        [0x05, 0xff] => Err(CheckError::NotSocks5(
            "the SOCKS5 server requires authentication; only anonymous SOCKS5 is supported".into(),
        )),
        other => {
            let shown = if other.iter().all(|b| b.is_ascii_graphic()) {
                format!(" `{}`", String::from_utf8_lossy(&other))
            } else {
                String::new()
            };
            let http = if &other == b"HT" {
                " (an HTTP server?)"
            } else {
                ""
            };
            Err(CheckError::NotSocks5(format!(
                "the endpoint did not speak SOCKS5: it answered the greeting with bytes {:02x} {:02x}{shown}{http}",
                other[0], other[1]
            )))
        }
    }
}

/// Checks that `endpoint` (`host:port`) speaks anonymous SOCKS5, trying up to
/// `attempts` times while it is unreachable; an endpoint that answers but is not
/// SOCKS5 fails at once. The error names the last failure.
pub async fn check_socks5(endpoint: &str, attempts: u32) -> Result<(), CheckError> {
    let mut last = String::from("not tried");
    for i in 0..attempts.max(1) {
        if i > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        match tokio::time::timeout(ATTEMPT_TIMEOUT * 2, handshake(endpoint)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(CheckError::NotSocks5(e))) => return Err(CheckError::NotSocks5(e)),
            Ok(Err(CheckError::Unreachable(e))) => last = e,
            Err(_) => last = format!("no answer within {} s", (ATTEMPT_TIMEOUT * 2).as_secs()),
        }
        tracing::debug!(endpoint, attempt = i + 1, error = %last, "SOCKS5 handshake failed");
    }
    Err(CheckError::Unreachable(format!(
        "{last} after {attempts} attempts"
    )))
}
