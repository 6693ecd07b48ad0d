//! `flm check` (spec 20-cli §4.15): both databases, the security policy (syntax and
//! meaning) and the audit chain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flm_core::security::CheckStatus;
use flm_guard::IpNet;
use serde_json::Value;

use crate::app::App;
use crate::cli::CheckArgs;
use crate::output::{CliError, Printer};

/// Name of the semantic policy check added to the store's report.
const POLICY_SEMANTICS: &str = "security_db.policy_semantics";
/// Name of the trusted-proxy check (issue 14 point 7).
const TRUSTED_PROXIES: &str = "security_db.policy_trusted_proxies";
/// Name of the remote-media (SSRF) check.
const MEDIA_FETCH: &str = "security_db.policy_media_fetch";

pub(crate) async fn run(app: &App, args: CheckArgs, printer: &Printer) -> Result<(), CliError> {
    let mut report = flm_store::check(&app.store).await;
    match app.store.policy().load().await {
        Ok(Some(p)) if serde_json::from_str::<Value>(&p.policy_json).is_ok_and(|v| v.is_object()) => {
            match flm_guard::policy::SecurityPolicy::from_json_str(&p.policy_json) {
                Ok(policy) => {
                    report.push(POLICY_SEMANTICS, CheckStatus::Ok, "every policy field is valid");
                    let (status, message) = trusted_loopback(&policy.trusted_proxy_ips, &local_users());
                    report.push(TRUSTED_PROXIES, status, message);
                    let (status, message) = media_fetch(&policy.media_fetch);
                    report.push(MEDIA_FETCH, status, message);
                }
                Err(errs) => report.push(
                    POLICY_SEMANTICS,
                    CheckStatus::Error,
                    format!("{errs}; the proxy refuses every request but /health; fix it with `flm security policy set`"),
                ),
            }
        }
        Ok(_) => report.push(
            POLICY_SEMANTICS,
            CheckStatus::Warning,
            "not checked: the policy is missing or not a JSON object (see security_db.policy)",
        ),
        Err(e) => report.push(
            POLICY_SEMANTICS,
            CheckStatus::Error,
            format!("cannot read the security policy: {e}"),
        ),
    }
    let failed = report.status == CheckStatus::Error;
    printer.success(&report, || {
        let mut out = String::new();
        let mut hidden = 0usize;
        for c in &report.checks {
            let mark = match c.status {
                CheckStatus::Ok => "✓",
                CheckStatus::Warning => "⚠",
                CheckStatus::Error => "✗",
            };
            if c.status == CheckStatus::Ok && !args.verbose {
                hidden += 1;
                continue;
            }
            out.push_str(&format!("{mark} {}: {}\n", c.name, c.message));
        }
        let overall = match report.status {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Error => "error",
        };
        out.push_str(&format!(
            "status: {overall} ({} checks",
            report.checks.len()
        ));
        if hidden > 0 {
            out.push_str(&format!(", {hidden} passing hidden; --verbose shows them"));
        }
        out.push_str(")\n");
        out
    })?;
    if failed {
        // The report is the output; the exit code alone says "error" (no second
        // error envelope on stdout).
        app.store.close().await;
        std::process::exit(1);
    }
    Ok(())
}

/// Whether `net` contains a loopback address (`127.0.0.0/8`, `::1`), including the
/// catch-alls `0.0.0.0/0` and `::/0`.
fn covers_loopback(net: &IpNet) -> bool {
    net.addr().is_loopback()
        || net.contains(IpAddr::V4(Ipv4Addr::LOCALHOST))
        || net.contains(IpAddr::V6(Ipv6Addr::LOCALHOST))
}

/// The verdict on `trusted_proxy_ips`. Trusting a loopback address means believing
/// `X-Forwarded-For` / `X-Real-IP` from every process on this machine (any user, any
/// container sharing the network namespace, any tunnel such as `ssh -R`, cloudflared
/// or ngrok that connects through loopback): each of them can choose the client
/// address FLM sees, evading its own ban or getting someone else banned.
/// `other_users` are the other accounts with processes running here (evidence only:
/// the warning stands without them, since the same user's programs can connect too).
fn trusted_loopback(trusted: &[IpNet], other_users: &[u32]) -> (CheckStatus, String) {
    let loopback: Vec<String> = trusted
        .iter()
        .filter(|n| covers_loopback(n))
        .map(ToString::to_string)
        .collect();
    if loopback.is_empty() {
        let msg = if trusted.is_empty() {
            "no trusted proxies: forwarded headers are ignored".to_owned()
        } else {
            "no loopback address is trusted".to_owned()
        };
        return (CheckStatus::Ok, msg);
    }
    let evidence = if other_users.is_empty() {
        String::new()
    } else {
        format!(
            " ({} other user account(s) run processes on this machine right now)",
            other_users.len()
        )
    };
    (
        CheckStatus::Warning,
        format!(
            "trusted_proxy_ips trusts loopback ({}): every local process, container sharing this network and tunnel arriving over loopback can set X-Forwarded-For / X-Real-IP and pick the client address FLM bans, limits and logs{evidence}. \
             Fix: trust only the reverse proxy's own non-loopback address (run it on another host or give it a dedicated address and firewall FLM's port to it), \
             or make sure nothing else runs on this machine; then `flm security policy set` without the loopback entry",
            loopback.join(", ")
        ),
    )
}

