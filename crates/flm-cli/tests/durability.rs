//! Durability of a real `flm` daemon under load (docs/guides/audit.md):
//!
//! - `kill -9` while clients are being served: after a restart the database opens,
//!   every key, ban and policy acknowledged before the kill is there, the audit chain
//!   verifies, and the only audit records missing are of requests answered within the
//!   writer's batching window before the kill;
//! - `security.db` on a small tmpfs that fills up under load: the proxy refuses with
//!   `503 audit_unavailable` instead of serving unaudited, keeps what it queued,
//!   recovers by itself when space returns, and the chain verifies afterwards.
//!
//! Every load loop is bounded in count and time; traffic stays on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, Env};
use flm_cli::process::pid_alive;
use flm_testkit::{EmulatedKind, Emulator, EmulatorOptions};
use serde_json::{json, Value};

/// The writer's batching window (`LINGER` in crates/flm-proxy/src/audit.rs) plus a
/// batch commit and scheduling slack: records of requests answered longer ago than
/// this before a SIGKILL must be in the log.
const LOSS_WINDOW: Duration = Duration::from_millis(1000);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn setup(env: &Env, vllm: &Emulator) {
    env.flm(&[
        "engines",
        "add",
        "--kind",
        "vllm",
        "--url",
        &vllm.base_url(),
    ])
    .await
    .ok();
}

async fn create_key(env: &Env, label: &str) -> (String, String) {
    let k = env
        .flm(&["api-keys", "create", "--label", label])
        .await
        .ok();
    (
        k["id"].as_str().unwrap().to_owned(),
        k["key"].as_str().unwrap().to_owned(),
    )
}

async fn start_proxy(env: &Env, port: u16) -> u32 {
    let started = env
        .flm(&["proxy", "start", "--port", &port.to_string()])
        .await
        .ok();
    assert_eq!(started["status"], "running", "{started}");
    started["pid"].as_u64().unwrap() as u32
}

async fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
    common::eventually("the daemon died", Duration::from_secs(5), || {
        !pid_alive(pid)
    })
    .await;
}

/// Every audit row through the CLI, oldest first.
async fn audit_rows(env: &Env, dir: &Path) -> Vec<Value> {
    let out = dir.join("audit-export.json");
    env.flm(&[
        "security",
        "audit-logs",
        "export",
        "--output",
        out.to_str().unwrap(),
    ])
    .await
    .ok();
    let rows: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    rows.as_array().unwrap().clone()
}

async fn verify(env: &Env) -> Value {
    env.flm(&["security", "audit-logs", "verify"]).await.ok()
}

/// One answered request: when the answer arrived, its status, code and request id.
#[derive(Clone, Debug)]
struct Answer {
    at: Instant,
    status: u16,
    code: String,
    rid: String,
}

