//! Firewall scripts for publishing FLM: the text a user runs (as root / administrator)
//! to open the proxy's TCP ports to an allow list, and the rollback that removes exactly
//! FLM's rules again.
//!
//! Pure text generation: no detection, no execution (the setup wizard previews, copies
//! and saves the result; applying it with elevation is the desktop shell's job).
//!
//! Safety by construction: every value that reaches a script is re-rendered from a
//! parsed value (`u16` ports, [`IpAddr`] + prefix length), never copied from the input,
//! so no input can inject shell, nft, pf or PowerShell text. Every rule carries FLM's
//! tag (ufw comment `flm`, nftables table `inet flm`, pf anchor `flm`, Windows rule
//! group `FLM`; firewalld rich rules are listed one by one) so the rollback touches
//! nothing else.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{CoreError, FieldProblem};

/// Most ports one script opens (one rule per port and source in ufw/firewalld).
pub const MAX_PORTS: usize = 16;
/// Most allow-list entries one script handles.
pub const MAX_ALLOW: usize = 256;

/// The firewall tool a script is written for.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallTarget {
    /// Ubuntu's Uncomplicated Firewall.
    Ufw,
    /// Fedora / RHEL's firewalld.
    Firewalld,
    /// Plain nftables (Debian and any modern Linux).
    Nftables,
    /// macOS packet filter.
    Pf,
    /// Windows Defender Firewall through PowerShell.
    Powershell,
}

impl FirewallTarget {
    /// Every target, in display order.
    pub const ALL: [FirewallTarget; 5] = [
        FirewallTarget::Ufw,
        FirewallTarget::Firewalld,
        FirewallTarget::Nftables,
        FirewallTarget::Pf,
        FirewallTarget::Powershell,
    ];

    /// The name used on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallTarget::Ufw => "ufw",
            FirewallTarget::Firewalld => "firewalld",
            FirewallTarget::Nftables => "nftables",
            FirewallTarget::Pf => "pf",
            FirewallTarget::Powershell => "powershell",
        }
    }

    /// The shell that runs this target's scripts.
    pub fn shell(self) -> ScriptShell {
        match self {
            FirewallTarget::Powershell => ScriptShell::Powershell,
            _ => ScriptShell::Sh,
        }
    }
}

impl std::fmt::Display for FirewallTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FirewallTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        FirewallTarget::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown firewall `{s}`; use one of ufw, firewalld, nftables, pf, powershell"
                )
            })
    }
}

/// The interpreter of a generated script.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptShell {
    /// POSIX sh (`sh file.sh`, as root).
    Sh,
    /// Windows PowerShell (as administrator).
    Powershell,
}

/// What to generate, as the user gave it (validated by [`generate`]).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRequest {
    /// `ufw`, `firewalld`, `nftables`, `pf` or `powershell`.
    pub target: String,
    /// TCP ports to open, 1..=65535 (duplicates are dropped).
    pub ports: Vec<i64>,
    /// IPv4/IPv6 addresses and CIDR ranges allowed to connect; empty = anyone.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Something the user should know about a generated script.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallWarning {
    /// Stable code (`allow_from_anywhere`, `private_ranges_only`, `accept_only`).
    pub code: String,
    /// The same for a human (English).
    pub message: String,
}

/// A generated firewall script and its rollback.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallScript {
    /// The tool it is written for.
    pub target: FirewallTarget,
    /// How to run it.
    pub shell: ScriptShell,
    /// Suggested file name (`flm-firewall-ufw.sh`, `flm-firewall-powershell.ps1`).
    pub filename: String,
    /// The script.
    pub script: String,
    /// Suggested file name of the rollback.
    pub rollback_filename: String,
    /// The script that removes FLM's rules (and nothing else).
    pub rollback: String,
    /// The ports opened, sorted, without duplicates.
    pub ports: Vec<u16>,
    /// The allow list as written into the script (canonical, without duplicates).
    pub allow: Vec<String>,
    /// Things to know before running it.
    pub warnings: Vec<FirewallWarning>,
}

/// Input that cannot become a script: every problem, with its field path
/// (`target`, `ports`, `ports[1]`, `allow[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid firewall request: {}", list(.problems))]
pub struct FirewallError {
    /// What is wrong, field by field.
    pub problems: Vec<FieldProblem>,
}

