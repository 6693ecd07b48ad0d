//! Installed-binary discovery and the default address of each engine kind.
//!
//! Both read the environment through a lookup function instead of `std::env`, so
//! tests pass their own values and never mutate the process environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flm_core::{EngineId, EngineKind, EngineSource, EngineTarget};

/// Environment lookup (`std::env::var` in production, a map in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment as an [`EnvLookup`].
pub fn process_env() -> EnvLookup {
    Arc::new(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Finds installed engine binaries in known locations (spec 10-engines §4.1).
/// File-system checks only: nothing is executed, so it takes microseconds.
#[derive(Clone)]
pub struct BinaryFinder {
    env: EnvLookup,
}

impl BinaryFinder {
    /// A finder reading `PATH`, `HOME` and the engines' variables from `env`.
    pub fn new(env: EnvLookup) -> Self {
        Self { env }
    }

    /// Path of an installed binary of `kind`, if any.
    pub fn find(&self, kind: EngineKind) -> Option<String> {
        let exe = |name: &str| {
            if cfg!(windows) {
                format!("{name}.exe")
            } else {
                name.to_owned()
            }
        };
        let home = (self.env)("HOME")
            .or_else(|| (self.env)("USERPROFILE"))
            .map(PathBuf::from);
        let mut dirs: Vec<PathBuf> = Vec::new();
        let names: Vec<String> = match kind {
            EngineKind::Ollama => {
                if let Some(h) = (self.env)("OLLAMA_HOME") {
                    dirs.push(PathBuf::from(&h));
                    dirs.push(Path::new(&h).join("bin"));
                }
                dirs.extend(self.path_dirs());
                dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
                if cfg!(target_os = "macos") {
                    dirs.push("/Applications/Ollama.app/Contents/Resources".into());
                }
                if let Some(l) = (self.env)("LOCALAPPDATA") {
                    dirs.push(Path::new(&l).join("Programs").join("Ollama"));
                }
                dirs.push(r"C:\Program Files\Ollama".into());
                vec![exe("ollama")]
            }
            EngineKind::LlamaCpp => {
                if let Some(p) = (self.env)("LLAMA_CPP_PATH") {
                    let p = PathBuf::from(p);
                    if p.is_file() {
                        return Some(p.display().to_string());
                    }
                    dirs.push(p.join("bin"));
                    dirs.push(p);
                }
                dirs.extend(self.path_dirs());
                dirs.extend(
                    ["/usr/local/bin", "/usr/bin", "/opt/llama.cpp/bin"].map(PathBuf::from),
                );
                if let Some(h) = &home {
                    dirs.push(h.join(".local").join("bin"));
                }
                dirs.push(r"C:\Program Files\llama.cpp".into());
                dirs.push(r"C:\Program Files (x86)\llama.cpp".into());
                ["llama-server", "llama-cpp-server", "llama-cli"]
                    .map(exe)
                    .to_vec()
            }
            EngineKind::Vllm => {
                dirs.extend(self.path_dirs());
                if let Some(h) = &home {
                    dirs.push(h.join(".local").join("bin"));
                }
                vec![exe("vllm")]
            }
            EngineKind::LmStudio => {
                if let Some(h) = &home {
                    dirs.push(h.join(".lmstudio").join("bin"));
                }
                dirs.extend(self.path_dirs());
                if cfg!(target_os = "macos") {
                    dirs.push("/Applications/LM Studio.app/Contents/MacOS".into());
                }
                vec![exe("lms")]
            }
            EngineKind::WhisperCpp => {
                if let Some(p) = (self.env)("WHISPER_CPP_PATH") {
                    let p = PathBuf::from(p);
                    if p.is_file() {
                        return Some(p.display().to_string());
                    }
                    dirs.push(p.join("bin"));
                    dirs.push(p);
                }
                dirs.extend(self.path_dirs());
                dirs.extend(["/usr/local/bin", "/usr/bin"].map(PathBuf::from));
                if let Some(h) = &home {
                    dirs.push(h.join(".local").join("bin"));
                }
                ["whisper-server", "whisper-cpp-server"].map(exe).to_vec()
            }
            EngineKind::OpenAi => return None,
        };
        for dir in dirs {
            for name in &names {
                let candidate = dir.join(name);
                if is_executable(&candidate) {
                    return Some(candidate.display().to_string());
                }
            }
        }
        None
    }

    fn path_dirs(&self) -> Vec<PathBuf> {
        (self.env)("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default()
    }
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Turns `host`, `host:port` or a URL into a base URL, with `default_port` when none
/// is given. A wildcard bind address (`0.0.0.0`, `::`) means "this machine".
fn base_from(raw: &str, default_port: u16) -> String {
    let raw = raw.trim().trim_end_matches('/');
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("http", raw),
    };
    let rest = rest
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    let has_port = if rest.starts_with('[') {
        rest.contains("]:")
    } else {
        rest.contains(':')
    };
    if has_port {
        format!("{scheme}://{rest}")
    } else {
        format!("{scheme}://{rest}:{default_port}")
    }
}

/// Default address of every auto-detected kind, honouring `OLLAMA_BASE_URL` /
/// `OLLAMA_HOST`, `VLLM_HOST` / `VLLM_PORT`, `LMSTUDIO_API_HOST` and `LLAMA_CPP_PORT`.
/// Loopback is addressed as `127.0.0.1`, which avoids a slow IPv6 `localhost` attempt.
pub fn default_targets(env: &EnvLookup) -> Vec<EngineTarget> {
    let ollama = env("OLLAMA_BASE_URL")
        .or_else(|| env("OLLAMA_HOST"))
        .map(|v| base_from(&v, 11434))
        .unwrap_or_else(|| "http://127.0.0.1:11434".into());
    let vllm_port = env("VLLM_PORT")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8000);
    let vllm = format!(
        "http://{}:{vllm_port}",
        env("VLLM_HOST").unwrap_or_else(|| "127.0.0.1".into())
    );
    let lmstudio = env("LMSTUDIO_API_HOST")
        .map(|v| base_from(&v, 1234))
        .unwrap_or_else(|| "http://127.0.0.1:1234".into());
    let llama_port = env("LLAMA_CPP_PORT")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8080);
    let llamacpp = format!("http://127.0.0.1:{llama_port}");
    [
        (EngineKind::Ollama, ollama),
        (EngineKind::Vllm, vllm),
        (EngineKind::LmStudio, lmstudio),
        (EngineKind::LlamaCpp, llamacpp),
    ]
    .into_iter()
    .filter_map(|(kind, base_url)| {
        let id = EngineId::parse(&format!("{}-default", kind.slug())).ok()?;
        Some(EngineTarget {
            id,
            kind,
            base_url,
            source: EngineSource::Default,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvLookup {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Arc::new(move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let t = default_targets(&env(&[]));
        let urls: Vec<&str> = t.iter().map(|t| t.base_url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:11434",
                "http://127.0.0.1:8000",
                "http://127.0.0.1:1234",
                "http://127.0.0.1:8080"
            ]
        );
        let t = default_targets(&env(&[
            ("OLLAMA_HOST", "0.0.0.0:9999"),
            ("VLLM_PORT", "18000"),
            ("LMSTUDIO_API_HOST", "box.lan"),
            ("LLAMA_CPP_PORT", "18080"),
        ]));
        let urls: Vec<&str> = t.iter().map(|t| t.base_url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:9999",
                "http://127.0.0.1:18000",
                "http://box.lan:1234",
                "http://127.0.0.1:18080"
            ]
        );
    }

    #[test]
    fn finds_binaries_on_path_only_when_executable() {
        let dir = std::env::temp_dir().join(format!("flm-disc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("llama-server");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        let finder = BinaryFinder::new(env(&[
            ("PATH", dir.to_str().unwrap()),
            ("HOME", "/nonexistent"),
        ]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(
                finder
                    .find(EngineKind::LlamaCpp)
                    .filter(|p| p.starts_with(dir.to_str().unwrap())),
                None
            );
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(
            finder.find(EngineKind::LlamaCpp),
            Some(bin.display().to_string())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
