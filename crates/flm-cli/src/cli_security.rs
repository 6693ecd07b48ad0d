//! Command-line grammar of `flm security …` (clap). Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `flm security …`
#[derive(Debug, Subcommand)]
pub enum SecurityCmd {
    /// Show or replace the security policy (`default`).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// List, add and lift IP blocks.
    #[command(subcommand)]
    IpBlocklist(BlocklistCmd),
    /// Page through, verify, export and archive the tamper-evident audit log.
    #[command(subcommand)]
    AuditLogs(AuditCmd),
    /// Back up and restore security.db.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Intrusion attempts the proxy recorded.
    Intrusion(IntrusionArgs),
    /// Anomalies the proxy detected.
    Anomaly(AnomalyArgs),
    /// Current rate-limit windows the proxy persisted (per API key id, and per client
    /// IP as `ip:<address>`).
    RateLimits(RateLimitsArgs),
    /// The TLS certificates FLM manages (self-signed, local CA, packaged-ca server
    /// certificate, ACME): subject, SANs, expiry and files.
    #[command(subcommand)]
    Certificates(CertificatesCmd),
    /// Add FLM's local root CA (created on first use) to this machine's trust store,
    /// so browsers and tools trust `--mode packaged-ca` without warnings. Needs root.
    InstallCa {
        /// The CA certificate to register [default: <data-dir>/certs/flm-ca.crt].
        #[arg(long, value_name = "PEM")]
        cert_path: Option<PathBuf>,
        /// Show what would be done without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove FLM's local root CA from this machine's trust store. Needs root.
    UninstallCa {
        /// Show what would be done without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the firewall script that opens the proxy's ports to the allow list (or its
    /// rollback). Nothing is applied: read it, then run it as root / administrator.
    #[command(
        after_help = "Examples:\n  flm security firewall-script --target ufw --output flm-firewall-ufw.sh\n  flm security firewall-script --target nftables --port 8780 --port 8781 --format text\n  flm security firewall-script --target powershell --rollback --output flm-firewall-rollback.ps1"
    )]
    FirewallScript(FirewallScriptArgs),
}

/// `flm security certificates …`
#[derive(Debug, Subcommand)]
pub enum CertificatesCmd {
    /// List the certificates with subject, SANs, expiry (`is_expired`, `days_left`)
    /// and the certificate and key files.
    List,
}

/// Firewall tools `flm security firewall-script` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FirewallTargetArg {
    /// Ubuntu's ufw (rules with the comment `flm`).
    Ufw,
    /// firewalld rich rules (permanent configuration, then reload).
    Firewalld,
    /// nftables: FLM's own table `inet flm`.
    Nftables,
    /// macOS pf: FLM's own anchor `flm`.
    Pf,
    /// Windows Defender Firewall via PowerShell (rule group `FLM`).
    Powershell,
}

/// `flm security firewall-script`
#[derive(Debug, Args)]
pub struct FirewallScriptArgs {
    /// The firewall tool of the machine that runs the proxy.
    #[arg(long, value_enum)]
    pub target: FirewallTargetArg,
    /// TCP port to open (repeatable) [default: the running proxies' ports, else
    /// `proxy.port`].
    #[arg(long = "port", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// Write the rollback script (removes FLM's rules and nothing else) instead.
    #[arg(long)]
    pub rollback: bool,
    /// Write the script to this file instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `flm security policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Print the `default` policy and when it was last changed.
    Show,
    /// Replace the whole policy after validating it (every problem is reported).
    #[command(
        after_help = "Examples:\n  flm security policy set --file policy.json\n  flm security policy set --json '{\"cors\":{\"allowed_origins\":[\"https://app.example.com\"]}}'"
    )]
    Set {
        /// The policy document, inline.
        #[arg(
            long,
            value_name = "JSON",
            conflicts_with = "file",
            required_unless_present = "file"
        )]
        json: Option<String>,
        /// A file holding the policy document.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
}

/// `flm security ip-blocklist …`
#[derive(Debug, Subcommand)]
pub enum BlocklistCmd {
    /// Blocked IPs, with failure counts and block ends.
    List,
    /// Block an IP address or CIDR range (30 minutes unless told otherwise).
    Add {
        /// IP address or CIDR range (e.g. 203.0.113.7, 198.51.100.0/24).
        ip: String,
        /// Block for this many minutes [default: 30].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=5_256_000), conflicts_with = "permanent")]
        minutes: Option<u32>,
        /// Block until `unblock` lifts it.
        #[arg(long)]
        permanent: bool,
    },
    /// Remove one entry (the only way to lift a permanent block).
    Unblock {
        /// IP address or CIDR range, as listed.
        ip: String,
    },
    /// Remove every temporary block; permanent blocks remain.
    Clear,
}