fn list(problems: &[FieldProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("`{}`: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<FirewallError> for CoreError {
    fn from(e: FirewallError) -> Self {
        CoreError::InvalidInput(e.to_string())
    }
}

/// One allow-list entry: a network with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Private, loopback, link-local or unique-local: unreachable from the internet.
    fn is_private(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => {
                (a.is_private() || a.is_loopback() || a.is_link_local())
                    && self.prefix >= private_v4_prefix(a)
            }
            IpAddr::V6(a) => {
                let s = a.segments()[0];
                let ula = (s & 0xfe00) == 0xfc00;
                let link = (s & 0xffc0) == 0xfe80;
                (a.is_loopback() && self.prefix == 128)
                    || (ula && self.prefix >= 7)
                    || (link && self.prefix >= 10)
            }
        }
    }
}

fn private_v4_prefix(a: Ipv4Addr) -> u8 {
    match a.octets() {
        [10, ..] => 8,
        [172, ..] => 12,
        [192, 168, ..] => 16,
        [169, 254, ..] => 16,
        _ => 8, // 127/8
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix == Net::max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// Parses `raw` as an address or CIDR range: IPv4-mapped IPv6 folded to IPv4, host
/// bits cleared. Only digits, hex letters, `.`, `:` and one `/` get through.
fn parse_net(raw: &str) -> Result<Net, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(
            "empty entry; enter an IP address or CIDR range, e.g. 203.0.113.7 or 198.51.100.0/24"
                .into(),
        );
    }
    let (addr_s, prefix_s) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr_s.parse().map_err(|_| {
        format!("`{s}` is not an IP address or CIDR range, e.g. 203.0.113.7 or 2001:db8::/32")
    })?;
    let (addr, shift) = match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), 96u8),
            None => (addr, 0),
        },
        v4 => (v4, 0),
    };
    let max = Net::max_prefix(addr);
    let prefix = match prefix_s {
        None => max,
        Some(p) => {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`{s}`: the prefix length after `/` must be a number"
                ));
            }
            let n: u16 = p
                .parse()
                .map_err(|_| format!("`{s}`: the prefix length after `/` must be a number"))?;
            let n = n.checked_sub(u16::from(shift)).ok_or_else(|| {
                format!("`{s}`: an IPv4-mapped range needs a prefix of at least 96")
            })?;
            if n > u16::from(max) {
                return Err(format!(
                    "`{s}`: the prefix length must be at most {max} for an IPv{} address",
                    if max == 32 { 4 } else { 6 }
                ));
            }
            n as u8
        }
    };
    Ok(Net {
        addr: mask(addr, prefix),
        prefix,
    })
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// Validated input.
struct Plan {
    target: FirewallTarget,
    ports: Vec<u16>,
    allow: Vec<Net>,
}

impl Plan {
    fn v4(&self) -> Vec<Net> {
        self.allow.iter().copied().filter(Net::is_v4).collect()
    }
    fn v6(&self) -> Vec<Net> {
        self.allow.iter().copied().filter(|n| !n.is_v4()).collect()
    }
    fn ports_text(&self, sep: &str) -> String {
        self.ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(sep)
    }
}

fn validate(req: &FirewallRequest) -> Result<Plan, FirewallError> {
    let mut problems = Vec::new();
    let mut problem = |field: String, message: String| {
        problems.push(FieldProblem { field, message });
    };
    let target = match req.target.parse::<FirewallTarget>() {
        Ok(t) => Some(t),
        Err(m) => {
            problem("target".into(), m);
            None
        }
    };
    let mut ports = BTreeSet::new();
    if req.ports.is_empty() {
        problem(
            "ports".into(),
            "give at least one TCP port, e.g. 8780".into(),
        );
    }
    for (i, &p) in req.ports.iter().enumerate() {
        match u16::try_from(p) {
            Ok(p) if p >= 1 => {
                ports.insert(p);
            }
            _ => problem(
                format!("ports[{i}]"),
                format!("{p} is not a TCP port; use a number from 1 to 65535"),
            ),
        }
    }
    if ports.len() > MAX_PORTS {
        problem(
            "ports".into(),
            format!("at most {MAX_PORTS} ports per script, got {}", ports.len()),
        );
    }
    let mut allow = BTreeSet::new();
    for (i, raw) in req.allow.iter().enumerate() {
        match parse_net(raw) {
            Ok(n) => {
                allow.insert(n);
            }
            Err(m) => problem(format!("allow[{i}]"), m),
        }
    }
    if allow.len() > MAX_ALLOW {
        problem(
            "allow".into(),
            format!(
                "at most {MAX_ALLOW} allow-list entries per script, got {}; use CIDR ranges",
                allow.len()
            ),
        );
    }
    match target {
        Some(target) if problems.is_empty() => Ok(Plan {
            target,
            ports: ports.into_iter().collect(),
            allow: allow.into_iter().collect(),
        }),
        _ => Err(FirewallError { problems }),
    }
}