/// The verdict on `media_fetch`: what a client with a key can make the proxy fetch
/// for remote `image_url` parts. Opening the private networks, or listing a cloud
/// metadata address, lets any key holder read from them through the proxy.
fn media_fetch(m: &flm_guard::MediaFetchPolicy) -> (CheckStatus, String) {
    let metadata: Vec<String> = m
        .allowed_cidrs
        .iter()
        .filter(|n| flm_guard::ssrf::covers_metadata(n) || n.prefix_len() < 8)
        .map(ToString::to_string)
        .collect();
    if !metadata.is_empty() {
        return (
            CheckStatus::Warning,
            format!(
                "media_fetch.allowed_cidrs opens a cloud metadata address or a huge range ({}): any API key can make the proxy fetch from it (instance credentials live there). Fix: list only the image servers' own addresses",
                metadata.join(", ")
            ),
        );
    }
    if m.allow_private {
        return (
            CheckStatus::Warning,
            "media_fetch.allow_private is on: any API key can make the proxy fetch images from this machine and the local network. Fix: list only the image servers in media_fetch.allowed_cidrs".to_owned(),
        );
    }
    let msg = if m.allowed_cidrs.is_empty() {
        "remote images are fetched from public addresses only".to_owned()
    } else {
        format!(
            "remote images are fetched from public addresses and {}",
            m.allowed_cidrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    (CheckStatus::Ok, msg)
}

/// The user ids other than ours that own a process here (Linux `/proc`; empty
/// elsewhere or when unreadable).
fn local_users() -> Vec<u32> {
    let me = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| uid_of(&s));
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut uids: Vec<u32> = dir
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter_map(|s| uid_of(&s))
        .filter(|u| Some(*u) != me)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

fn uid_of(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code
    use super::*;

    #[test]
    fn media_fetch_verdicts() {
        let mut m = flm_guard::MediaFetchPolicy::default();
        assert_eq!(media_fetch(&m).0, CheckStatus::Ok);
        m.allowed_cidrs = nets(&["192.168.1.20"]);
        assert_eq!(media_fetch(&m).0, CheckStatus::Ok);
        m.allow_private = true;
        assert_eq!(media_fetch(&m).0, CheckStatus::Warning);
        m.allow_private = false;
        m.allowed_cidrs = nets(&["169.254.169.254"]);
        assert!(media_fetch(&m).1.contains("metadata"));
        m.allowed_cidrs = nets(&["169.254.0.0/16"]);
        assert_eq!(media_fetch(&m).0, CheckStatus::Warning);
        m.allowed_cidrs = nets(&["0.0.0.0/0"]);
        assert_eq!(media_fetch(&m).0, CheckStatus::Warning);
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn trusting_loopback_is_a_warning_that_names_the_fix() {
        for list in [
            &["127.0.0.1"][..],
            &["::1"],
            &["127.0.0.0/8"],
            &["10.0.0.0/8", "0.0.0.0/0"],
            &["::/0"],
        ] {
            let (status, msg) = trusted_loopback(&nets(list), &[]);
            assert_eq!(status, CheckStatus::Warning, "{list:?}");
            assert!(
                msg.contains("pick the client address") && msg.contains("Fix:"),
                "{msg}"
            );
        }
        let (_, msg) = trusted_loopback(&nets(&["127.0.0.1"]), &[0, 1000]);
        assert!(msg.contains("2 other user account(s)"), "{msg}");
        for list in [&[][..], &["10.0.0.5"], &["192.168.0.0/16", "2001:db8::/32"]] {
            assert_eq!(
                trusted_loopback(&nets(list), &[1]).0,
                CheckStatus::Ok,
                "{list:?}"
            );
        }
    }

    #[test]
    fn uid_is_the_real_uid() {
        assert_eq!(
            uid_of("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
        assert_eq!(uid_of("Name: x\n"), None);
    }
}
