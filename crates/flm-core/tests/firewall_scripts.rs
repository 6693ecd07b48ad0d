//! The generated firewall scripts checked with real tools: every sh script parses with
//! `sh -n` and `bash -n`; the nftables script is applied for real inside a network
//! namespace this test creates (root + `ip` + `nft` needed; skipped loudly otherwise),
//! then rolled back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::{Command, Output};

use flm_core::firewall::{generate, FirewallRequest, FirewallScript, FirewallTarget};

fn script(target: FirewallTarget, ports: &[i64], allow: &[&str]) -> FirewallScript {
    generate(&FirewallRequest {
        target: target.as_str().into(),
        ports: ports.to_vec(),
        allow: allow.iter().map(|s| (*s).to_owned()).collect(),
    })
    .unwrap()
}

/// Writes `text` as `name` in a directory of its own (tests run in parallel and reuse
/// the scripts' file names).
fn write_tmp(name: &str, text: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("flm-fw-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_sh_script_and_rollback_parses_in_sh_and_bash() {
    let allows: [&[&str]; 3] = [&[], &["192.168.1.0/24", "2001:db8::/32"], &["203.0.113.7"]];
    for target in FirewallTarget::ALL {
        if target == FirewallTarget::Powershell {
            continue;
        }
        for allow in allows {
            let s = script(target, &[8780, 8781], allow);
            for (name, body) in [
                (&s.filename, &s.script),
                (&s.rollback_filename, &s.rollback),
            ] {
                let path = write_tmp(name, body);
                for shell in ["sh", "bash"] {
                    let o = run(Command::new(shell).arg("-n").arg(&path));
                    assert!(
                        o.status.success(),
                        "{shell} -n {name}:\n{}\n{body}",
                        text(&o)
                    );
                }
            }
        }
    }
}

#[test]
fn hostile_entries_never_reach_a_script() {
    for target in FirewallTarget::ALL {
        let e = generate(&FirewallRequest {
            target: target.as_str().into(),
            ports: vec![8780],
            allow: vec![
                "1.2.3.4'; touch /tmp/pwned; '".into(),
                "$(reboot)".into(),
                "1.2.3.4\nufw disable".into(),
                "`id`".into(),
            ],
        })
        .unwrap_err();
        assert_eq!(e.problems.len(), 4, "{target}: {e}");
    }
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Runs `sh file` inside the namespace.
fn in_ns(ns: &str, args: &[&str]) -> Output {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

#[test]
fn nftables_script_applies_in_a_network_namespace_and_rolls_back() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root || !have("ip") || !have("nft") {
        eprintln!(
            "\n!!!!!!!! SKIPPED nftables_script_applies_in_a_network_namespace_and_rolls_back: \
             needs root, `ip` (iproute2) and `nft` (Debian package nftables) !!!!!!!!\n"
        );
        return;
    }
    let name = format!("flmfw{}", std::process::id());
    let o = run(Command::new("ip").args(["netns", "add", &name]));
    assert!(o.status.success(), "ip netns add: {}", text(&o));
    let ns = Netns(name);

    let s = script(
        FirewallTarget::Nftables,
        &[8780, 8781],
        &["192.168.1.0/24", "203.0.113.7", "2001:db8::/32"],
    );
    let apply = write_tmp(&s.filename, &s.script);
    let rollback = write_tmp(&s.rollback_filename, &s.rollback);
    let apply = apply.to_str().unwrap();
    let rollback = rollback.to_str().unwrap();

    // A table of somebody else's, which the rollback must leave alone.
    let o = in_ns(&ns.0, &["nft", "add", "table", "inet", "other"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = in_ns(&ns.0, &["sh", apply]);
    assert!(o.status.success(), "apply:\n{}", text(&o));
    // Applying twice replaces the table (idempotent), it does not fail or duplicate.
    let o = in_ns(&ns.0, &["sh", apply]);
    assert!(o.status.success(), "apply again:\n{}", text(&o));

    let o = in_ns(&ns.0, &["nft", "list", "table", "inet", "flm"]);
    assert!(o.status.success(), "{}", text(&o));
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    for want in [
        "hook input",
        "192.168.1.0/24",
        "203.0.113.7",
        "2001:db8::/32",
        "ip saddr @allow4 tcp dport { 8780, 8781 } accept",
        "ip6 saddr @allow6 tcp dport { 8780, 8781 } accept",
        "tcp dport { 8780, 8781 } counter packets 0 bytes 0 drop",
    ] {
        assert!(listed.contains(want), "missing `{want}` in:\n{listed}");
    }
    assert_eq!(
        listed.matches("chain input").count(),
        1,
        "applied twice must not duplicate:\n{listed}"
    );

    let o = in_ns(&ns.0, &["sh", rollback]);
    assert!(o.status.success(), "rollback:\n{}", text(&o));
    let o = in_ns(&ns.0, &["nft", "list", "table", "inet", "flm"]);
    assert!(
        !o.status.success(),
        "table inet flm still there after rollback"
    );
    let o = in_ns(&ns.0, &["nft", "list", "table", "inet", "other"]);
    assert!(
        o.status.success(),
        "the rollback removed another table: {}",
        text(&o)
    );
    // Rolling back twice is harmless.
    let o = in_ns(&ns.0, &["sh", rollback]);
    assert!(o.status.success(), "rollback again:\n{}", text(&o));
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Two namespaces joined by a veth pair: `srv` (10.77.0.1) runs TCP listeners on two
/// ports (bounded in time), `cli` (10.77.0.2) connects to them.
struct Pair {
    srv: Netns,
    cli: Netns,
    listener: std::process::Child,
}

impl Pair {
    fn new(tag: &str, ports: [u16; 2]) -> Pair {
        let pid = std::process::id() % 100_000;
        let srv = Netns(format!("flm{tag}s{pid}"));
        let cli = Netns(format!("flm{tag}c{pid}"));
        for ns in [&srv.0, &cli.0] {
            let o = run(Command::new("ip").args(["netns", "add", ns]));
            assert!(o.status.success(), "{}", text(&o));
        }
        let (veth_s, veth_c) = (format!("{tag}s{pid}"), format!("{tag}c{pid}"));
        let o = run(Command::new("ip").args([
            "link", "add", &veth_s, "netns", &srv.0, "type", "veth", "peer", "name", &veth_c,
            "netns", &cli.0,
        ]));
        assert!(o.status.success(), "{}", text(&o));
        for (ns, dev, addr) in [
            (&srv.0, &veth_s, "10.77.0.1/24"),
            (&cli.0, &veth_c, "10.77.0.2/24"),
        ] {
            let o = in_ns(
                ns,
                &[
                    "sh",
                    "-c",
                    &format!(
                        "ip link set lo up && ip addr add {addr} dev {dev} && ip link set {dev} up"
                    ),
                ],
            );
            assert!(o.status.success(), "{}", text(&o));
        }
        let server = format!(
            "import socket,threading,time\n\
             def serve(p):\n  s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('0.0.0.0',p)); s.listen(8)\n  while True:\n    c,_=s.accept(); c.sendall(b'ok'); c.close()\n\
             for p in ({}, {}): threading.Thread(target=serve,args=(p,),daemon=True).start()\n\
             time.sleep(60)\n",
            ports[0], ports[1]
        );
        let listener = Command::new("ip")
            .args(["netns", "exec", &srv.0, "python3", "-c", &server])
            .spawn()
            .unwrap();
        let pair = Pair { srv, cli, listener };
        let up = (0..50).any(|_| {
            let ok = pair.connect(ports[0]);
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            ok
        });
        assert!(up, "test listeners did not come up");
        pair
    }

    fn connect(&self, port: u16) -> bool {
        let probe = format!(
            "import socket\ns=socket.create_connection(('10.77.0.1',{port}),timeout=1.5)\nprint(s.recv(2).decode())"
        );
        in_ns(&self.cli.0, &["python3", "-c", &probe])
            .status
            .success()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
    }
}

#[test]
fn nftables_script_drops_other_sources_for_real() {
    // The server side loads the script allowing only 10.77.0.9; the client (10.77.0.2)
    // is refused on the port, while another port stays open. Real packets, real rules.
    if !is_root() || !have("ip") || !have("nft") || !have("python3") {
        eprintln!(
            "\n!!!!!!!! SKIPPED nftables_script_drops_other_sources_for_real: needs root, ip, nft, python3 !!!!!!!!\n"
        );
        return;
    }
    let pair = Pair::new("nf", [18780, 18790]);
    let s = script(FirewallTarget::Nftables, &[18780], &["10.77.0.9"]);
    let apply = write_tmp(&format!("real-{}", s.filename), &s.script);
    let o = in_ns(&pair.srv.0, &["sh", apply.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !pair.connect(18780),
        "a source not on the allow list got through"
    );
    assert!(
        pair.connect(18790),
        "a port FLM does not manage was affected"
    );

    // Allowing the client's range lets it in.
    let s = script(FirewallTarget::Nftables, &[18780], &["10.77.0.0/24"]);
    let apply = write_tmp(&format!("real2-{}", s.filename), &s.script);
    let o = in_ns(&pair.srv.0, &["sh", apply.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(pair.connect(18780), "an allowed source was refused");
}

/// Runs `script` inside `ns` with a private copy of /etc/ufw bind-mounted over the real
/// one: `ip netns exec` gives the command its own mount namespace, so neither the
/// machine's ufw configuration nor its packet filter is touched.
fn ufw_in_ns(ns: &str, etc_copy: &std::path::Path, script: &str) -> Output {
    let cmd = format!("mount --bind {} /etc/ufw && {script}", etc_copy.display());
    in_ns(ns, &["sh", "-c", &cmd])
}

#[test]
fn ufw_script_applies_in_a_network_namespace_and_rolls_back() {
    if !is_root() || !have("ip") || !have("ufw") || !have("python3") {
        eprintln!(
            "\n!!!!!!!! SKIPPED ufw_script_applies_in_a_network_namespace_and_rolls_back: \
             needs root, ip, python3 and ufw (Debian package ufw; it stays disabled on the machine) !!!!!!!!\n"
        );
        return;
    }
    let pair = Pair::new("uf", [18781, 18791]);
    let etc = std::env::temp_dir().join(format!("flm-fw-ufw-etc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&etc);
    let o = run(Command::new("cp").args(["-a", "/etc/ufw"]).arg(&etc));
    assert!(o.status.success(), "{}", text(&o));

    let s = script(
        FirewallTarget::Ufw,
        &[18781],
        &["10.77.0.9", "2001:db8::/32"],
    );
    let apply = write_tmp(&format!("ufw-{}", s.filename), &s.script);
    let rollback = write_tmp(&format!("ufw-{}", s.rollback_filename), &s.rollback);
    let (apply, rollback) = (apply.display(), rollback.display());

    // ufw on, incoming allowed by default (so only FLM's deny can refuse), and a rule
    // of somebody else's that the rollback must keep.
    let o = ufw_in_ns(
        &pair.srv.0,
        &etc,
        "ufw default allow incoming && ufw --force enable && ufw allow 22/tcp",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(pair.connect(18781), "open before the script");

    for _ in 0..2 {
        // Twice: the second run replaces FLM's rules instead of duplicating them.
        let o = ufw_in_ns(&pair.srv.0, &etc, &format!("sh {apply}"));
        assert!(o.status.success(), "apply:\n{}", text(&o));
    }
    let o = ufw_in_ns(&pair.srv.0, &etc, "ufw status numbered");
    let status = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(status.matches("# flm").count(), 4, "{status}");
    assert!(status.contains("10.77.0.9"), "{status}");
    assert!(status.contains("2001:db8::/32"), "{status}");
    assert!(
        !pair.connect(18781),
        "a source not on the allow list got through:\n{status}"
    );
    assert!(
        pair.connect(18791),
        "a port FLM does not manage was affected"
    );

    let o = ufw_in_ns(
        &pair.srv.0,
        &etc,
        &format!("sh {rollback} && ufw status numbered"),
    );
    assert!(o.status.success(), "rollback:\n{}", text(&o));
    let status = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!status.contains("# flm"), "{status}");
    assert!(
        status.contains("22/tcp"),
        "the rollback removed another rule:\n{status}"
    );
    assert!(pair.connect(18781), "still refused after the rollback");
    let _ = std::fs::remove_dir_all(&etc);
}