/// Validates `req` and writes the script and its rollback.
pub fn generate(req: &FirewallRequest) -> Result<FirewallScript, FirewallError> {
    let plan = validate(req)?;
    let target = plan.target;
    let mut warnings = Vec::new();
    if plan.allow.is_empty() {
        warnings.push(FirewallWarning {
            code: "allow_from_anywhere".into(),
            message: "the allow list is empty: these ports will accept connections from anywhere; only the access key protects the server".into(),
        });
        if target == FirewallTarget::Nftables {
            warnings.push(FirewallWarning {
                code: "accept_only".into(),
                message: "with an empty allow list the nftables table only accepts; if another firewall on this machine drops these ports, open them there too".into(),
            });
        }
    } else if plan.allow.iter().all(Net::is_private) {
        warnings.push(FirewallWarning {
            code: "private_ranges_only".into(),
            message: "the allow list holds only private or link-local ranges: nobody on the internet can connect; add your public IP addresses to publish beyond the LAN".into(),
        });
    }
    let (script, rollback) = match target {
        FirewallTarget::Ufw => (ufw(&plan), ufw_rollback()),
        FirewallTarget::Firewalld => (firewalld(&plan), firewalld_rollback(&plan)),
        FirewallTarget::Nftables => (nftables(&plan), nftables_rollback()),
        FirewallTarget::Pf => (pf(&plan), pf_rollback()),
        FirewallTarget::Powershell => (powershell(&plan), powershell_rollback()),
    };
    let ext = match target.shell() {
        ScriptShell::Sh => "sh",
        ScriptShell::Powershell => "ps1",
    };
    Ok(FirewallScript {
        target,
        shell: target.shell(),
        filename: format!("flm-firewall-{target}.{ext}"),
        script,
        rollback_filename: format!("flm-firewall-{target}-rollback.{ext}"),
        rollback,
        ports: plan.ports.clone(),
        allow: plan.allow.iter().map(Net::to_string).collect(),
        warnings,
    })
}

/// The firewall tool a machine most likely uses: `os` as Rust's `std::env::consts::OS`,
/// `available` the tools found on it. `None` when nothing fits.
pub fn default_target(os: &str, available: &[FirewallTarget]) -> Option<FirewallTarget> {
    match os {
        "windows" => Some(FirewallTarget::Powershell),
        "macos" => Some(FirewallTarget::Pf),
        "linux" => [
            // The manager in charge wins over raw nftables, whose rules it would not know.
            FirewallTarget::Firewalld,
            FirewallTarget::Ufw,
            FirewallTarget::Nftables,
        ]
        .into_iter()
        .find(|t| available.contains(t))
        .or(Some(FirewallTarget::Nftables)),
        _ => available.first().copied(),
    }
}

// ---------------------------------------------------------------------------------------
// script text
// ---------------------------------------------------------------------------------------

