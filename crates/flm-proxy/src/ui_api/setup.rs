//! The setup wizard's endpoints (paths relative to `/api/v1`):
//!
//! - `GET /setup/platform`: this machine's OS and which firewall tools it has, with the
//!   target the wizard preselects. Detection (looking for the tools' binaries) is I/O,
//!   so it lives here, in the adapter; the choice of default is core logic.
//! - `POST /setup/firewall` `{target, ports, allow}`: the firewall script and its
//!   rollback from [`flm_core::firewall::generate`]; `422 invalid_firewall_request`
//!   with `fields` (`target`, `ports[1]`, `allow[0]`…) on bad input.
//!
//! Everything else the wizard does (keys, policy, allow list, proxy start) goes through
//! the existing endpoints.

use std::path::{Path, PathBuf};

use axum::extract::rejection::JsonRejection;
use axum::routing::{get, post};
use axum::{Json, Router};
use flm_core::firewall::{self, FirewallRequest, FirewallScript, FirewallTarget};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{FieldError, UiError};

/// One firewall tool and whether this machine has it.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallToolView {
    /// `ufw`, `firewalld`, `nftables`, `pf` or `powershell`.
    pub target: FirewallTarget,
    /// Its binary was found.
    pub available: bool,
    /// Where, when found.
    pub path: Option<String>,
}

/// `GET /setup/platform`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformView {
    /// `linux`, `macos`, `windows`… (Rust's `std::env::consts::OS`).
    pub os: String,
    /// CPU architecture (`x86_64`, `aarch64`…).
    pub arch: String,
    /// Every target the wizard can write a script for, with its availability here.
    pub firewalls: Vec<FirewallToolView>,
    /// The target to preselect; `null` when none fits this OS.
    pub default_target: Option<FirewallTarget>,
}

/// The binary that shows a target is installed.
fn binary_of(target: FirewallTarget) -> &'static str {
    match target {
        FirewallTarget::Ufw => "ufw",
        FirewallTarget::Firewalld => "firewall-cmd",
        FirewallTarget::Nftables => "nft",
        FirewallTarget::Pf => "pfctl",
        FirewallTarget::Powershell => "powershell.exe",
    }
}

/// `name` in `PATH` or in the sbin directories (which a user's PATH often lacks,
/// while the firewall tools live there).
fn find_binary(name: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = path_var
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    for extra in ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// This machine's platform and firewall tools.
pub fn detect_platform() -> PlatformView {
    let os = std::env::consts::OS;
    let path_var = std::env::var_os("PATH");
    let firewalls: Vec<FirewallToolView> = FirewallTarget::ALL
        .into_iter()
        .map(|target| {
            // PowerShell ships with every Windows FLM supports.
            let found = if target == FirewallTarget::Powershell && os == "windows" {
                Some(PathBuf::from("powershell.exe"))
            } else if target == FirewallTarget::Powershell {
                None
            } else {
                find_binary(binary_of(target), path_var.as_deref())
            };
            FirewallToolView {
                target,
                available: found.is_some(),
                path: found.map(|p| p.display().to_string()),
            }
        })
        .collect();
    let available: Vec<FirewallTarget> = firewalls
        .iter()
        .filter(|f| f.available)
        .map(|f| f.target)
        .collect();
    PlatformView {
        os: os.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        default_target: firewall::default_target(os, &available),
        firewalls,
    }
}

/// The routes, paths relative to `/api/v1`.
pub fn router() -> Router {
    Router::new()
        .route("/setup/platform", get(platform))
        .route("/setup/firewall", post(firewall_script))
}

async fn platform() -> Result<Json<PlatformView>, UiError> {
    tokio::task::spawn_blocking(detect_platform)
        .await
        .map(Json)
        .map_err(UiError::internal)
}

const INVALID: &str = "invalid_firewall_request";

fn problem(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// The body as a [`FirewallRequest`], every type mismatch reported by its path (so the
/// app can show it next to the field, like the core's own validation).
fn parse_request(body: &Value) -> Result<FirewallRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec![problem(
            "$",
            "send a JSON object {target, ports, allow}",
        )]);
    };
    let target = match obj.get("target") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            errors.push(problem(
                "target",
                "choose ufw, firewalld, nftables, pf or powershell",
            ));
            String::new()
        }
    };
    let mut ports = Vec::new();
    match obj.get("ports") {
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                match v.as_i64() {
                    Some(n) => ports.push(n),
                    None => errors.push(problem(
                        format!("ports[{i}]"),
                        format!("{v} is not a TCP port; use a number from 1 to 65535"),
                    )),
                }
            }
        }
        _ => errors.push(problem("ports", "give a list of TCP ports, e.g. [8780]")),
    }
    let mut allow = Vec::new();
    match obj.get("allow") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                match v.as_str() {
                    Some(s) => allow.push(s.to_owned()),
                    None => errors.push(problem(
                        format!("allow[{i}]"),
                        "an IP address or CIDR range as text, e.g. \"203.0.113.7\"",
                    )),
                }
            }
        }
        Some(_) => errors.push(problem(
            "allow",
            "give a list of IP addresses or CIDR ranges",
        )),
    }
    if errors.is_empty() {
        Ok(FirewallRequest {
            target,
            ports,
            allow,
        })
    } else {
        Err(errors)
    }
}

async fn firewall_script(
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<FirewallScript>, UiError> {
    let Json(body) = body.map_err(|e| UiError::bad_request("invalid_body", e.body_text()))?;
    let req = parse_request(&body)
        .map_err(|fields| UiError::invalid(INVALID, "the firewall request is not valid", fields))?;
    firewall::generate(&req).map(Json).map_err(|e| {
        UiError::invalid(
            INVALID,
            e.to_string(),
            e.problems
                .into_iter()
                .map(|p| problem(p.field, p.message))
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_mismatches_are_reported_by_path() {
        let e = parse_request(&json!({"target": 3, "ports": [8780, "x"], "allow": ["1.2.3.4", 5]}))
            .unwrap_err();
        let paths: Vec<_> = e.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["target", "ports[1]", "allow[1]"]);
        let e = parse_request(&json!([])).unwrap_err();
        assert_eq!(e[0].path, "$");
        let ok = parse_request(&json!({"target": "ufw", "ports": [1]})).unwrap();
        assert!(ok.allow.is_empty());
    }

    #[test]
    fn detection_finds_executables_only() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("flm-fw-probe");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        let path = std::ffi::OsString::from(dir.path());
        #[cfg(unix)]
        {
            assert_eq!(find_binary("flm-fw-probe", Some(&path)), None);
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(find_binary("flm-fw-probe", Some(&path)), Some(bin));
        let p = detect_platform();
        assert_eq!(p.os, std::env::consts::OS);
        assert_eq!(p.firewalls.len(), 5);
    }
}
