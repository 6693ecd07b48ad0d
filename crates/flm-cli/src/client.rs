//! Client of the daemon's admin API (spec 30-proxy §12): finding the daemon through
//! its state file, telling a live daemon from a stale file, starting the daemon, and
//! the admin calls. Admin error bodies `{"error":{"code","message"}}` come back as
//! [`CliError`]s with the same code.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flm_core::proxy::{ProxyConfig, ProxyHandle};
use flm_proxy::state_file::{self, DaemonState};
use flm_proxy::StopTarget;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::app::{proxy_log_path, state_file_path};
use crate::output::CliError;
use crate::process::{find_proxy_binary, pid_alive, spawn_daemon};

/// Timeout of the health check (spec 30-proxy §12).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a status poll.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of any other admin request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `flm proxy start` waits for a freshly started daemon.
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A daemon that answered its health check.
pub struct Daemon {
    /// What its state file says.
    pub state: DaemonState,
    /// Where that file is.
    pub state_path: PathBuf,
    http: reqwest::Client,
    base: String,
}

/// `GET /admin/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct DaemonStatus {
    /// Daemon pid.
    pub pid: u32,
    /// Daemon start time.
    pub started_at: String,
    /// Running proxies.
    pub proxies: Vec<ProxyHandle>,
    /// A browser session of the app keeps the daemon up after its last proxy stops.
    #[serde(default)]
    pub app_in_use: bool,
}

/// What the state file led to.
pub enum Lookup {
    /// A live daemon.
    Running(Daemon),
    /// No daemon. `stale` says why a leftover state file was removed, if there was one.
    NotRunning {
        /// Reason a stale state file was removed.
        stale: Option<String>,
    },
}

enum HealthError {
    /// Nothing listens (connection refused / reset).
    Unreachable(String),
    /// Connected, no answer in time.
    Timeout,
    /// Our admin API refused the token (or blocked this address).
    Rejected(String),
    /// Something else answers on that port.
    Foreign(String),
}

/// The messages of an error and of its sources, joined (reqwest's own text alone is
/// "error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

/// The innermost cause of an error ("Connection refused (os error 111)"), for
/// messages that already name the URL.
pub fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A loopback HTTP client that ignores `HTTP_PROXY` and friends.
pub fn loopback_client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| {
            CliError::internal(
                "INTERNAL",
                format!("cannot create an HTTP client: {}", error_chain(&e)),
            )
        })
}

fn daemon_error(message: impl Into<String>) -> CliError {
    CliError::internal("PROXY_DAEMON_ERROR", message)
}

impl Daemon {
    fn new(state: DaemonState, state_path: PathBuf) -> Result<Self, CliError> {
        Ok(Self {
            base: format!("http://127.0.0.1:{}", state.port),
            state,
            state_path,
            http: loopback_client()?,
        })
    }

