//! Registering the local root CA in the OS trust store (`flm security install-ca`).
//!
//! | OS | What [`install_ca`] does | Tested here |
//! |---|---|---|
//! | Debian, Ubuntu | copy to `/usr/local/share/ca-certificates/flm-ca.crt`, run `update-ca-certificates` | yes, file operations in a temporary root |
//! | Fedora, RHEL | copy to `/etc/pki/ca-trust/source/anchors/flm-ca.crt`, run `update-ca-trust extract` | layout detection only |
//! | Arch | copy to `/etc/ca-certificates/trust-source/anchors/flm-ca.crt`, run `trust extract-compat` | layout detection only |
//! | openSUSE | copy to `/etc/pki/trust/anchors/flm-ca.crt`, run `update-ca-certificates` | layout detection only |
//! | macOS | `security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain <cert>` | command line only |
//! | Windows | `certutil -addstore -f Root <cert>` | command line only |
//!
//! On Linux the operation is idempotent: when the same certificate is already in the
//! anchor directory, nothing is written and no command runs. macOS and Windows are
//! behind `cfg(target_os)`: they run the command shown (it needs elevation) and cannot be
//! exercised on the Linux machines this project is built and tested on; their command
//! lines are unit-tested through [`macos_commands`] and [`windows_commands`].
//!
//! Every call needs root/administrator rights on a real system. The functions block
//! (they may run a command): call them from `spawn_blocking` in async code.
//!
//! [`TrustOptions::root`] prefixes every path (tests install into a temporary
//! directory). With a prefix other than `/` the refresh command is never run — it would
//! refresh the real system store, not the prefixed one — and the report says it was
//! skipped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bundle::{leaf_info, parse_chain};
use crate::error::{Result, TlsError};
use crate::{fs, CA_COMMON_NAME};

/// How to run [`install_ca`] / [`uninstall_ca`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustOptions {
    /// Report what would be done, change nothing.
    pub dry_run: bool,
    /// Filesystem root prefix (`None` = `/`). Anything else disables the refresh
    /// command. Meant for tests.
    pub root: Option<PathBuf>,
}

impl TrustOptions {
    fn effective_root(&self) -> &Path {
        self.root.as_deref().unwrap_or(Path::new("/"))
    }
    fn is_system_root(&self) -> bool {
        self.effective_root() == Path::new("/")
    }
}

/// The trust store that was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustStore {
    /// Debian, Ubuntu and derivatives (`update-ca-certificates`).
    Debian,
    /// Fedora, RHEL, CentOS (`update-ca-trust`).
    Fedora,
    /// Arch (`trust extract-compat`).
    Arch,
    /// openSUSE, SLES (`update-ca-certificates`, other anchor directory).
    OpenSuse,
    /// macOS System keychain.
    MacOs,
    /// Windows `LocalMachine\Root`.
    Windows,
}

impl TrustStore {
    /// The Linux layouts, in detection order.
    pub const LINUX: [TrustStore; 4] = [
        TrustStore::Debian,
        TrustStore::Fedora,
        TrustStore::OpenSuse,
        TrustStore::Arch,
    ];

    /// The anchor directory of a Linux layout (absolute, without root prefix).
    pub fn anchor_dir(self) -> Option<&'static str> {
        match self {
            TrustStore::Debian => Some("/usr/local/share/ca-certificates"),
            TrustStore::Fedora => Some("/etc/pki/ca-trust/source/anchors"),
            TrustStore::Arch => Some("/etc/ca-certificates/trust-source/anchors"),
            TrustStore::OpenSuse => Some("/etc/pki/trust/anchors"),
            TrustStore::MacOs | TrustStore::Windows => None,
        }
    }

    /// The command that rebuilds the system bundle after the anchor directory changed.
    pub fn refresh_command(self) -> Option<&'static [&'static str]> {
        match self {
            TrustStore::Debian | TrustStore::OpenSuse => Some(&["update-ca-certificates"]),
            TrustStore::Fedora => Some(&["update-ca-trust", "extract"]),
            TrustStore::Arch => Some(&["trust", "extract-compat"]),
            TrustStore::MacOs | TrustStore::Windows => None,
        }
    }

    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            TrustStore::Debian => "Debian/Ubuntu",
            TrustStore::Fedora => "Fedora/RHEL",
            TrustStore::Arch => "Arch",
            TrustStore::OpenSuse => "openSUSE",
            TrustStore::MacOs => "macOS System keychain",
            TrustStore::Windows => "Windows LocalMachine Root store",
        }
    }
}