fn sources_line(plan: &Plan) -> String {
    if plan.allow.is_empty() {
        "anywhere (the allow list is empty)".into()
    } else {
        plan.allow
            .iter()
            .map(Net::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Header comment lines (`# ` prefixed) shared by every script.
fn header(plan: &Plan, what: &str, run: &str, extra: &[&str]) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "# FLM firewall rules for {} (generated by FLM).",
        plan.target
    );
    let _ = writeln!(h, "# {what}");
    let _ = writeln!(h, "# TCP ports: {}", plan.ports_text(", "));
    let _ = writeln!(h, "# Allowed from: {}", sources_line(plan));
    for e in extra {
        let _ = writeln!(h, "# {e}");
    }
    let _ = writeln!(h, "# Run: {run}");
    h
}

const SH_PRELUDE: &str = "set -eu\n\nif [ \"$(id -u)\" -ne 0 ]; then\n  echo \"run this script as root (sudo sh $0)\" >&2\n  exit 1\nfi\n";

fn require(cmd: &str, package: &str) -> String {
    format!(
        "if ! command -v {cmd} >/dev/null 2>&1; then\n  echo \"{cmd} is not installed (package {package})\" >&2\n  exit 1\nfi\n"
    )
}

fn ufw_delete_tagged() -> &'static str {
    // `ufw status numbered` shows the comment as `# flm`; delete from the highest
    // number down so the remaining numbers stay valid.
    "ufw status numbered | sed -n 's/^\\[ *\\([0-9][0-9]*\\)\\].*# flm$/\\1/p' | sort -rn | while read -r n; do\n  ufw --force delete \"$n\" >/dev/null\ndone\n"
}

fn ufw(plan: &Plan) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s += &header(
        plan,
        "Adds ufw rules tagged with the comment 'flm'; other rules are left alone. Rules FLM added earlier are replaced.",
        "sudo sh flm-firewall-ufw.sh    (undo: sudo sh flm-firewall-ufw-rollback.sh)",
        &[
            "ufw itself is not enabled by this script (that could cut off SSH): run `ufw enable` yourself if `ufw status` says inactive.",
        ],
    );
    s += SH_PRELUDE;
    s += &require("ufw", "ufw");
    s += "\n# Remove FLM's earlier rules first, so the result is exactly the list below.\n";
    s += ufw_delete_tagged();
    s += "\n";
    for p in &plan.ports {
        if plan.allow.is_empty() {
            let _ = writeln!(s, "ufw allow proto tcp to any port {p} comment 'flm'");
        } else {
            for n in &plan.allow {
                let _ = writeln!(
                    s,
                    "ufw allow proto tcp from {n} to any port {p} comment 'flm'"
                );
            }
            // Added after the allows: ufw stops at the first matching rule.
            let _ = writeln!(s, "ufw deny proto tcp to any port {p} comment 'flm'");
        }
    }
    s += "\nif ufw status | grep -q 'Status: inactive'; then\n  echo \"note: ufw is inactive; the rules take effect after 'ufw enable'\" >&2\nfi\necho \"FLM firewall rules added (ufw, comment 'flm')\"\n";
    s
}

fn ufw_rollback() -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Removes every ufw rule FLM added (those with the comment 'flm') and nothing else.\n# Run: sudo sh flm-firewall-ufw-rollback.sh\n",
    );
    s += SH_PRELUDE;
    s += &require("ufw", "ufw");
    s += ufw_delete_tagged();
    s += "echo \"FLM firewall rules removed (ufw)\"\n";
    s
}

fn firewalld_rules(plan: &Plan) -> Vec<String> {
    let mut rules = Vec::new();
    for p in &plan.ports {
        if plan.allow.is_empty() {
            rules.push(format!("rule port port=\"{p}\" protocol=\"tcp\" accept"));
        }
        for n in &plan.allow {
            let family = if n.is_v4() { "ipv4" } else { "ipv6" };
            rules.push(format!(
                "rule family=\"{family}\" source address=\"{n}\" port port=\"{p}\" protocol=\"tcp\" accept"
            ));
        }
    }
    rules
}

fn firewalld(plan: &Plan) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s += &header(
        plan,
        "Adds rich rules to the permanent configuration of firewalld's default zone, then reloads. Sources not listed stay refused by the zone (it rejects what it does not accept).",
        "sudo sh flm-firewall-firewalld.sh    (undo: sudo sh flm-firewall-firewalld-rollback.sh)",
        &[],
    );
    s += SH_PRELUDE;
    s += &require("firewall-cmd", "firewalld");
    s += "firewall-cmd --state >/dev/null\nzone=$(firewall-cmd --get-default-zone)\n\n";
    for r in firewalld_rules(plan) {
        let _ = writeln!(
            s,
            "firewall-cmd --permanent --zone=\"$zone\" --add-rich-rule='{r}' >/dev/null"
        );
    }
    s += "firewall-cmd --reload >/dev/null\necho \"FLM firewall rules added (firewalld, zone $zone)\"\n";
    s
}

