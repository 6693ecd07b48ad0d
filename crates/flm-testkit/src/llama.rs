//! Spawning the **real** llama.cpp `llama-server` for tests.
//!
//! The binary and the tiny models come from `scripts/setup-llama-server.sh`, which
//! builds llama-server from the llama.cpp sources in the `llama-cpp-python` sdist and
//! writes random-weight GGUF models. Tests find them through `FLM_LLAMA_SERVER` and
//! `FLM_TINY_MODELS` (set by `scripts/test.sh`), or in the default cache
//! `~/.cache/flm`.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which tiny model to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TinyModel {
    /// `tiny-llama.gguf` (chat, alias `tiny-llama`).
    Chat,
    /// `tiny-bert.gguf` (embeddings, alias `tiny-bert`, started with `--embeddings`).
    Embeddings,
}

/// A running `llama-server` child process, killed on drop.
#[derive(Debug)]
pub struct LlamaServer {
    child: Child,
    port: u16,
    fifo: Option<PathBuf>,
}

fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("FLM_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache").join("flm")))
}

/// Path of the llama-server binary, if it was built.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLM_LLAMA_SERVER") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let dir = cache_dir()?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("llama-server-") && !n.ends_with(".tmp"))
                && p.is_file()
        })
        .collect();
    found.sort();
    found.pop()
}

/// Directory of the tiny GGUF models, if they were generated.
pub fn models_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FLM_TINY_MODELS")
        .map(PathBuf::from)
        .or_else(|| cache_dir().map(|c| c.join("models")))?;
    dir.join("tiny-llama.gguf").is_file().then_some(dir)
}

/// Whether the real llama-server and its models are available.
pub fn available() -> bool {
    binary().is_some() && models_dir().is_some()
}

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn missing() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "llama-server or the tiny models are missing: run scripts/setup-llama-server.sh \
         (or set FLM_LLAMA_SERVER and FLM_TINY_MODELS)",
    )
}

impl LlamaServer {
    /// Starts llama-server serving `model` on a free port and waits until `/health`
    /// answers 200 (at most 60 s).
    pub fn start(model: TinyModel) -> io::Result<Self> {
        Self::start_with_args(model, &[])
    }

    /// [`LlamaServer::start`] with extra llama-server arguments, e.g. `--override-kv
    /// tokenizer.ggml.fim_pre_token_id=int:3` (and `fim_suf`, `fim_mid`) to give the
    /// tiny model fill-in-the-middle tokens for `/infill`.
    pub fn start_with_args(model: TinyModel, args: &[&str]) -> io::Result<Self> {
        let models = models_dir().ok_or_else(missing)?;
        let (file, alias) = match model {
            TinyModel::Chat => ("tiny-llama.gguf", "tiny-llama"),
            TinyModel::Embeddings => ("tiny-bert.gguf", "tiny-bert"),
        };
        let mut extra: Vec<String> = vec!["-np".into(), "1".into()];
        if model == TinyModel::Embeddings {
            extra.push("--embeddings".into());
        }
        extra.extend(args.iter().map(|a| (*a).to_owned()));
        let server = Self::spawn(&models.join(file), alias, &extra, None)?;
        server.wait_healthy(Duration::from_secs(60))?;
        Ok(server)
    }

    /// Starts a llama-server that stays in its "Loading model" state: the model path
    /// is a FIFO nobody writes to, so loading blocks while the HTTP server already
    /// answers `503 Loading model`. Unix only.
    #[cfg(unix)]
    pub fn start_loading() -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "flm-llama-fifo-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        let fifo = dir.join("loading.gguf");
        let status = Command::new("mkfifo").arg(&fifo).status()?;
        if !status.success() {
            return Err(io::Error::other("mkfifo failed"));
        }
        let server = Self::spawn(&fifo, "loading", &[], Some(dir))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(503) = http_status(server.port, "/health") {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "llama-server did not start listening",
        ))
    }

    fn spawn(
        model: &Path,
        alias: &str,
        extra: &[String],
        fifo: Option<PathBuf>,
    ) -> io::Result<Self> {
        let bin = binary().ok_or_else(missing)?;
        let port = free_port()?;
        let child = Command::new(bin)
            .arg("-m")
            .arg(model)
            .args([
                "-a",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["-c", "256", "-t", "1", "--metrics"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self { child, port, fifo })
    }

    /// Polls `/health` until it answers 200.
    pub fn wait_healthy(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(200) = http_status(self.port, "/health") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "llama-server did not become healthy",
        ))
    }

    /// Port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process now (e.g. to simulate an engine that goes away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = self.fifo.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Minimal blocking HTTP/1.0 GET returning the status code (no client dependency).
fn http_status(port: u16, path: &str) -> io::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("bad HTTP answer"))
}