    async fn health(&self, timeout: Duration) -> Result<(), HealthError> {
        let resp = self
            .http
            .get(format!("{}/admin/health", self.base))
            .bearer_auth(&self.state.token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    HealthError::Timeout
                } else {
                    HealthError::Unreachable(root_cause(&e))
                }
            })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() && body["status"] == "ok" {
            return Ok(());
        }
        match body["error"]["code"].as_str() {
            Some(code @ ("invalid_admin_token" | "ip_blocked" | "forbidden")) => {
                Err(HealthError::Rejected(format!(
                    "{} [{code}]",
                    body["error"]["message"].as_str().unwrap_or("refused")
                )))
            }
            _ => Err(HealthError::Foreign(format!("HTTP {status}"))),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<T, CliError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.state.token)
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                daemon_error(format!(
                    "the proxy daemon (pid {}) did not answer {path} within {} s; see {}",
                    self.state.pid,
                    timeout.as_secs(),
                    self.log_hint()
                ))
            } else {
                daemon_error(format!(
                    "cannot reach the proxy daemon (pid {}) at {}: {}",
                    self.state.pid,
                    self.base,
                    root_cause(&e)
                ))
            }
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| {
            daemon_error(format!(
                "the proxy daemon broke off its answer to {path}: {}",
                error_chain(&e)
            ))
        })?;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let exit = if status.is_server_error() { 2 } else { 1 };
            return Err(
                match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
                    (Some(code), Some(message)) => CliError::remote(code, message, exit),
                    _ => daemon_error(format!(
                        "unexpected answer from the proxy daemon to {path}: HTTP {status} {}",
                        String::from_utf8_lossy(&bytes)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    )),
                },
            );
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            daemon_error(format!(
                "unexpected answer from the proxy daemon to {path}: {e}"
            ))
        })
    }

    fn log_hint(&self) -> String {
        self.state_path
            .parent()
            .and_then(Path::parent)
            .map(|d| proxy_log_path(d).display().to_string())
            .unwrap_or_else(|| "the daemon log".into())
    }

    /// `GET /admin/status`.
    pub async fn status(&self) -> Result<DaemonStatus, CliError> {
        self.call(reqwest::Method::GET, "/admin/status", None, STATUS_TIMEOUT)
            .await
    }

    /// `POST /admin/start`.
    pub async fn start(&self, config: &ProxyConfig) -> Result<ProxyHandle, CliError> {
        let body = serde_json::to_value(config).map_err(|e| {
            CliError::internal("INTERNAL", format!("cannot encode the config: {e}"))
        })?;
        self.call(
            reqwest::Method::POST,
            "/admin/start",
            Some(body),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `POST /admin/stop`; waits as long as the graceful shutdown may take.
    pub async fn stop(
        &self,
        target: &StopTarget,
        grace: Duration,
    ) -> Result<Vec<ProxyHandle>, CliError> {
        #[derive(Deserialize)]
        struct Stopped {
            #[serde(default)]
            stopped: Vec<ProxyHandle>,
        }
        let body = serde_json::to_value(target).map_err(|e| {
            CliError::internal("INTERNAL", format!("cannot encode the target: {e}"))
        })?;
        let r: Stopped = self
            .call(
                reqwest::Method::POST,
                "/admin/stop",
                Some(body),
                REQUEST_TIMEOUT + grace,
            )
            .await?;
        Ok(r.stopped)
    }

    /// `POST /admin/ui/login-code`: a one-time login URL of the app.
    pub async fn ui_login_url(&self) -> Result<String, CliError> {
        #[derive(Deserialize)]
        struct Link {
            url: String,
        }
        let l: Link = self
            .call(
                reqwest::Method::POST,
                "/admin/ui/login-code",
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(l.url)
    }

    /// `POST /admin/reload` (`flm proxy reload`).
    pub async fn reload(
        &self,
        target: &StopTarget,
    ) -> Result<Vec<flm_proxy::ReloadOutcome>, CliError> {
        #[derive(Deserialize)]
        struct Reloaded {
            #[serde(default)]
            reloaded: Vec<flm_proxy::ReloadOutcome>,
        }
        let body = serde_json::to_value(target).map_err(|e| {
            CliError::internal("INTERNAL", format!("cannot encode the target: {e}"))
        })?;
        let r: Reloaded = self
            .call(
                reqwest::Method::POST,
                "/admin/reload",
                Some(body),
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(r.reloaded)
    }

    /// `POST /admin/reload-keys`.
    pub async fn reload_keys(&self) -> Result<(), CliError> {
        let _: Value = self
            .call(
                reqwest::Method::POST,
                "/admin/reload-keys",
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// `POST /admin/reload-security`: the daemon re-reads the security policy and
    /// reconciles its in-memory IP blocklist with `ip_blocklist`.
    pub async fn reload_security(&self) -> Result<(), CliError> {
        let _: Value = self
            .call(
                reqwest::Method::POST,
                "/admin/reload-security",
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// Waits until the daemon process is gone (at most `timeout`); removes the state
    /// file if the daemon left it behind. Returns whether it exited.
    pub async fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while pid_alive(self.state.pid) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        remove_if_same(&self.state_path, &self.state);
        true
    }
}

/// Removes the state file if it still describes `state` (a newer daemon may have
/// replaced it meanwhile).
fn remove_if_same(path: &Path, state: &DaemonState) {
    if let Ok(Some(now)) = state_file::read(path) {
        if now.pid == state.pid && now.token == state.token {
            let _ = state_file::remove(path);
        }
    }
}

/// Finds the daemon of `data_dir`. A state file whose daemon is gone (dead pid,
/// nothing listening, something else listening) is removed and reported as stale.
pub async fn find(data_dir: &Path) -> Result<Lookup, CliError> {
    let path = state_file_path(data_dir);
    let state = match state_file::read(&path) {
        Ok(None) => return Ok(Lookup::NotRunning { stale: None }),
        Ok(Some(s)) => s,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            let _ = state_file::remove(&path);
            return Ok(Lookup::NotRunning {
                stale: Some(format!("removed an unreadable state file: {e}")),
            });
        }
        Err(e) => {
            return Err(CliError::internal(
                "IO_ERROR",
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    let stale = |why: String| {
        remove_if_same(&path, &state);
        Ok(Lookup::NotRunning {
            stale: Some(format!(
                "removed the stale state file of a proxy daemon that is no longer running (pid {}: {why})",
                state.pid
            )),
        })
    };
    if !pid_alive(state.pid) {
        return stale("process gone".into());
    }
    let daemon = Daemon::new(state.clone(), path.clone())?;
    match daemon.health(HEALTH_TIMEOUT).await {
        Ok(()) => Ok(Lookup::Running(daemon)),
        Err(HealthError::Unreachable(why)) => stale(format!(
            "nothing answers on 127.0.0.1:{}: {why}",
            state.port
        )),
        Err(HealthError::Foreign(why)) => stale(format!(
            "another program answers on 127.0.0.1:{} ({why})",
            state.port
        )),
        Err(HealthError::Timeout) => Err(daemon_error(format!(
            "the proxy daemon (pid {}) does not answer on 127.0.0.1:{} within {} s; stop it (`kill {}`) and retry",
            state.pid,
            state.port,
            HEALTH_TIMEOUT.as_secs(),
            state.pid
        ))),
        Err(HealthError::Rejected(why)) => Err(daemon_error(format!(
            "the proxy daemon (pid {}) refused the token of {}: {why}; stop it (`kill {}`) and retry",
            state.pid,
            path.display(),
            state.pid
        ))),
    }
}

/// Starts a daemon for `data_dir` (after [`find`] found none) and waits until it
/// answers (at most [`DAEMON_START_TIMEOUT`]). A daemon that fails reports the error
/// it logged.
pub async fn start_daemon(data_dir: &Path) -> Result<Daemon, CliError> {
    let binary = find_proxy_binary()?;
    let log = proxy_log_path(data_dir);
    let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut child = spawn_daemon(&binary, data_dir)?;
    let path = state_file_path(data_dir);
    let deadline = Instant::now() + DAEMON_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Another CLI may have started a daemon at the same moment: use it.
            if let Lookup::Running(d) = find(data_dir).await? {
                return Ok(d);
            }
            return Err(daemon_failed(
                &log,
                log_start,
                &format!("exited ({status})"),
            ));
        }
        if let Ok(Some(state)) = state_file::read(&path) {
            let ours = state.pid == child.id();
            let d = Daemon::new(state, path.clone())?;
            if d.health(Duration::from_secs(2)).await.is_ok() {
                if !ours {
                    // Another CLI started a daemon at the same moment and its state
                    // file won: use that one, ours would only idle.
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Ok(d);
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(daemon_failed(
                &log,
                log_start,
                &format!(
                    "did not come up within {} s",
                    DAEMON_START_TIMEOUT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Error for a daemon that failed to start, with the error it logged, if any.
fn daemon_failed(log: &Path, from: u64, what: &str) -> CliError {
    let logged = last_logged_error(log, from);
    match logged {
        Some((code, message)) => {
            let exit = if code == "PROXY_DAEMON_ERROR"
                || code.starts_with("DB_")
                || code == "IO_ERROR"
                || code == "MIGRATION_FAILED"
                || code == "INTERNAL"
            {
                2
            } else {
                1
            };
            CliError::remote(
                code,
                format!(
                    "the proxy daemon {what}: {message} (log: {})",
                    log.display()
                ),
                exit,
            )
        }
        None => daemon_error(format!("the proxy daemon {what}; see {}", log.display())),
    }
}

/// `(code, message)` of the last ERROR line written to the log after offset `from`.
fn last_logged_error(log: &Path, from: u64) -> Option<(String, String)> {
    let mut f = std::fs::File::open(log).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    f.take(1 << 20).read_to_string(&mut text).ok()?;
    text.lines().rev().find_map(|line| {
        let v: Value = serde_json::from_str(line).ok()?;
        if v["level"] != "ERROR" {
            return None;
        }
        let message = v["fields"]["message"].as_str()?.to_owned();
        let code = v["fields"]["code"]
            .as_str()
            .unwrap_or("PROXY_DAEMON_ERROR")
            .to_owned();
        Some((code, message))
    })
}