impl fmt::Display for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A file operation that was (or, in a dry run, would be) performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Create a directory (and its parents).
    CreateDir(PathBuf),
    /// Copy the CA certificate `from` → `to` (replacing `to`).
    Copy {
        /// Source certificate.
        from: PathBuf,
        /// Destination in the anchor directory.
        to: PathBuf,
    },
    /// Delete a file.
    Remove(PathBuf),
}

impl fmt::Display for FileOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileOp::CreateDir(p) => write!(f, "mkdir -p {}", p.display()),
            FileOp::Copy { from, to } => write!(f, "cp {} {}", from.display(), to.display()),
            FileOp::Remove(p) => write!(f, "rm {}", p.display()),
        }
    }
}

/// What happened to the command(s) of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandStatus {
    /// Nothing changed, so nothing had to run.
    NotNeeded,
    /// Dry run: the commands were not run.
    DryRun,
    /// Not run for the given reason (non-default root).
    Skipped(String),
    /// Ran and exited successfully.
    Succeeded,
}

/// The overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustOutcome {
    /// The CA was added.
    Installed,
    /// Another certificate with FLM's anchor file name was replaced by this CA.
    Replaced,
    /// The same CA was already there; nothing was done.
    AlreadyInstalled,
    /// The CA was removed.
    Removed,
    /// There was nothing to remove.
    NotInstalled,
}

/// What [`install_ca`] / [`uninstall_ca`] did, or would do in a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustReport {
    /// The store that was used.
    pub store: TrustStore,
    /// The overall result (in a dry run: the result the real run would have).
    pub outcome: TrustOutcome,
    /// File operations, in order.
    pub file_ops: Vec<FileOp>,
    /// Commands, as argument vectors, in order.
    pub commands: Vec<Vec<String>>,
    /// Whether the commands ran.
    pub command_status: CommandStatus,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl TrustReport {
    /// One line per step, for the CLI (`cp …`, `run: update-ca-certificates`).
    pub fn steps(&self) -> Vec<String> {
        let mut out: Vec<String> = self.file_ops.iter().map(ToString::to_string).collect();
        for c in &self.commands {
            let note = match &self.command_status {
                CommandStatus::Skipped(r) => format!(" (skipped: {r})"),
                CommandStatus::DryRun => " (dry run)".to_owned(),
                _ => String::new(),
            };
            out.push(format!("run: {}{note}", c.join(" ")));
        }
        out
    }
}

/// Whether the CA is present in the trust store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustStatus {
    /// FLM's anchor file holds this CA.
    Installed,
    /// FLM's anchor file holds a different certificate (an older CA).
    Different,
    /// FLM's anchor file does not exist.
    NotInstalled,
    /// Cannot be told on this platform without running commands (macOS, Windows).
    Unknown,
}