/// An error with its sources, for a readable failure message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// What the clients saw from `from` on, second by second: counts per status and code.
fn timeline(answers: &[Answer], from: Instant) -> String {
    let mut secs =
        std::collections::BTreeMap::<u64, std::collections::BTreeMap<String, usize>>::new();
    for a in answers.iter().filter(|a| a.at >= from) {
        let what = if a.code.is_empty() {
            a.status.to_string()
        } else {
            format!("{} {}", a.status, a.code)
        };
        *secs
            .entry((a.at - from).as_secs())
            .or_default()
            .entry(what)
            .or_default() += 1;
    }
    secs.iter()
        .map(|(s, seen)| format!("  +{s}s: {seen:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `workers` clients sending chats until `stop` (each at most `max` requests).
fn load(
    base: &str,
    key: &str,
    workers: usize,
    max: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Vec<Answer>>>, Vec<tokio::task::JoinHandle<()>>) {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (http, url, key, stop, answers) = (
            http(),
            format!("{base}/v1/chat/completions"),
            key.to_owned(),
            stop.clone(),
            answers.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..max {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let body = json!({"model": "flm://vllm-1/test-model", "messages": [{"role": "user", "content": format!("w{w} #{i}")}]});
                // Transport errors (status 0) and answers that are not JSON are recorded
                // too, so a failure says what the clients saw; a proxy that was killed
                // acknowledged nothing for them.
                let (status, code, rid) =
                    match http.post(&url).bearer_auth(&key).json(&body).send().await {
                        Err(e) => (0, format!("transport: {}", error_chain(&e)), String::new()),
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let rid = r
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            match r.bytes().await {
                                Err(e) => (0, format!("body: {}", error_chain(&e)), rid),
                                Ok(b) => match serde_json::from_slice::<Value>(&b) {
                                    Ok(v) => (
                                        status,
                                        v["error"]["code"].as_str().unwrap_or("").to_owned(),
                                        rid,
                                    ),
                                    Err(_) => (
                                        status,
                                        format!(
                                            "not json: {:?}",
                                            String::from_utf8_lossy(&b[..b.len().min(80)])
                                        ),
                                        rid,
                                    ),
                                },
                            }
                        }
                    };
                answers.lock().unwrap().push(Answer {
                    at: Instant::now(),
                    status,
                    code,
                    rid,
                });
                if status != 200 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    (answers, tasks)
}

async fn finish(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .expect("a load worker stopped")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_keeps_everything_acknowledged() {
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    let env = Env::new();
    let _guard = env.guard();
    setup(&env, &vllm).await;
    let (id1, key1) = create_key(&env, "before").await;
    let port = free_port();
    let pid = start_proxy(&env, port).await;
    let base = format!("http://127.0.0.1:{port}");

    let stop = Arc::new(AtomicBool::new(false));
    let (answers, tasks) = load(&base, &key1, 6, 20_000, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Acknowledged while the load runs: a key, two bans, a policy.
    let (id2, key2) = create_key(&env, "during").await;
    env.flm(&["security", "ip-blocklist", "add", "203.0.113.10"])
        .await
        .ok();
    env.flm(&[
        "security",
        "ip-blocklist",
        "add",
        "198.51.100.7",
        "--permanent",
    ])
    .await
    .ok();
    let policy = r#"{"rate_limit":{"rpm":600000,"burst":600000},"cors":{"allowed_origins":["https://app.example"]}}"#;
    env.flm(&["security", "policy", "set", "--json", policy])
        .await
        .ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let killed_at = Instant::now();
    kill_9(pid).await;
    finish(&stop, tasks).await;
    let answers = answers.lock().unwrap().clone();
    let served: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert!(served.len() > 100, "load ran: {} served", served.len());

    // Restart: the database opens and everything acknowledged is there.
    let pid2 = start_proxy(&env, port).await;
    assert_ne!(pid, pid2);
    let keys = env.flm(&["api-keys", "list"]).await.ok();
    let ids: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id1.as_str()) && ids.contains(&id2.as_str()),
        "{keys}"
    );
    let bans = env.flm(&["security", "ip-blocklist", "list"]).await.ok();
    let banned: Vec<&str> = bans
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ip"].as_str().unwrap())
        .collect();
    assert!(
        banned.contains(&"203.0.113.10") && banned.contains(&"198.51.100.7"),
        "{bans}"
    );
    let shown = env.flm(&["security", "policy", "show"]).await.ok();
    assert_eq!(
        shown["policy_json"]["rate_limit"]["rpm"], 600000,
        "the policy set before the kill: {shown}"
    );
    let r = http()
        .get(format!("{base}/v1/models"))
        .bearer_auth(&key2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the key created before the kill works");

    // The chain verifies; audit records lost are only those of requests answered
    // within the writer's batching window before the kill.
    let report = verify(&env).await;
    assert!(report["ok"] == true, "{report}");
    let tmp = env.dir.path().to_owned();
    let rows = audit_rows(&env, &tmp).await;
    let logged: HashSet<&str> = rows
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    let lost: Vec<&&Answer> = served
        .iter()
        .filter(|a| !logged.contains(a.rid.as_str()))
        .collect();
    println!(
        "SIGKILL under load: {} requests answered 200, {} audit records lost (all within {:?} before the kill)",
        served.len(),
        lost.len(),
        LOSS_WINDOW
    );
    for a in &lost {
        let before_kill = killed_at.saturating_duration_since(a.at);
        assert!(
            before_kill <= LOSS_WINDOW,
            "request {} was answered {before_kill:?} before the kill and its record is lost",
            a.rid
        );
    }
    env.flm(&["proxy", "stop"]).await.ok();
}

/// A tmpfs mounted for the test, unmounted on drop (after the daemon's guard ran).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .ok()?;
        out.status.success().then(|| Self(at.to_owned())).or_else(|| {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs for the full-disk test ({}); run as root (scripts/test.sh in a container does)",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` with `filler` until it is full.
fn fill(filler: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
        if written > 1 << 30 {
            break;
        }
    }
    let _ = f.write_all(&chunk[..4096]);
    let _ = f.flush();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_requests_and_recovers_by_itself() {
    let env = Env::new();
    let _mount = match Tmpfs::mount(&env.data_dir(), "48m") {
        Some(m) => m,
        None => return,
    };
    // Declared after the mount: dropped (daemon stopped) before the unmount.
    let _guard = env.guard();
    let vllm = Emulator::start(EmulatedKind::Vllm, EmulatorOptions::default())
        .await
        .unwrap();
    setup(&env, &vllm).await;
    let (_id, key) = create_key(&env, "app").await;
    let port = free_port();
    start_proxy(&env, port).await;
    let base = format!("http://127.0.0.1:{port}");

    let stop = Arc::new(AtomicBool::new(false));
    let (answers, tasks) = load(&base, &key, 4, 50_000, stop.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // The disk fills up under load.
    let filler = env.data_dir().join("filler");
    let filled = fill(&filler);
    println!("filled the tmpfs with {} MiB", filled >> 20);
    let full_at = Instant::now();
    let deadline = full_at + Duration::from_secs(30);
    let first_refusal = loop {
        let refusal = answers
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.status == 503 && a.at >= full_at)
            .cloned();
        if let Some(a) = refusal {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no 503 within 30 s of a full disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(first_refusal.code, "audit_unavailable", "{first_refusal:?}");
    println!(
        "refusing {:?} after the disk filled",
        first_refusal.at - full_at
    );
    // While full: refusals only (in-flight requests aside), nothing served unaudited.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window_start = first_refusal.at + Duration::from_millis(500);
    let served_while_full = answers
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.at >= window_start && a.status == 200)
        .count();
    assert_eq!(
        served_while_full, 0,
        "requests were served while the audit log could not be written"
    );

    // Space returns: the proxy serves again by itself, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let freed_at = Instant::now();
    let deadline = freed_at + Duration::from_secs(30);
    loop {
        let back = answers
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.status == 200 && a.at > freed_at);
        if back {
            break;
        }
        if Instant::now() >= deadline {
            let log =
                std::fs::read_to_string(env.data_dir().join("logs/proxy.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            // Copied out so the panic does not poison the lock the workers still use.
            let answers = answers.lock().unwrap().clone();
            let last: Vec<Answer> = answers.iter().rev().take(3).cloned().collect();
            panic!(
                "not serving 30 s after space returned; answers since the disk filled (space returned at +{:?}):\n{}\nlast answers {last:?}; log tail {tail:#?}",
                freed_at - full_at,
                timeline(&answers, full_at),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "serving again {:?} after space returned (at +{:?}); answers since the disk filled:\n{}",
        freed_at.elapsed(),
        freed_at - full_at,
        timeline(&answers.lock().unwrap(), full_at)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    finish(&stop, tasks).await;

    // Nothing acknowledged is lost; the outage is in the chain; the chain verifies.
    env.flm(&["proxy", "stop"]).await.ok();
    let report = verify(&env).await;
    assert!(report["ok"] == true, "{report}");
    let tmp = env.dir.path().to_owned();
    let rows = audit_rows(&env, &tmp).await;
    let logged: HashSet<&str> = rows
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    let answers = answers.lock().unwrap().clone();
    let served: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let missing: Vec<&str> = served
        .iter()
        .filter(|a| !logged.contains(a.rid.as_str()))
        .map(|a| a.rid.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} served requests are not in the audit log: {:?}",
        missing.len(),
        served.len(),
        &missing[..missing.len().min(5)]
    );
    let outage = rows
        .iter()
        .find(|r| r["event_type"] == "audit_unavailable")
        .expect("the outage is recorded");
    println!(
        "full disk: {} served, {} refused, outage {}",
        served.len(),
        answers.iter().filter(|a| a.status == 503).count(),
        outage["details"]
    );
}
