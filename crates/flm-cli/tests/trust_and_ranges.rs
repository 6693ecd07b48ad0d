//! `flm check` on a policy that trusts loopback (issue 14 point 7) and range entries in
//! `flm security ip-blocklist` (point 5: the proxy bans IPv6 /64 and /48 ranges), with
//! the real binary on real SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::Env;
use serde_json::Value;

fn trusted_check(data: &Value) -> Value {
    data["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "security_db.policy_trusted_proxies")
        .unwrap_or_else(|| panic!("no trusted-proxy check: {data}"))
        .clone()
}

#[tokio::test]
async fn check_warns_when_a_loopback_address_is_trusted() {
    let env = Env::new();
    let data = env.flm(&["check"]).await.ok();
    assert_eq!(trusted_check(&data)["status"], "ok", "{data}");

    env.flm(&[
        "security",
        "policy",
        "set",
        "--json",
        r#"{"trusted_proxy_ips":["127.0.0.1"]}"#,
    ])
    .await
    .ok();
    let out = env.flm(&["check"]).await;
    assert_eq!(out.code, 0, "a warning, not an error: {}", out.stdout);
    let data = out.ok();
    assert_eq!(data["status"], "warning", "{data}");
    let c = trusted_check(&data);
    assert_eq!(c["status"], "warning", "{c}");
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains("127.0.0.1") && msg.contains("X-Forwarded-For"),
        "{msg}"
    );
    assert!(msg.contains("Fix:"), "{msg}");
    let text = env.flm(&["--format", "text", "check"]).await;
    assert!(
        text.stdout.contains("⚠ security_db.policy_trusted_proxies"),
        "{}",
        text.stdout
    );

    env.flm(&[
        "security",
        "policy",
        "set",
        "--json",
        r#"{"trusted_proxy_ips":["10.0.0.5"]}"#,
    ])
    .await
    .ok();
    let data = env.flm(&["check"]).await.ok();
    assert_eq!(trusted_check(&data)["status"], "ok", "{data}");
}

#[tokio::test]
async fn ranges_can_be_added_listed_and_unblocked() {
    let env = Env::new();
    let added = env
        .flm(&[
            "security",
            "ip-blocklist",
            "add",
            "2001:DB8:1:0::5/48",
            "--permanent",
        ])
        .await
        .ok();
    assert_eq!(added["ip"], "2001:db8:1::/48", "{added}");
    let list = env.flm(&["security", "ip-blocklist", "list"]).await.ok();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|e| e["ip"] == "2001:db8:1::/48"),
        "{list}"
    );
    // Any spelling of the range finds the stored entry.
    let removed = env
        .flm(&["security", "ip-blocklist", "unblock", "2001:db8:1:0:0::/48"])
        .await
        .ok();
    assert_eq!(removed["removed"], true, "{removed}");
    let list = env.flm(&["security", "ip-blocklist", "list"]).await.ok();
    assert!(list.as_array().unwrap().is_empty(), "{list}");
}