fn firewalld_rollback(plan: &Plan) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Removes the rich rules FLM's script added (in whichever zone they are) and nothing else, then reloads.\n# Run: sudo sh flm-firewall-firewalld-rollback.sh\n",
    );
    s += SH_PRELUDE;
    s += &require("firewall-cmd", "firewalld");
    s += "for zone in $(firewall-cmd --permanent --get-zones); do\n";
    for r in firewalld_rules(plan) {
        let _ = writeln!(
            s,
            "  if firewall-cmd --permanent --zone=\"$zone\" --query-rich-rule='{r}' >/dev/null 2>&1; then\n    firewall-cmd --permanent --zone=\"$zone\" --remove-rich-rule='{r}' >/dev/null\n  fi"
        );
    }
    s +=
        "done\nfirewall-cmd --reload >/dev/null\necho \"FLM firewall rules removed (firewalld)\"\n";
    s
}

/// The nft ruleset (without the shell around it).
fn nft_ruleset(plan: &Plan) -> String {
    let ports = format!("{{ {} }}", plan.ports_text(", "));
    let mut r = String::new();
    // Declaring then deleting makes the load atomic and repeatable: the old table
    // goes and the new one comes in one transaction.
    r += "table inet flm\ndelete table inet flm\n\ntable inet flm {\n";
    let set = |name: &str, ty: &str, nets: &[Net]| -> String {
        let elems = nets
            .iter()
            .map(Net::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        format!("  set {name} {{\n    type {ty}\n    flags interval\n    elements = {{ {elems} }}\n  }}\n\n")
    };
    let (v4, v6) = (plan.v4(), plan.v6());
    if !v4.is_empty() {
        r += &set("allow4", "ipv4_addr", &v4);
    }
    if !v6.is_empty() {
        r += &set("allow6", "ipv6_addr", &v6);
    }
    r += "  chain input {\n    type filter hook input priority filter; policy accept;\n";
    let _ = writeln!(r, "    iif \"lo\" tcp dport {ports} accept");
    if plan.allow.is_empty() {
        let _ = writeln!(r, "    tcp dport {ports} accept");
    } else {
        if !v4.is_empty() {
            let _ = writeln!(r, "    ip saddr @allow4 tcp dport {ports} accept");
        }
        if !v6.is_empty() {
            let _ = writeln!(r, "    ip6 saddr @allow6 tcp dport {ports} accept");
        }
        let _ = writeln!(r, "    tcp dport {ports} counter drop");
    }
    r += "  }\n}\n";
    r
}

fn nftables(plan: &Plan) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s += &header(
        plan,
        "Loads FLM's own nftables table `inet flm` (IPv4 and IPv6); other tables are left alone. Loading it again replaces it.",
        "sudo sh flm-firewall-nftables.sh    (undo: sudo sh flm-firewall-nftables-rollback.sh)",
        &["Not persistent across reboots: add the ruleset to /etc/nftables.conf to keep it."],
    );
    s += SH_PRELUDE;
    s += &require("nft", "nftables");
    s += "nft -f - <<'FLM_NFT'\n";
    s += &nft_ruleset(plan);
    s += "FLM_NFT\necho \"FLM firewall rules loaded (nftables table inet flm)\"\n";
    s
}

fn nftables_rollback() -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Deletes FLM's nftables table `inet flm` and nothing else.\n# Run: sudo sh flm-firewall-nftables-rollback.sh\n",
    );
    s += SH_PRELUDE;
    s += &require("nft", "nftables");
    s += "if nft list table inet flm >/dev/null 2>&1; then\n  nft delete table inet flm\nfi\necho \"FLM firewall rules removed (nftables)\"\n";
    s
}