/// The macOS command lines for installing / removing the CA (`sudo` is needed).
/// Removal finds the certificate by its common name, [`CA_COMMON_NAME`].
pub fn macos_commands(ca_cert_path: &Path) -> (Vec<String>, Vec<String>) {
    let keychain = "/Library/Keychains/System.keychain";
    let install = [
        "security",
        "add-trusted-cert",
        "-d",
        "-r",
        "trustRoot",
        "-k",
        keychain,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([ca_cert_path.display().to_string()])
    .collect();
    let remove = [
        "security",
        "delete-certificate",
        "-c",
        CA_COMMON_NAME,
        keychain,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    (install, remove)
}

/// The Windows command lines for installing / removing the CA (elevation is needed).
/// Removal names the certificate by its serial number.
pub fn windows_commands(ca_cert_path: &Path, serial_hex: &str) -> (Vec<String>, Vec<String>) {
    let install = vec![
        "certutil".to_owned(),
        "-addstore".to_owned(),
        "-f".to_owned(),
        "Root".to_owned(),
        ca_cert_path.display().to_string(),
    ];
    let remove = vec![
        "certutil".to_owned(),
        "-delstore".to_owned(),
        "Root".to_owned(),
        serial_hex.to_owned(),
    ];
    (install, remove)
}

/// Reads `path` and checks it holds exactly one certificate, a CA. Returns its DER
/// and serial.
fn read_ca(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = fs::read(path)?;
    let chain = parse_chain(&bytes, path)?;
    if chain.len() != 1 {
        return Err(TlsError::InvalidCertificate {
            path: path.to_path_buf(),
            reason: format!("expected exactly one certificate, found {}", chain.len()),
        });
    }
    let info = leaf_info(&chain, path)?;
    if !info.is_ca {
        return Err(TlsError::NotACa {
            path: path.to_path_buf(),
        });
    }
    Ok((chain[0].to_vec(), info.serial_hex))
}

/// Adds the CA certificate at `ca_cert_path` to the OS trust store.
///
/// The file must hold exactly one CA certificate ([`TlsError::NotACa`] otherwise).
/// See the [module docs](self) for what happens on each OS.
pub fn install_ca(ca_cert_path: &Path, opts: TrustOptions) -> Result<TrustReport> {
    let (der, serial) = read_ca(ca_cert_path)?;
    #[cfg(target_os = "linux")]
    {
        let _ = serial;
        linux::install(ca_cert_path, &der, &opts)
    }
    #[cfg(target_os = "macos")]
    {
        let _ = (der, serial);
        run_plan(
            TrustStore::MacOs,
            TrustOutcome::Installed,
            macos_commands(ca_cert_path).0,
            &opts,
        )
    }
    #[cfg(target_os = "windows")]
    {
        let _ = der;
        run_plan(
            TrustStore::Windows,
            TrustOutcome::Installed,
            windows_commands(ca_cert_path, &serial).0,
            &opts,
        )
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
    {
        let _ = (der, serial, opts);
        Err(TlsError::UnsupportedPlatform(std::env::consts::OS))
    }
}

/// Removes FLM's CA from the OS trust store. `ca_cert_path` identifies the CA on macOS
/// and Windows; on Linux FLM's anchor file is removed whatever it holds.
pub fn uninstall_ca(ca_cert_path: &Path, opts: TrustOptions) -> Result<TrustReport> {
    #[cfg(target_os = "linux")]
    {
        let _ = ca_cert_path;
        linux::uninstall(&opts)
    }
    #[cfg(target_os = "macos")]
    {
        run_plan(
            TrustStore::MacOs,
            TrustOutcome::Removed,
            macos_commands(ca_cert_path).1,
            &opts,
        )
    }
    #[cfg(target_os = "windows")]
    {
        let (_, serial) = read_ca(ca_cert_path)?;
        run_plan(
            TrustStore::Windows,
            TrustOutcome::Removed,
            windows_commands(ca_cert_path, &serial).1,
            &opts,
        )
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
    {
        let _ = (ca_cert_path, opts);
        Err(TlsError::UnsupportedPlatform(std::env::consts::OS))
    }
}

/// Whether the CA at `ca_cert_path` is in the trust store. The proxy calls this at
/// start in `packaged-ca` mode and warns when it is not (spec 70-packaging §3.2).
pub fn ca_status(ca_cert_path: &Path, opts: TrustOptions) -> Result<TrustStatus> {
    let (der, _) = read_ca(ca_cert_path)?;
    #[cfg(target_os = "linux")]
    {
        linux::status(&der, &opts)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (der, opts);
        Ok(TrustStatus::Unknown)
    }
}

/// Runs (or reports) `cmd` for the platforms where the trust store is not a directory.
#[cfg(any(target_os = "macos", target_os = "windows"))]
fn run_plan(
    store: TrustStore,
    outcome: TrustOutcome,
    cmd: Vec<String>,
    opts: &TrustOptions,
) -> Result<TrustReport> {
    let command_status = if opts.dry_run {
        CommandStatus::DryRun
    } else if !opts.is_system_root() {
        CommandStatus::Skipped("a filesystem root prefix was given".to_owned())
    } else {
        run(&cmd)?;
        CommandStatus::Succeeded
    };
    Ok(TrustReport {
        store,
        outcome,
        file_ops: Vec::new(),
        commands: vec![cmd],
        command_status,
        dry_run: opts.dry_run,
    })
}

/// Runs `cmd`, failing with its exit status and stderr.
#[cfg_attr(
    not(any(target_os = "linux", target_os = "macos", target_os = "windows")),
    expect(dead_code, reason = "no trust-store support on this OS")
)]
fn run(cmd: &[String]) -> Result<()> {
    let line = cmd.join(" ");
    let (prog, args) = cmd.split_first().ok_or_else(|| TlsError::TrustCommand {
        command: String::new(),
        detail: "empty command".to_owned(),
    })?;
    tracing::info!(command = %line, "updating OS trust store");
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| TlsError::TrustCommand {
            command: line.clone(),
            detail: format!("cannot start: {e}"),
        })?;
    if !out.status.success() {
        return Err(TlsError::TrustCommand {
            command: line,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use crate::TRUST_STORE_FILE_NAME;

    /// `abs` (an absolute path such as `/etc/pki`) under `root`.
    fn under(root: &Path, abs: &str) -> PathBuf {
        root.join(abs.trim_start_matches('/'))
    }

    /// Which layout the system under `root` uses.
    ///
    /// `/etc/debian_version` decides first (Debian-family systems may carry p11-kit
    /// directories too); then the first existing anchor directory of Fedora, openSUSE,
    /// Arch, Debian (in that order: the Debian directory is the most generic name).
    pub(super) fn detect(root: &Path) -> Option<TrustStore> {
        if under(root, "/etc/debian_version").is_file() {
            return Some(TrustStore::Debian);
        }
        [
            TrustStore::Fedora,
            TrustStore::OpenSuse,
            TrustStore::Arch,
            TrustStore::Debian,
        ]
        .into_iter()
        .find(|s| s.anchor_dir().is_some_and(|d| under(root, d).is_dir()))
    }

    fn target(opts: &TrustOptions) -> Result<(TrustStore, PathBuf, PathBuf)> {
        let root = opts.effective_root();
        let store = detect(root).ok_or_else(|| TlsError::NoTrustStore {
            root: root.to_path_buf(),
        })?;
        let dir = under(root, store.anchor_dir().unwrap_or_default());
        let file = dir.join(TRUST_STORE_FILE_NAME);
        Ok((store, dir, file))
    }

    /// DER of the (first) certificate in `path`, if it is readable and parses.
    fn installed_der(path: &Path) -> Option<Vec<u8>> {
        let bytes = std::fs::read(path).ok()?;
        parse_chain(&bytes, path).ok()?.first().map(|c| c.to_vec())
    }

    fn refresh(
        store: TrustStore,
        changed: bool,
        opts: &TrustOptions,
    ) -> Result<(Vec<Vec<String>>, CommandStatus)> {
        if !changed {
            return Ok((Vec::new(), CommandStatus::NotNeeded));
        }
        let cmd: Vec<String> = store
            .refresh_command()
            .unwrap_or_default()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let status = if opts.dry_run {
            CommandStatus::DryRun
        } else if !opts.is_system_root() {
            CommandStatus::Skipped(format!(
                "root prefix `{}` is not `/`; the command would refresh the real system store",
                opts.effective_root().display()
            ))
        } else {
            run(&cmd)?;
            CommandStatus::Succeeded
        };
        Ok((vec![cmd], status))
    }

    pub(super) fn install(
        ca_cert_path: &Path,
        der: &[u8],
        opts: &TrustOptions,
    ) -> Result<TrustReport> {
        let (store, dir, file) = target(opts)?;
        let outcome = match installed_der(&file) {
            Some(existing) if existing == der => TrustOutcome::AlreadyInstalled,
            Some(_) => TrustOutcome::Replaced,
            None if file.exists() => TrustOutcome::Replaced,
            None => TrustOutcome::Installed,
        };
        let mut file_ops = Vec::new();
        if outcome != TrustOutcome::AlreadyInstalled {
            if !dir.is_dir() {
                file_ops.push(FileOp::CreateDir(dir.clone()));
            }
            file_ops.push(FileOp::Copy {
                from: ca_cert_path.to_path_buf(),
                to: file.clone(),
            });
        }
        if !opts.dry_run {
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir).map_err(|source| TlsError::Write {
                    path: dir.clone(),
                    source,
                })?;
            }
            if outcome != TrustOutcome::AlreadyInstalled {
                let bytes = fs::read(ca_cert_path)?;
                // World-readable: every program on the machine reads the trust store.
                fs::write_atomic(&file, &bytes, 0o644)?;
            }
        }
        let (commands, command_status) =
            refresh(store, outcome != TrustOutcome::AlreadyInstalled, opts)?;
        Ok(TrustReport {
            store,
            outcome,
            file_ops,
            commands,
            command_status,
            dry_run: opts.dry_run,
        })
    }

    pub(super) fn uninstall(opts: &TrustOptions) -> Result<TrustReport> {
        let (store, _dir, file) = target(opts)?;
        let present = file.exists();
        let mut file_ops = Vec::new();
        if present {
            file_ops.push(FileOp::Remove(file.clone()));
            if !opts.dry_run {
                std::fs::remove_file(&file).map_err(|source| TlsError::Write {
                    path: file.clone(),
                    source,
                })?;
            }
        }
        let (commands, command_status) = refresh(store, present, opts)?;
        Ok(TrustReport {
            store,
            outcome: if present {
                TrustOutcome::Removed
            } else {
                TrustOutcome::NotInstalled
            },
            file_ops,
            commands,
            command_status,
            dry_run: opts.dry_run,
        })
    }

    pub(super) fn status(der: &[u8], opts: &TrustOptions) -> Result<TrustStatus> {
        let (_, _, file) = target(opts)?;
        Ok(match installed_der(&file) {
            Some(existing) if existing == der => TrustStatus::Installed,
            Some(_) => TrustStatus::Different,
            None if file.exists() => TrustStatus::Different,
            None => TrustStatus::NotInstalled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macos_and_windows_command_lines() {
        let p = Path::new("/x/flm-ca.crt");
        let (i, r) = macos_commands(p);
        assert_eq!(
            i.join(" "),
            "security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain /x/flm-ca.crt"
        );
        assert_eq!(
            r.join(" "),
            format!("security delete-certificate -c {CA_COMMON_NAME} /Library/Keychains/System.keychain")
        );
        let (i, r) = windows_commands(p, "0A1B");
        assert_eq!(i.join(" "), "certutil -addstore -f Root /x/flm-ca.crt");
        assert_eq!(r.join(" "), "certutil -delstore Root 0A1B");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn layout_detection() {
        for store in TrustStore::LINUX {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp
                .path()
                .join(store.anchor_dir().unwrap().trim_start_matches('/'));
            std::fs::create_dir_all(&dir).unwrap();
            assert_eq!(linux::detect(tmp.path()), Some(store), "{store}");
        }
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(linux::detect(tmp.path()), None);
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/debian_version"), "12.5\n").unwrap();
        assert_eq!(linux::detect(tmp.path()), Some(TrustStore::Debian));
    }
}
