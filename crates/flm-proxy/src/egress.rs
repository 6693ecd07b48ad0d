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

/// One SOCKS5 greeting offering "no authentication" (RFC 1928 §3).
async fn handshake(endpoint: &str) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(endpoint)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    s.write_all(&[0x05, 0x01, 0x00])
        .await
        .map_err(|e| format!("cannot send the SOCKS5 greeting: {e}"))?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply)
        .await
        .map_err(|e| format!("no SOCKS5 answer: {e}"))?;
    match reply {
        [0x05, 0x00] => Ok(()),
        [0x05, 0xff] => Err(
            "the SOCKS5 server requires authentication; only anonymous SOCKS5 is supported".into(),
        ),
        other => Err(format!(
            "not a SOCKS5 server (answered {:02x} {:02x})",
            other[0], other[1]
        )),
    }
}

/// Checks that `endpoint` (`host:port`) speaks anonymous SOCKS5, trying up to
/// `attempts` times; the error names the last failure.
pub async fn check_socks5(endpoint: &str, attempts: u32) -> Result<(), String> {
    let mut last = String::from("not tried");
    for i in 0..attempts.max(1) {
        if i > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        match tokio::time::timeout(ATTEMPT_TIMEOUT, handshake(endpoint)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
        }
        tracing::debug!(endpoint, attempt = i + 1, error = %last, "SOCKS5 handshake failed");
    }
    Err(format!("{last} after {attempts} attempts"))
}