fn pf(plan: &Plan) -> String {
    let ports = format!("{{ {} }}", plan.ports_text(" "));
    let mut s = String::from("#!/bin/sh\n");
    s += &header(
        plan,
        "Loads FLM's rules into the pf anchor \"flm\" and hooks the anchor into the running ruleset (/etc/pf.conf plus `anchor \"flm\"`); other rules are left alone.",
        "sudo sh flm-firewall-pf.sh    (undo: sudo sh flm-firewall-pf-rollback.sh)",
        &["Not persistent across reboots: add `anchor \"flm\"` to /etc/pf.conf and load the rules from a file to keep them."],
    );
    s += SH_PRELUDE;
    s += &require("pfctl", "macOS pf");
    s += "if ! pfctl -s rules 2>/dev/null | grep -q '^anchor \"flm\"'; then\n  { cat /etc/pf.conf; echo 'anchor \"flm\"'; } | pfctl -q -f -\nfi\n";
    s += "pfctl -q -a flm -f - <<'FLM_PF'\n";
    if plan.allow.is_empty() {
        let _ = writeln!(s, "pass in quick proto tcp to any port {ports}");
    } else {
        let nets = plan
            .allow
            .iter()
            .map(Net::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(s, "table <flm_allow> const {{ {nets} }}");
        let _ = writeln!(s, "pass in quick on lo0 proto tcp to any port {ports}");
        let _ = writeln!(
            s,
            "pass in quick proto tcp from <flm_allow> to any port {ports}"
        );
        let _ = writeln!(s, "block drop in quick proto tcp to any port {ports}");
    }
    s += "FLM_PF\n# pf may be off on macOS; -E enables it (and counts this use of it).\npfctl -q -E 2>/dev/null || true\necho \"FLM firewall rules loaded (pf anchor flm)\"\n";
    s
}

fn pf_rollback() -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Flushes FLM's pf anchor \"flm\" (its rules and tables) and nothing else.\n# Run: sudo sh flm-firewall-pf-rollback.sh\n",
    );
    s += SH_PRELUDE;
    s += &require("pfctl", "macOS pf");
    s += "pfctl -q -a flm -F all 2>/dev/null || true\necho \"FLM firewall rules removed (pf anchor flm)\"\n";
    s
}

