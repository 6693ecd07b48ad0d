//! `flm --version`, `flm service install|uninstall|status` and the hidden
//! `flm __generate-docs`: the real binary in an isolated HOME, the unit it writes
//! checked by the real `systemd-analyze` and its ExecStart run for real.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{free_port, Env};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn unit_path(env: &Env) -> PathBuf {
    env.dir.path().join("home/.config/systemd/user/flm.service")
}

/// On a machine where systemd runs, the test must not touch the real user manager.
fn install_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["service", "install"];
    args.extend_from_slice(extra);
    if systemd_running() {
        args.push("--no-systemctl");
    }
    args
}

/// `systemd-analyze --user verify` of a unit file: what it printed (empty = clean),
/// or `None` when systemd-analyze is not installed.
fn analyze_user_unit(unit: &Path) -> Option<String> {
    let runtime = tempfile::TempDir::new().unwrap();
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(unit)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .ok()?;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Documentation=man:… is checked with `man`: without the package the pages are
    // not installed (scripts/test-package.sh checks them installed).
    Some(
        all.lines()
            .filter(|l| !l.contains("Command 'man "))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[tokio::test]
async fn version_names_commit_and_build_date() {
    let env = Env::new();
    let out = env.flm(&["--version"]).await;
    assert_eq!(out.code, 0);
    let line = out.stdout.trim();
    let rest = line
        .strip_prefix(&format!("flm {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, date) = rest.split_once(", built ").unwrap();
    assert!(
        commit == "unknown: not built from a git checkout"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line}"
    );
    let date = date.strip_suffix(')').unwrap();
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
        "{line}"
    );
    // The daemon binary and subcommands say the same.
    let daemon = Command::new(env!("CARGO_BIN_EXE_flm-proxy"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&daemon.stdout).trim(),
        line.replacen("flm ", "flm-proxy ", 1)
    );
    let sub = env.flm(&["service", "--version"]).await;
    assert!(sub.stdout.contains(rest), "{}", sub.stdout);
}

#[tokio::test]
async fn service_install_status_uninstall() {
    let env = Env::new();
    let unit = unit_path(&env);

    // Nothing installed yet (the package's unit may exist on this machine).
    let status = env.flm(&["service", "status"]).await.ok();
    if !Path::new("/usr/lib/systemd/user/flm.service").exists()
        && !Path::new("/etc/systemd/user/flm.service").exists()
    {
        assert_eq!(status["unit_file"], Value::Null, "{status}");
    }
    assert_eq!(status["systemd_running"], systemd_running());

    // Bad input is refused before anything is written.
    let msg = env
        .flm(&install_args(&["--bind", "not-an-ip"]))
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("not an IP address"), "{msg}");
    assert!(!unit.exists());

    let port = free_port();
    let port_s = port.to_string();
    let data = env.flm(&install_args(&["--port", &port_s])).await.ok();
    assert_eq!(data["unit_file"], unit.display().to_string());
    assert_eq!(data["changed"], true);
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.starts_with("# Written by `flm service install`"));
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_flm")).unwrap();
    let exec = format!(
        "{} proxy start --no-daemon --format json --port {port}",
        exe.display()
    );
    assert!(text.contains(&format!("\nExecStart={exec}\n")), "{text}");
    // FLM_HOME is set in this environment, so the unit pins the data directory.
    assert!(
        text.contains(&format!(
            "\nEnvironment=FLM_HOME={}\n",
            env.data_dir().display()
        )),
        "{text}"
    );
    assert!(text.contains("\nWantedBy=default.target\n"));
    assert!(
        !env.data_dir().exists(),
        "flm service must not create the data directory"
    );
    if systemd_running() {
        assert_eq!(data["commands_run"], serde_json::json!([]));
    } else {
        // Without systemd: nothing run, the exact commands printed.
        assert_eq!(data["systemd_running"], false);
        assert_eq!(
            data["commands_to_run"],
            serde_json::json!([
                "systemctl --user daemon-reload",
                "systemctl --user enable flm.service",
                "systemctl --user restart flm.service"
            ])
        );
        let text_out = env
            .flm(&["--format", "text", "service", "install", "--port", &port_s])
            .await;
        assert_eq!(text_out.code, 0, "{}", text_out.stderr);
        assert!(
            text_out.stdout.contains("Unchanged:"),
            "{}",
            text_out.stdout
        );
        assert!(
            text_out.stdout.contains("systemd is not running here"),
            "{}",
            text_out.stdout
        );
        assert!(text_out
            .stdout
            .contains("  systemctl --user enable flm.service"));
    }
    if let Some(report) = analyze_user_unit(&unit) {
        assert_eq!(report.trim(), "", "systemd-analyze verify: {report}");
    }

    // Installing the same unit again changes nothing.
    let again = env.flm(&install_args(&["--port", &port_s])).await.ok();
    assert_eq!(again["changed"], false);

    // What `systemctl --user enable` does, by hand: status sees the link.
    let wants = unit.parent().unwrap().join("default.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(&unit, wants.join("flm.service")).unwrap();
    let status = env.flm(&["service", "status"]).await.ok();
    assert_eq!(status["unit_file"], unit.display().to_string());
    assert_eq!(status["source"], "flm service install");
    assert_eq!(status["exec_start"], exec);
    if !systemd_running() {
        assert_eq!(status["enabled"], "enabled");
        assert_eq!(status["active"], Value::Null);
    }

    // The unit's ExecStart serves: run it as systemd would (same user, its
    // environment), hit /health, stop it with SIGTERM.
    let words: Vec<&str> = exec.split(' ').collect();
    let mut cmd = tokio::process::Command::new(words[0]);
    cmd.args(&words[1..])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stderr.next_line().await.unwrap() {
                Some(l) if l.starts_with("listening on ") => return,
                Some(_) => continue,
                None => panic!("the unit's ExecStart exited before listening"),
            }
        }
    })
    .await
    .expect("listening within 30 s");
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let pid = child.id().unwrap();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");

    // A unit FLM did not write is not replaced without --force.
    std::fs::write(&unit, "[Service]\nExecStart=/bin/true\n").unwrap();
    let msg = env.flm(&install_args(&[])).await.err("ALREADY_EXISTS", 1);
    assert!(msg.contains("--force"), "{msg}");
    let msg = env
        .flm(&["service", "uninstall", "--no-systemctl"])
        .await
        .err("INVALID_ARGUMENT", 1);
    assert!(msg.contains("not written by"), "{msg}");
    let forced = env.flm(&install_args(&["--force"])).await.ok();
    assert_eq!(forced["changed"], true);

    // Uninstall removes the unit and its enable link, keeps the data.
    std::fs::create_dir_all(env.data_dir()).unwrap();
    std::fs::write(env.data_dir().join("keep"), "x").unwrap();
    let mut args = vec!["service", "uninstall"];
    if systemd_running() {
        args.push("--no-systemctl");
    }
    let gone = env.flm(&args).await.ok();
    let removed: Vec<String> = gone["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(removed.contains(&unit.display().to_string()), "{gone}");
    assert!(
        removed.contains(&wants.join("flm.service").display().to_string()),
        "{gone}"
    );
    assert!(!unit.exists());
    assert!(std::fs::symlink_metadata(wants.join("flm.service")).is_err());
    assert!(env.data_dir().join("keep").exists());
    // Idempotent.
    let again = env.flm(&args).await.ok();
    assert_eq!(again["removed"], serde_json::json!([]));
}

