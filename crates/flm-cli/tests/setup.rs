//! The setup wizard's backend end to end: the real daemon (`flm ui`) serves
//! `/api/v1/setup/platform` (firewall tools found on this machine's PATH) and
//! `/api/v1/setup/firewall` (scripts, 422 with fields) behind the session guard; and
//! `flm security firewall-script` for headless machines, with ports from the running
//! proxy and the allow list from the stored policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{AppSession, Env};
use serde_json::json;

fn fake_tool(env: &Env, name: &str) {
    let p = env.dir.path().join("bin").join(name);
    std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn setup_api_detects_the_platform_and_writes_firewall_scripts() {
    let env = Env::new();
    // The daemon looks for the tools' binaries: a ufw on its PATH makes ufw available
    // and (with no firewalld on this machine) the preselected target.
    fake_tool(&env, "ufw");
    let _guard = env.guard();
    let s = AppSession::open(&env).await;

    let (status, p) = s.get("/setup/platform").await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["os"], std::env::consts::OS);
    let tools = p["firewalls"].as_array().unwrap();
    let names: Vec<&str> = tools
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ufw", "firewalld", "nftables", "pf", "powershell"],
        "{p}"
    );
    let ufw = &tools[0];
    assert_eq!(ufw["available"], true, "{p}");
    assert!(ufw["path"].as_str().unwrap().ends_with("/bin/ufw"), "{p}");
    let nft_here = std::path::Path::new("/usr/sbin/nft").exists();
    assert_eq!(tools[2]["available"], nft_here, "{p}");
    let firewalld_here = std::path::Path::new("/usr/bin/firewall-cmd").exists()
        || std::path::Path::new("/usr/sbin/firewall-cmd").exists();
    if !firewalld_here {
        assert_eq!(p["default_target"], "ufw", "{p}");
    }

    // A script: ufw, the port in every rule, warnings for an open allow list.
    let (status, fw) = s
        .post(
            "/setup/firewall",
            &json!({"target": "ufw", "ports": [8780, 8781, 8780], "allow": ["203.0.113.0/24", "2001:db8::1"]}),
            true,
        )
        .await;
    assert_eq!(status, 200, "{fw}");
    assert_eq!(fw["shell"], "sh");
    assert_eq!(fw["filename"], "flm-firewall-ufw.sh");
    assert_eq!(fw["ports"], json!([8780, 8781]));
    let script = fw["script"].as_str().unwrap();
    assert!(
        script.contains("ufw allow proto tcp from 203.0.113.0/24 to any port 8781 comment 'flm'"),
        "{script}"
    );
    assert!(fw["rollback"].as_str().unwrap().contains("# flm$"));
    assert_eq!(fw["warnings"], json!([]));

    let (status, ps) = s
        .post(
            "/setup/firewall",
            &json!({"target": "powershell", "ports": [8780], "allow": []}),
            true,
        )
        .await;
    assert_eq!(status, 200, "{ps}");
    assert_eq!(ps["shell"], "powershell");
    assert_eq!(
        ps["rollback_filename"],
        "flm-firewall-powershell-rollback.ps1"
    );
    assert_eq!(ps["warnings"][0]["code"], "allow_from_anywhere");

    // Bad input: 422 with every field, in the envelope, with a request id.
    let (status, bad) = s
        .post(
            "/setup/firewall",
            &json!({"target": "iptables", "ports": [0, 8780, 70000], "allow": ["10.0.0.1", "10.0.0.0/40; reboot"]}),
            true,
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_firewall_request");
    assert!(bad["error"]["request_id"].is_string());
    let paths: Vec<&str> = bad["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["target", "ports[0]", "ports[2]", "allow[1]"],
        "{bad}"
    );
    let (status, bad) = s
        .post(
            "/setup/firewall",
            &json!({"target": "ufw", "ports": "8780"}),
            true,
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["error"]["fields"][0]["path"], "ports");

    // The session guard covers the new routes: no CSRF header → 403, no cookie → 401.
    let (status, _) = s
        .post(
            "/setup/firewall",
            &json!({"target": "ufw", "ports": [8780]}),
            false,
        )
        .await;
    assert_eq!(status, 403);
    let r = s
        .http
        .get(format!("{}/api/v1/setup/platform", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn firewall_script_command_uses_the_running_proxy_ports_and_the_policy() {
    let env = Env::new();
    let _guard = env.guard();

    // No proxy: the configured port; no policy: open to anyone, with a warning.
    let out = env
        .flm(&[
            "security",
            "firewall-script",
            "--target",
            "nftables",
            "--format",
            "json",
        ])
        .await
        .ok();
    assert_eq!(out["ports"], json!([8780]), "{out}");
    assert_eq!(out["warnings"][0]["code"], "allow_from_anywhere");
    assert!(out["script"]
        .as_str()
        .unwrap()
        .contains("tcp dport { 8780 } accept"));

    env.flm(&[
        "security",
        "policy",
        "set",
        "--json",
        r#"{"ip_whitelist":["198.51.100.0/24","2001:db8::/48"]}"#,
        "--format",
        "json",
    ])
    .await
    .ok();
    let port = common::free_port();
    let ps = port.to_string();
    env.flm(&["proxy", "start", "--port", &ps, "--format", "json"])
        .await
        .ok();

    // Text mode prints the script itself (here: the ports of the running proxy).
    let text = env
        .flm(&[
            "security",
            "firewall-script",
            "--target",
            "ufw",
            "--format",
            "text",
        ])
        .await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.starts_with("#!/bin/sh\n"), "{}", text.stdout);
    assert!(
        text.stdout.contains(&format!(
            "ufw allow proto tcp from 198.51.100.0/24 to any port {port} comment 'flm'"
        )),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains(&format!(
        "ufw allow proto tcp from 2001:db8::/48 to any port {port} comment 'flm'"
    )));
    assert!(text.stdout.contains(&format!(
        "ufw deny proto tcp to any port {port} comment 'flm'"
    )));

    // --output writes the file (owner-only), --rollback the rollback.
    let file = env.dir.path().join("rollback.ps1");
    let fs = file.display().to_string();
    let out = env
        .flm(&[
            "security",
            "firewall-script",
            "--target",
            "powershell",
            "--port",
            "9443",
            "--rollback",
            "--output",
            &fs,
            "--format",
            "json",
        ])
        .await
        .ok();
    assert_eq!(out["path"], fs.as_str());
    assert_eq!(out["ports"], json!([9443]));
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains("Remove-NetFirewallRule -Group 'FLM'"),
        "{written}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A bad port is refused by the parser with a precise message.
    let bad = env
        .flm(&[
            "security",
            "firewall-script",
            "--target",
            "pf",
            "--port",
            "70000",
            "--format",
            "json",
        ])
        .await;
    assert_ne!(bad.code, 0);
    assert!(bad.stdout.contains("70000"), "{}", bad.stdout);

    env.flm(&["proxy", "stop", "--format", "json"]).await.ok();
}