fn powershell(plan: &Plan) -> String {
    let ports = plan.ports_text(",");
    let mut s = String::new();
    let h = header(
        plan,
        "Adds Windows Defender Firewall inbound rules in the group \"FLM\"; other rules are left alone. Rules FLM added earlier are replaced.",
        "in PowerShell as administrator: powershell -ExecutionPolicy Bypass -File .\\flm-firewall-powershell.ps1",
        &[
            "Windows refuses inbound connections that no rule allows, so only the listed sources get in,",
            "unless another rule (e.g. one allowing flm.exe) allows them: check with Get-NetFirewallApplicationFilter.",
        ],
    );
    s += &h;
    s += "#Requires -RunAsAdministrator\n$ErrorActionPreference = 'Stop'\n\n";
    s +=
        "Get-NetFirewallRule -Group 'FLM' -ErrorAction SilentlyContinue | Remove-NetFirewallRule\n";
    let remote = if plan.allow.is_empty() {
        "Any".to_owned()
    } else {
        plan.allow
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let _ = writeln!(
        s,
        "New-NetFirewallRule -DisplayName 'FLM (TCP {ports})' -Group 'FLM' -Direction Inbound -Action Allow -Protocol TCP -LocalPort {ports} -RemoteAddress {remote} -Profile Any | Out-Null"
    );
    s += "Write-Output 'FLM firewall rules added (group FLM)'\n";
    s
}

fn powershell_rollback() -> String {
    "# Removes the Windows Defender Firewall rules of the group \"FLM\" and nothing else.\n# Run in PowerShell as administrator: powershell -ExecutionPolicy Bypass -File .\\flm-firewall-powershell-rollback.ps1\n#Requires -RunAsAdministrator\n$ErrorActionPreference = 'Stop'\n\nRemove-NetFirewallRule -Group 'FLM' -ErrorAction SilentlyContinue\nWrite-Output 'FLM firewall rules removed (group FLM)'\n".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, ports: &[i64], allow: &[&str]) -> FirewallRequest {
        FirewallRequest {
            target: target.into(),
            ports: ports.to_vec(),
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn ok(target: &str, ports: &[i64], allow: &[&str]) -> FirewallScript {
        generate(&req(target, ports, allow)).unwrap()
    }

    fn fields(e: FirewallError) -> Vec<String> {
        e.problems.into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn ports_are_validated_field_by_field_and_deduplicated() {
        let e = generate(&req("ufw", &[8780, 0, 70000, -1], &[])).unwrap_err();
        assert_eq!(fields(e), ["ports[1]", "ports[2]", "ports[3]"]);
        let e = generate(&req("ufw", &[], &[])).unwrap_err();
        assert_eq!(fields(e), ["ports"]);
        let s = ok("ufw", &[8781, 8780, 8781], &[]);
        assert_eq!(s.ports, [8780, 8781]);
        let many: Vec<i64> = (1..=17).collect();
        assert_eq!(
            fields(generate(&req("ufw", &many, &[])).unwrap_err()),
            ["ports"]
        );
    }

    #[test]
    fn target_and_entries_are_validated_together() {
        let e = generate(&req(
            "iptables",
            &[8780],
            &[
                "10.0.0.1",
                "1.2.3.4; rm -rf /",
                "10.0.0.0/33",
                "fe80::1%eth0",
                "",
                "::/129",
                "1.2.3.4/",
            ],
        ))
        .unwrap_err();
        assert_eq!(
            fields(e.clone()),
            ["target", "allow[1]", "allow[2]", "allow[3]", "allow[4]", "allow[5]", "allow[6]"]
        );
        assert!(e.to_string().contains("unknown firewall `iptables`"));
        let core: CoreError = e.into();
        assert_eq!(core.code(), "INVALID_ARGUMENT");
    }

    #[test]
    fn entries_are_canonical_and_deduplicated() {
        let s = ok(
            "nftables",
            &[8780],
            &[
                "192.168.1.77/24",
                "192.168.1.0/24",
                "::ffff:203.0.113.9",
                "2001:DB8::1/32",
                " 10.0.0.1/32 ",
                "::ffff:10.1.0.0/112",
            ],
        );
        assert_eq!(
            s.allow,
            [
                "10.0.0.1",
                "10.1.0.0/16",
                "192.168.1.0/24",
                "203.0.113.9",
                "2001:db8::/32"
            ]
        );
    }

    #[test]
    fn warnings_for_empty_and_private_only_allow_lists() {
        let codes = |s: &FirewallScript| {
            s.warnings
                .iter()
                .map(|w| w.code.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(codes(&ok("ufw", &[8780], &[])), ["allow_from_anywhere"]);
        assert_eq!(
            codes(&ok("nftables", &[8780], &[])),
            ["allow_from_anywhere", "accept_only"]
        );
        assert_eq!(
            codes(&ok(
                "ufw",
                &[8780],
                &["192.168.0.0/16", "fe80::/64", "fd00::/8", "10.0.0.5"]
            )),
            ["private_ranges_only"]
        );
        assert!(codes(&ok("ufw", &[8780], &["192.168.0.0/16", "203.0.113.7"])).is_empty());
        // 10.0.0.0/7 reaches beyond the private range.
        assert!(codes(&ok("ufw", &[8780], &["10.0.0.0/7"])).is_empty());
    }

    #[test]
    fn ufw_script_tags_every_rule_and_denies_the_rest() {
        let s = ok("ufw", &[8780, 8781], &["192.168.1.0/24", "2001:db8::/32"]);
        assert_eq!(s.shell, ScriptShell::Sh);
        assert_eq!(s.filename, "flm-firewall-ufw.sh");
        assert_eq!(s.rollback_filename, "flm-firewall-ufw-rollback.sh");
        assert!(s
            .script
            .starts_with("#!/bin/sh\n# FLM firewall rules for ufw"));
        assert!(s.script.contains("set -eu\n"));
        for line in s
            .script
            .lines()
            .filter(|l| l.starts_with("ufw allow") || l.starts_with("ufw deny"))
        {
            assert!(line.ends_with(" comment 'flm'"), "{line}");
        }
        assert!(s
            .script
            .contains("ufw allow proto tcp from 192.168.1.0/24 to any port 8780 comment 'flm'"));
        assert!(s
            .script
            .contains("ufw allow proto tcp from 2001:db8::/32 to any port 8781 comment 'flm'"));
        let allow = s
            .script
            .find("from 2001:db8::/32 to any port 8780")
            .unwrap();
        let deny = s
            .script
            .find("ufw deny proto tcp to any port 8780 comment 'flm'")
            .unwrap();
        assert!(allow < deny, "the deny must follow the allows");
        assert!(s.rollback.contains("# flm$"));
        assert!(s.rollback.contains("ufw --force delete"));
        // Open to everyone: no deny.
        let open = ok("ufw", &[8780], &[]);
        assert!(open
            .script
            .contains("ufw allow proto tcp to any port 8780 comment 'flm'"));
        assert!(!open.script.contains("ufw deny"));
    }

    #[test]
    fn firewalld_script_uses_rich_rules_per_family_and_rollback_lists_them() {
        let s = ok("firewalld", &[8780], &["203.0.113.0/24", "2001:db8::1"]);
        assert!(s.script.contains("--permanent --zone=\"$zone\" --add-rich-rule='rule family=\"ipv4\" source address=\"203.0.113.0/24\" port port=\"8780\" protocol=\"tcp\" accept'"));
        assert!(s
            .script
            .contains("rule family=\"ipv6\" source address=\"2001:db8::1\" port port=\"8780\""));
        assert!(s.script.contains("firewall-cmd --reload"));
        assert!(s.rollback.contains("--remove-rich-rule='rule family=\"ipv4\" source address=\"203.0.113.0/24\" port port=\"8780\" protocol=\"tcp\" accept'"));
        assert!(s.rollback.contains("--reload"));
        let open = ok("firewalld", &[8780], &[]);
        assert!(open
            .script
            .contains("--add-rich-rule='rule port port=\"8780\" protocol=\"tcp\" accept'"));
    }

    #[test]
    fn nftables_script_has_its_own_table_with_both_families() {
        let s = ok(
            "nftables",
            &[8780, 8781],
            &["192.168.1.0/24", "2001:db8::/32"],
        );
        assert!(s.script.contains("table inet flm {"));
        assert!(s.script.contains("type ipv4_addr"));
        assert!(s.script.contains("elements = { 2001:db8::/32 }"));
        assert!(s
            .script
            .contains("ip saddr @allow4 tcp dport { 8780, 8781 } accept"));
        assert!(s
            .script
            .contains("ip6 saddr @allow6 tcp dport { 8780, 8781 } accept"));
        assert!(s.script.contains("tcp dport { 8780, 8781 } counter drop"));
        assert!(s
            .script
            .contains("iif \"lo\" tcp dport { 8780, 8781 } accept"));
        assert!(s.rollback.contains("nft delete table inet flm"));
        // Only IPv6 listed: no IPv4 set, IPv4 dropped.
        let v6 = ok("nftables", &[8780], &["2001:db8::/32"]);
        assert!(!v6.script.contains("allow4"));
    }

    #[test]
    fn pf_script_uses_the_flm_anchor() {
        let s = ok("pf", &[8780], &["192.168.1.0/24", "2001:db8::/32"]);
        assert!(s.script.contains("pfctl -q -a flm -f -"));
        assert!(s
            .script
            .contains("table <flm_allow> const { 192.168.1.0/24, 2001:db8::/32 }"));
        assert!(s
            .script
            .contains("block drop in quick proto tcp to any port { 8780 }"));
        assert!(s.rollback.contains("pfctl -q -a flm -F all"));
    }

    #[test]
    fn powershell_script_uses_the_flm_group() {
        let s = ok(
            "powershell",
            &[8780, 8781],
            &["192.168.1.0/24", "2001:db8::/32"],
        );
        assert_eq!(s.shell, ScriptShell::Powershell);
        assert_eq!(s.filename, "flm-firewall-powershell.ps1");
        assert!(s.script.contains("#Requires -RunAsAdministrator"));
        assert!(s.script.contains("-Group 'FLM' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 8780,8781 -RemoteAddress '192.168.1.0/24','2001:db8::/32'"));
        assert!(s.rollback.contains("Remove-NetFirewallRule -Group 'FLM'"));
        assert!(ok("powershell", &[1], &[])
            .script
            .contains("-RemoteAddress Any"));
    }

    #[test]
    fn default_targets() {
        use FirewallTarget::*;
        assert_eq!(default_target("windows", &[]), Some(Powershell));
        assert_eq!(default_target("macos", &[Pf]), Some(Pf));
        assert_eq!(default_target("linux", &[Nftables, Ufw]), Some(Ufw));
        assert_eq!(
            default_target("linux", &[Nftables, Firewalld, Ufw]),
            Some(Firewalld)
        );
        assert_eq!(default_target("linux", &[]), Some(Nftables));
        assert_eq!(default_target("freebsd", &[]), None);
    }

    #[test]
    fn targets_round_trip() {
        for t in FirewallTarget::ALL {
            assert_eq!(t.as_str().parse::<FirewallTarget>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
