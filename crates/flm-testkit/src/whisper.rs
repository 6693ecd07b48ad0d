//! Spawning the **real** whisper.cpp `whisper-server` for tests.
//!
//! The binary, the vocabulary-only test model and the sample `jfk.wav` come from
//! `scripts/setup-whisper-server.sh` (whisper.cpp as vendored in the `pywhispercpp`
//! sdist on PyPI). Tests find them through `FLM_WHISPER_SERVER`, `FLM_WHISPER_MODEL` and
//! `FLM_WHISPER_SAMPLE` (set by `scripts/test.sh`), or in the default cache
//! `~/.cache/flm`. The test model has no weights: every transcription is empty text,
//! which is enough to prove routes, relays and errors.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary, model and sample a test needs.
#[derive(Debug, Clone)]
pub struct WhisperAssets {
    /// `whisper-server`.
    pub binary: PathBuf,
    /// `for-tests-ggml-tiny.bin`.
    pub model: PathBuf,
    /// `jfk.wav` (16 kHz mono, 11 s).
    pub sample: PathBuf,
}

fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("FLM_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache").join("flm")))
}

fn latest_binary(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("whisper-server-") && !n.ends_with(".tmp"))
                && p.is_file()
        })
        .collect();
    found.sort();
    found.pop()
}

/// Where the assets are. `Ok(None)`: `FLM_WHISPER_SERVER` is not set and the cache has
/// none (the caller skips, loudly). `Err`: the variables are set but point at nothing
/// (the caller fails).
pub fn assets() -> Result<Option<WhisperAssets>, String> {
    let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let cache = cache_dir();
    let from_env = env("FLM_WHISPER_SERVER");
    let explicit = from_env.is_some();
    let binary = from_env.or_else(|| cache.as_deref().and_then(latest_binary));
    let Some(binary) = binary else {
        return Ok(None);
    };
    let model = env("FLM_WHISPER_MODEL").or_else(|| {
        cache
            .as_ref()
            .map(|c| c.join("models").join("for-tests-ggml-tiny.bin"))
    });
    let sample = env("FLM_WHISPER_SAMPLE")
        .or_else(|| cache.as_ref().map(|c| c.join("samples").join("jfk.wav")));
    let (Some(model), Some(sample)) = (model, sample) else {
        return Err("FLM_WHISPER_MODEL / FLM_WHISPER_SAMPLE are not set".into());
    };
    for p in [&binary, &model, &sample] {
        if !p.is_file() {
            let how = if explicit {
                "FLM_WHISPER_* point at a missing file"
            } else {
                "the cache is incomplete"
            };
            return Err(format!(
                "{} does not exist ({how}): run scripts/setup-whisper-server.sh",
                p.display()
            ));
        }
    }
    Ok(Some(WhisperAssets {
        binary,
        model,
        sample,
    }))
}

/// A running `whisper-server`, killed on drop.
#[derive(Debug)]
pub struct WhisperServer {
    child: Child,
    port: u16,
}

impl WhisperServer {
    /// Starts `whisper-server` with the test model on a free port (its default
    /// `/inference` path) and waits until `/health` answers 200 (at most 30 s).
    pub fn start(assets: &WhisperAssets) -> io::Result<Self> {
        let port = crate::llama::free_port()?;
        let child = Command::new(&assets.binary)
            .arg("-m")
            .arg(&assets.model)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "-t",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(200) = http_status(port, "/health") {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(io::Error::other(format!(
                    "whisper-server exited at start ({status})"
                )));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        server.kill();
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "whisper-server did not become healthy",
        ))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WhisperServer {
    fn drop(&mut self) {
        self.kill();
    }
}

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
