//! The app end to end in Debian's Chromium (`ui/e2e/run.mjs`, playwright-core, no
//! browser download) against real parts on loopback: the real llama-server with the
//! tiny chat model, registered as an engine of an isolated FLM home; the real `flm`
//! daemon with a running proxy on a random port and the app on a random port; the
//! login URL printed by `flm ui --no-open`.
//!
//! Before the daemon starts, the audit log gets 10,000 rows through the store's own
//! append API (one hash chain, as the proxy writes it), so the run pages through
//! 10,000 rows in bounded time. Screenshots and `report.json` go to
//! `<target>/tmp/ui-e2e/` (the path is printed).
//!
//! Needs the built app (`scripts/build-ui.sh`: `ui/node_modules` and `ui/dist`), Node
//! and Chromium; `scripts/test.sh` provides all three. A missing one fails the test
//! with the command that fixes it.
#![cfg(unix)] // process groups and signals
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{free_port, llama, Env};
use flm_core::security::{AuditEvent, AuditSeverity};
use flm_testkit::llama::TinyModel;

/// The whole browser run (its own deadline is a little shorter, so that it can
/// close the browser and write its report first).
const RUN_TIMEOUT: Duration = Duration::from_secs(420);
const AUDIT_ROWS: usize = 10_000;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui")
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Node, Chromium, the app's node_modules and build; a clear message when one is missing.
fn prerequisites() -> (PathBuf, PathBuf) {
    let ui = ui_dir();
    let mut missing = Vec::new();
    let node = on_path("node");
    if node.is_none() {
        missing.push("Node.js (>= 20.19) is not on PATH".to_owned());
    }
    for module in ["playwright-core", "axe-core"] {
        if !ui.join("node_modules").join(module).is_dir() {
            missing.push(format!(
                "ui/node_modules/{module} is missing: run scripts/build-ui.sh (npm ci in ui/)"
            ));
        }
    }
    if !ui.join("dist").join("index.html").is_file() {
        missing.push(
            "ui/dist/index.html is missing: run scripts/build-ui.sh, then rebuild flm (it embeds ui/dist)"
                .to_owned(),
        );
    }
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        missing.push(format!(
            "{} is missing: apt-get install chromium (or set CHROMIUM)",
            chromium.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the app's end-to-end run cannot start:\n  {}",
        missing.join("\n  ")
    );
    (node.unwrap(), chromium)
}

/// 10,000 audit rows over the last ~3 hours, the mix a busy gateway writes, through
/// the store's own append API (the hash chain stays valid: the run verifies it).
async fn seed_audit(data_dir: &Path) {
    let store = flm_store::Store::open(&flm_store::StorePaths::in_dir(data_dir))
        .await
        .unwrap();
    let audit = store.audit();
    let now = chrono::Utc::now();
    let kinds = [
        ("auth_success", AuditSeverity::Low, 200),
        ("auth_success", AuditSeverity::Low, 200),
        ("auth_success", AuditSeverity::Low, 200),
        ("auth_failure", AuditSeverity::Medium, 401),
        ("rate_limit", AuditSeverity::Medium, 429),
    ];
    let endpoints = ["/v1/chat/completions", "/v1/models", "/v1/embeddings"];
    let events: Vec<AuditEvent> = (0..AUDIT_ROWS)
        .map(|i| {
            let (kind, severity, status) = kinds[i % kinds.len()];
            AuditEvent {
                request_id: format!("seed-{i:05}"),
                api_key_id: (status == 200).then(|| "key_seeded".to_owned()),
                endpoint: endpoints[i % endpoints.len()].to_owned(),
                status,
                latency_ms: Some(5 + (i % 40) as u64),
                created_at: now - chrono::Duration::seconds((AUDIT_ROWS - i) as i64),
                event_type: Some(kind.to_owned()),
                severity,
                ip: Some(format!("192.0.2.{}", 1 + i % 200)),
                details: None,
            }
        })
        .collect();
    for batch in events.chunks(1000) {
        audit.append_batch(batch).await.unwrap();
    }
    store.close().await;
}

/// The browser run's process group: SIGTERM first (playwright then closes Chromium,
/// which it starts in a process group of its own), SIGKILL to the group after 10 s.
struct RunGuard {
    pid: u32,
}

impl RunGuard {
    fn signal(&self, sig: &str, target: &str) {
        let _ = std::process::Command::new("kill")
            .args([sig, "--", target])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if !flm_cli::process::pid_alive(self.pid) {
            return;
        }
        self.signal("-TERM", &self.pid.to_string());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && flm_cli::process::pid_alive(self.pid) {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal("-KILL", &format!("-{}", self.pid));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_end_to_end_in_chromium() {
    let (node, chromium) = prerequisites();
    let started = Instant::now();
    let server = llama(TinyModel::Chat);
    let env = Env::new();
    // A random port for the app (8782 may be taken by a real FLM on this machine).
    env.flm(&["config", "set", "ui.port", "0"]).await.ok();
    env.flm(&[
        "engines",
        "add",
        "--kind",
        "llamacpp",
        "--url",
        &server.base_url(),
        "--id",
        "llama",
    ])
    .await
    .ok();
    seed_audit(&env.data_dir()).await;

    let _guard = env.guard();
    let port = free_port();
    env.flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    let login = env.flm(&["--format", "json", "ui", "--no-open"]).await.ok();
    let login_url = login["url"].as_str().unwrap().to_owned();

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-e2e");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    eprintln!(
        "[ui-e2e] setup {:?}; screenshots and report: {}",
        started.elapsed(),
        artifacts.display()
    );

    let mut cmd = tokio::process::Command::new(&node);
    cmd.arg("e2e/run.mjs")
        .current_dir(ui_dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.dir.path().join("home"))
        .env("FLM_UI_LOGIN_URL", &login_url)
        .env("FLM_E2E_PROXY_URL", format!("http://127.0.0.1:{port}"))
        .env("FLM_E2E_AUDIT_PAGES", (AUDIT_ROWS / 50).to_string())
        .env("FLM_E2E_AUDIT_MIN_ROWS", AUDIT_ROWS.to_string())
        .env("FLM_E2E_ARTIFACTS", &artifacts)
        .env(
            "FLM_E2E_TIMEOUT_SECS",
            (RUN_TIMEOUT.as_secs() - 20).to_string(),
        )
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .process_group(0);
    let mut child = cmd.spawn().expect("node starts");
    let _run = RunGuard {
        pid: child.id().unwrap(),
    };
    let t = Instant::now();
    let status = match tokio::time::timeout(RUN_TIMEOUT, child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => panic!(
            "the browser run did not finish within {RUN_TIMEOUT:?}; partial report in {}",
            artifacts.display()
        ),
    };
    eprintln!(
        "[ui-e2e] browser run {:?}, total {:?}",
        t.elapsed(),
        started.elapsed()
    );
    assert!(
        status.success(),
        "the app's end-to-end run failed ({status}): see the FAIL lines above and {}",
        artifacts.join("report.json").display()
    );
}