#[tokio::test]
async fn generate_docs_writes_man_pages_completions_and_the_user_unit() {
    let env = Env::new();
    let out_dir = env.dir.path().join("gen");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flm"))
        .arg("__generate-docs")
        .arg("--out-dir")
        .arg(&out_dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let man = out_dir.join("man");
    let mut pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for p in [
        "flm.1",
        "flm-proxy.1",
        "flm-proxy-start.1",
        "flm-service.1",
        "flm-service-install.1",
        "flm-security-install-ca.1",
        "flm-api-keys-create.1",
    ] {
        assert!(pages.contains(&p.to_owned()), "{p} in {pages:?}");
    }
    assert!(
        !pages
            .iter()
            .any(|p| p.contains("generate") || p.contains("help")),
        "{pages:?}"
    );
    let top = std::fs::read_to_string(man.join("flm.1")).unwrap();
    assert!(top.contains(".TH flm 1"), "{top}");
    assert!(top.contains("FLM Manual"));
    // flm-proxy.1 covers `flm proxy` and the daemon binary of the same name.
    let proxy = std::fs::read_to_string(man.join("flm-proxy.1")).unwrap();
    assert!(proxy.contains("THE flm\\-proxy DAEMON"));
    // groff renders every page without a warning (when man-db is installed).
    if Command::new("man").arg("--version").output().is_ok() {
        for p in &pages {
            let r = Command::new("man")
                .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
                .arg(man.join(p))
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            assert!(r.status.success(), "{p}");
            assert_eq!(String::from_utf8_lossy(&r.stderr), "", "{p}");
        }
    }

    let comp = out_dir.join("completions");
    let bash = std::fs::read_to_string(comp.join("flm.bash")).unwrap();
    let zsh = std::fs::read_to_string(comp.join("_flm")).unwrap();
    let fish = std::fs::read_to_string(comp.join("flm.fish")).unwrap();
    for (name, c) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
        assert!(c.contains("service"), "{name}");
        assert!(c.contains("api-keys"), "{name}");
        assert!(!c.contains("__generate-docs"), "{name}");
    }
    assert!(zsh.starts_with("#compdef flm"));
    // The bash completion loads and registers `flm`.
    let r = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p flm",
            comp.join("flm.bash").display()
        ))
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stdout).contains("flm"));

    let unit = std::fs::read_to_string(out_dir.join("systemd/flm.service")).unwrap();
    assert!(unit.starts_with("# FLM's systemd user unit."));
    assert!(unit.contains("\nExecStart=/usr/bin/flm proxy start --no-daemon --format json\n"));
    assert!(!unit.contains("FLM_HOME"));
}
