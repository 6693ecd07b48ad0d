//! Shared helpers of the end-to-end tests: an isolated environment per test and
//! running the real `flm` binary in it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flm_testkit::llama::{LlamaServer, TinyModel};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};

/// An isolated environment: its own data dir, HOME and PATH, and every default
/// engine address pointed at a closed port so nothing on this machine leaks in.
pub struct Env {
    pub dir: TempDir,
    pub vars: Vec<(String, String)>,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
}

pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Env {
    pub fn new() -> Self {
        let dir = TempDir::new().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let mut env = Self {
            dir,
            vars: Vec::new(),
        };
        let data = env.data_dir().display().to_string();
        env.set("FLM_HOME", &data);
        env.set("HOME", &env.dir.path().join("home").display().to_string());
        env.set("PATH", &env.dir.path().join("bin").display().to_string());
        env.set(
            "OLLAMA_BASE_URL",
            &format!("http://127.0.0.1:{}", closed_port()),
        );
        env.set("VLLM_PORT", &closed_port().to_string());
        env.set("LMSTUDIO_API_HOST", &format!("127.0.0.1:{}", closed_port()));
        env.set("LLAMA_CPP_PORT", &closed_port().to_string());
        env
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn set(&mut self, k: &str, v: &str) {
        self.vars.retain(|(key, _)| key != k);
        self.vars.push((k.to_owned(), v.to_owned()));
    }

    pub async fn flm(&self, args: &[&str]) -> Out {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_flm"));
        cmd.args(args).env_clear();
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .expect("flm finished within 30 s")
            .expect("flm ran");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Out {
            code: out.status.code().unwrap_or(-1),
            json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            stdout,
        }
    }
}

impl Out {
    pub fn ok(self) -> Value {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.json["version"], "1.0", "envelope: {}", self.stdout);
        self.json["data"].clone()
    }

    pub fn err(self, code: &str, exit: i32) -> String {
        assert_eq!(
            self.code, exit,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.json["error"]["code"], code, "stdout: {}", self.stdout);
        assert!(self.json.get("version").is_none(), "errors have no version");
        self.json["error"]["message"].as_str().unwrap().to_owned()
    }
}

pub fn llama(model: TinyModel) -> LlamaServer {
    assert!(
        flm_testkit::llama::available(),
        "the real llama-server is missing: run scripts/setup-llama-server.sh"
    );
    LlamaServer::start(model).expect("llama-server starts")
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    closed_port()
}

impl Env {
    /// `<data>/run/proxy-daemon.json`.
    pub fn state_file(&self) -> PathBuf {
        self.data_dir().join("run").join("proxy-daemon.json")
    }

    /// The daemon state file, parsed.
    pub fn state(&self) -> Option<Value> {
        let bytes = std::fs::read(self.state_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// `flm` as a child with piped output (for `--no-daemon`).
    pub fn spawn_flm(&self, args: &[&str]) -> tokio::process::Child {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_flm"));
        cmd.args(args)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd.spawn().expect("flm starts")
    }

    /// Stops whatever daemon this environment started when dropped, even when the
    /// test failed half-way.
    pub fn guard(&self) -> DaemonGuard {
        DaemonGuard {
            vars: self.vars.clone(),
            state_file: self.state_file(),
        }
    }
}

/// Runs `flm proxy stop` on drop, then kills a daemon that still runs.
pub struct DaemonGuard {
    vars: Vec<(String, String)>,
    state_file: PathBuf,
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let pid = std::fs::read(&self.state_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["pid"].as_u64());
        let Some(pid) = pid else {
            return;
        };
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flm"));
        cmd.args(["proxy", "stop"])
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        if let Ok(mut child) = cmd.spawn() {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if flm_cli::process::pid_alive(pid as u32) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

/// Waits (bounded) until `cond` holds.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client for FLM's own listeners: no system proxy, redirects not followed (the
/// login answers 303), bounded.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A logged-in session of the daemon's app, opened the way `flm ui` opens one: the
/// one-time login URL it prints, followed by a cookie-keeping client.
pub struct AppSession {
    pub http: reqwest::Client,
    /// The app's address (`http://127.0.0.1:<ui port>`).
    pub base: String,
    /// `name=value` of the session cookie.
    pub cookie: String,
    pub csrf: String,
}

impl AppSession {
    /// Starts the daemon if needed and logs in.
    pub async fn open(env: &Env) -> Self {
        let out = env.flm(&["ui", "--no-open", "--format", "json"]).await.ok();
        let url = out["url"].as_str().unwrap().to_owned();
        let base = url.split("/login").next().unwrap().to_owned();
        let http = http_client();
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let s: Value = http
            .get(format!("{base}/api/v1/session"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            csrf: s["csrf_token"].as_str().unwrap().to_owned(),
            http,
            base,
            cookie,
        }
    }

    /// `GET /api/v1{path}`: status and JSON body (`null` when not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /api/v1{path}`, with the CSRF header when `csrf`.
    pub async fn post(&self, path: &str, body: &Value, csrf: bool) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .header("cookie", &self.cookie)
            .json(body);
        if csrf {
            req = req.header("x-flm-csrf", &self.csrf);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert!(r.headers().contains_key("x-request-id"));
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// `flm proxy start --no-daemon` as a child; its stderr (JSON logs) is collected.
pub struct Foreground {
    pub child: tokio::process::Child,
    pub base: String,
    pub key_id: String,
    pub key: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Foreground {
    pub async fn start(env: &Env) -> Self {
        let port = free_port();
        let mut child =
            env.spawn_flm(&["proxy", "start", "--no-daemon", "--port", &port.to_string()]);
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match stderr.next_line().await.unwrap() {
                    Some(l) if l.starts_with("listening on ") => return,
                    Some(_) => continue,
                    None => panic!("flm exited before listening"),
                }
            }
        })
        .await
        .expect("listening within 20 s");
        let started: Value = serde_json::from_str(
            &tokio::time::timeout(Duration::from_secs(5), stdout.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(started["data"]["daemon"], false, "{started}");
        // Keep draining both pipes: a full pipe would stall the proxy's logging.
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = stderr.next_line().await {
                sink.lock().unwrap().push(l);
            }
        });
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            key_id: started["data"]["api_key"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
            key: started["data"]["api_key"]["key"]
                .as_str()
                .unwrap()
                .to_owned(),
            stderr: lines,
        }
    }

    /// SIGTERM, then a clean exit within 15 s.
    pub async fn stop(mut self) {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("stopped within 15 s")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}