/// Severities of audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeverityArg {
    /// Routine.
    Low,
    /// Worth a look.
    Medium,
    /// Suspicious.
    High,
    /// An attack or a failure of a protection.
    Critical,
}

/// Export formats of `flm security audit-logs export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A JSON array of rows (with their hashes).
    Json,
    /// CSV with a header row.
    Csv,
}

/// Filters shared by `audit-logs list` and `audit-logs export`.
#[derive(Debug, Args)]
pub struct AuditFilterArgs {
    /// Only this severity.
    #[arg(long, value_enum)]
    pub severity: Option<SeverityArg>,
    /// Only this event type (e.g. auth_failure, ip_blocked).
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only events of this client IP.
    #[arg(long)]
    pub ip: Option<String>,
    /// Only events at or after this time (RFC 3339, e.g. 2026-11-25T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
}

/// `flm security audit-logs …`
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// A page of audit events, newest first.
    List {
        /// Filters.
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Rows per page.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Rows to skip.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Verify the hash chain across the archive files and the live table; exit 1
    /// (AUDIT_TAMPERED) naming the first bad row.
    Verify,
    /// Write matching events, oldest first, with their hashes, to a file (0600).
    ///
    /// The file format is --output-format, else the extension of --output (`.csv` →
    /// CSV, anything else → JSON). (`--format` is the global option that chooses how
    /// this command's own result is printed.)
    #[command(
        after_help = "Examples:\n  flm security audit-logs export --output audit.csv\n  flm security audit-logs export --output-format json --output audit.json --severity high"
    )]
    Export {
        /// File format [default: from the extension of --output].
        #[arg(long, value_enum, value_name = "json|csv")]
        output_format: Option<ExportFormat>,
        /// The file to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Filters.
        #[command(flatten)]
        filter: AuditFilterArgs,
    },
    /// Move events older than N days into compressed archive files (verify still
    /// checks them). The running proxy does this by itself (see docs/guides/audit.md).
    Archive {
        /// Age in days.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        older_than_days: u32,
        /// Archive directory [default: <data-dir>/archive].
        #[arg(long, value_name = "DIR")]
        archive_dir: Option<PathBuf>,
    },
}

/// `flm security backup …`
#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write security.db.bak.<UTC timestamp> (0600); keep the 3 newest.
    Create {
        /// Backup directory [default: <data-dir>/backups].
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// Replace security.db with a backup and migrate it. FLM must be stopped.
    Restore {
        /// The backup file (security.db.bak.*).
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
    },
}

/// Options of `flm security intrusion`.
#[derive(Debug, Args)]
pub struct IntrusionArgs {
    /// `list` (optional: `flm security intrusion list` is the same command).
    #[arg(value_parser = ["list"], hide = true)]
    pub action: Option<String>,
    /// Only this client IP.
    #[arg(long)]
    pub ip: Option<String>,
    /// Only attempts scoring at least this much.
    #[arg(long)]
    pub min_score: Option<i64>,
    /// Rows per page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Rows to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
}

/// Options of `flm security anomaly`.
#[derive(Debug, Args)]
pub struct AnomalyArgs {
    /// `list` (optional: `flm security anomaly list` is the same command).
    #[arg(value_parser = ["list"], hide = true)]
    pub action: Option<String>,
    /// Only this client IP.
    #[arg(long)]
    pub ip: Option<String>,
    /// Only this anomaly type (e.g. request_flood, path_scan).
    #[arg(long, value_name = "TYPE")]
    pub anomaly_type: Option<String>,
    /// Rows per page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Rows to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
}

/// Options of `flm security rate-limits`.
#[derive(Debug, Args)]
pub struct RateLimitsArgs {
    /// Only the window of this key (an API key id, or `ip:<address>`); exact match.
    #[arg(long, value_name = "ID")]
    pub api_key_id: Option<String>,
}

/// Options of `flm check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Show every check, not only the failing ones.
    #[arg(long)]
    pub verbose: bool,
}
