//! `flm service install|uninstall|status`: the proxy as a systemd **user** service for
//! people who run the binary without the package, and the hidden `flm generate-docs`
//! that writes the man pages, the shell completions and the same user unit for the
//! package (scripts/package.sh).
//!
//! The unit runs `flm proxy start --no-daemon` (the proxy in the foreground, stopped by
//! SIGTERM) and is restarted on failure. systemctl is only called when systemd runs
//! (`/run/systemd/system` exists, as `sd_booted()` checks); otherwise the unit is
//! written and the exact commands to run later are printed. Data is never touched.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::CommandFactory;
use serde_json::json;

use crate::cli::{Cli, Format, ServiceCmd};
use crate::cli_service::{GenerateDocsArgs, ServiceInstallArgs, ServiceUninstallArgs};
use crate::output::{CliError, Printer};

/// The unit's name, for the user manager and the package alike.
pub const UNIT_NAME: &str = "flm.service";

/// First line of a unit written by `flm service install`: such a file may be replaced
/// or removed without `--force`.
const INSTALLED_HEADER: &str =
    "# Written by `flm service install`; `flm service uninstall` removes it.";

/// First line of the unit shipped by the package.
const PACKAGED_HEADER: &str =
    "# FLM's systemd user unit. Start it at login: systemctl --user enable --now flm";

/// Where the package and administrators put user units, after the user's own
/// directory, in systemd's order of precedence.
const SYSTEM_USER_UNIT_DIRS: [(&str, &str); 2] = [
    ("/etc/systemd/user", "administrator"),
    ("/usr/lib/systemd/user", "package"),
];

/// Runs `flm service …`. `data_dir` is the global `--data-dir`.
pub async fn run(
    cmd: ServiceCmd,
    data_dir: Option<PathBuf>,
    printer: &Printer,
) -> Result<(), CliError> {
    if !cfg!(target_os = "linux") {
        return Err(CliError::user(
            "UNSUPPORTED",
            "`flm service` manages a systemd user unit and works on Linux only; on other systems run `flm proxy start` (a background daemon)",
        ));
    }
    // Short blocking file and process work: no async needed.
    match cmd {
        ServiceCmd::Install(args) => install(&args, data_dir, printer),
        ServiceCmd::Uninstall(args) => uninstall(&args, printer),
        ServiceCmd::Status => status(printer),
    }
}

/// `~/.config/systemd/user` (or `$XDG_CONFIG_HOME/systemd/user`).
fn user_unit_dir() -> Result<PathBuf, CliError> {
    dirs::config_dir()
        .map(|d| d.join("systemd").join("user"))
        .ok_or_else(|| {
            CliError::user(
                "IO_ERROR",
                "cannot find your configuration directory (set HOME or XDG_CONFIG_HOME)",
            )
        })
}

/// Whether systemd is the running init system (`sd_booted()`).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> CliError {
    CliError::internal("IO_ERROR", format!("cannot {what} {}: {e}", path.display()))
}

/// One word of a unit file's command line or assignment, quoted when needed
/// (systemd.syntax(7): `\` and `"` escaped inside double quotes; `%` doubled for
/// specifiers and `$` for variable expansion).
fn unit_word(s: &str) -> Result<String, CliError> {
    if s.chars().any(char::is_control) {
        return Err(CliError::user(
            "INVALID_ARGUMENT",
            format!("{s:?} contains a control character and cannot go into a unit file"),
        ));
    }
    let escaped = s.replace('%', "%%").replace('$', "$$");
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._:+@=,-".contains(c));
    if plain {
        Ok(escaped)
    } else {
        Ok(format!(
            "\"{}\"",
            escaped.replace('\\', "\\\\").replace('"', "\\\"")
        ))
    }
}

/// The user unit: `exe proxy start --no-daemon` plus `proxy_args`, with `FLM_HOME`
/// when the data directory is not the default one.
pub fn user_unit(
    header: &str,
    exe: &Path,
    proxy_args: &[String],
    data_dir: Option<&Path>,
) -> Result<String, CliError> {
    let exe = exe.to_str().ok_or_else(|| {
        CliError::user(
            "INVALID_ARGUMENT",
            format!("the path {} is not UTF-8", exe.display()),
        )
    })?;
    let mut exec = vec![unit_word(exe)?];
    for a in ["proxy", "start", "--no-daemon", "--format", "json"] {
        exec.push(a.to_owned());
    }
    for a in proxy_args {
        exec.push(unit_word(a)?);
    }
    let env = match data_dir {
        Some(d) => {
            let d = d.to_str().ok_or_else(|| {
                CliError::user(
                    "INVALID_ARGUMENT",
                    format!("the path {} is not UTF-8", d.display()),
                )
            })?;
            format!("Environment={}\n", unit_word(&format!("FLM_HOME={d}"))?)
        }
        None => String::new(),
    };
    Ok(format!(
        "{header}
[Unit]
Description=FLM: one OpenAI-compatible endpoint for your local LLM engines
Documentation=man:flm(1) man:flm-service(1)

[Service]
Type=simple
{env}ExecStart={exec}
Restart=on-failure
RestartSec=5s
TimeoutStopSec=30s
NoNewPrivileges=yes
UMask=0077

[Install]
WantedBy=default.target
",
        exec = exec.join(" ")
    ))
}

/// The data directory to pin in the unit: only one chosen explicitly (`--data-dir`,
/// `FLM_HOME`, `FLM_DATA_DIR`); the default follows the service's own HOME.
fn explicit_data_dir(flag: Option<PathBuf>) -> Result<Option<PathBuf>, CliError> {
    let chosen = flag.or_else(|| {
        std::env::var_os("FLM_HOME")
            .or_else(|| std::env::var_os("FLM_DATA_DIR"))
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    chosen
        .map(|d| {
            std::path::absolute(&d).map_err(|e| io_error("resolve the data directory", &d, &e))
        })
        .transpose()
}

/// `systemctl --user ARGS`: stdout on success, a message with stderr otherwise.
fn systemctl(args: &[&str]) -> Result<String, String> {
    let out = Process::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(if stderr.is_empty() { stdout } else { stderr })
    }
}

fn shell_line(args: &[&str]) -> String {
    format!("systemctl --user {}", args.join(" "))
}

/// Runs the steps in order; stops at the first failure. Returns the lines run and,
/// on failure, the error and the lines left to run by hand.
fn run_steps(steps: &[Vec<&str>]) -> (Vec<String>, Option<(String, Vec<String>)>) {
    let mut done = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match systemctl(step) {
            Ok(_) => done.push(shell_line(step)),
            Err(e) => {
                let left = steps[i..].iter().map(|s| shell_line(s)).collect();
                return (
                    done,
                    Some((format!("`{}` failed: {e}", shell_line(step)), left)),
                );
            }
        }
    }
    (done, None)
}

fn install(
    args: &ServiceInstallArgs,
    data_dir: Option<PathBuf>,
    printer: &Printer,
) -> Result<(), CliError> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| {
            CliError::internal(
                "IO_ERROR",
                format!("cannot find the path of this flm binary: {e}"),
            )
        })?;
    let mut proxy_args = Vec::new();
    if let Some(port) = args.port {
        proxy_args.push("--port".to_owned());
        proxy_args.push(port.to_string());
    }
    if let Some(bind) = &args.bind {
        let ip: IpAddr = bind.trim().parse().map_err(|_| {
            CliError::user(
                "INVALID_ARGUMENT",
                format!("--bind {bind:?} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)"),
            )
        })?;
        proxy_args.push("--bind".to_owned());
        proxy_args.push(ip.to_string());
    }
    let data_dir = explicit_data_dir(data_dir)?;
    let unit = user_unit(INSTALLED_HEADER, &exe, &proxy_args, data_dir.as_deref())?;

    let dir = user_unit_dir()?;
    let path = dir.join(UNIT_NAME);
    let existing = match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("read", &path, &e)),
    };
    if let Some(old) = &existing {
        if !old.starts_with(INSTALLED_HEADER) && !args.force {
            return Err(CliError::user(
                "ALREADY_EXISTS",
                format!(
                    "{} exists and was not written by `flm service install`; look at it, then pass --force to replace it",
                    path.display()
                ),
            ));
        }
    }
    let changed = existing.as_deref() != Some(unit.as_str());
    if changed {
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, &e))?;
        let tmp = dir.join(format!(".{UNIT_NAME}.tmp"));
        std::fs::write(&tmp, &unit).map_err(|e| io_error("write", &tmp, &e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_error("write", &path, &e))?;
    }

    let mut steps: Vec<Vec<&str>> = vec![vec!["daemon-reload"], vec!["enable", UNIT_NAME]];
    if !args.no_start {
        // Starts it, or restarts it with the new unit when it already runs.
        steps.push(vec!["restart", UNIT_NAME]);
    }
    let systemd = systemd_running();
    let (done, failed, todo) = if systemd && !args.no_systemctl {
        let (done, failed) = run_steps(&steps);
        let (err, left) = failed.map_or((None, Vec::new()), |(e, l)| (Some(e), l));
        (done, err, left)
    } else {
        (
            Vec::new(),
            None,
            steps.iter().map(|s| shell_line(s)).collect(),
        )
    };
    let exec = exec_start(&unit).unwrap_or_default();
    let data = json!({
        "unit_file": path,
        "changed": changed,
        "exec_start": exec,
        "systemd_running": systemd,
        "commands_run": done,
        "commands_to_run": todo,
        "error": failed,
    });
    printer.success(&data, || {
        let mut out = format!(
            "{} {}\nRuns: {exec}\n",
            if changed { "Wrote" } else { "Unchanged:" },
            path.display()
        );
        for line in &done {
            out.push_str(&format!("Ran: {line}\n"));
        }
        if let Some(e) = &failed {
            out.push_str(&format!("Error: {e}\n"));
        } else if !systemd {
            out.push_str(
                "systemd is not running here (no /run/systemd/system), so nothing was started.\n",
            );
        }
        if !todo.is_empty() {
            out.push_str("To run it, log in to a systemd session and run:\n");
            for line in &todo {
                out.push_str(&format!("  {line}\n"));
            }
        } else if !args.no_start {
            out.push_str("The proxy runs as a user service; `flm service status` shows it, `journalctl --user -u flm` its log (the first API key is printed there once).\n");
        }
        out.push_str("It starts when you log in; to start it at boot: loginctl enable-linger $USER\n");
        out
    })?;
    if let Some(e) = failed {
        return Err(CliError::internal(
            "SERVICE_ERROR",
            format!("the unit is written but systemctl failed: {e}"),
        ));
    }
    Ok(())
}

/// Links in `dir/*.wants` and `dir/*.requires` that point at `unit`.
fn enable_links(dir: &Path, unit: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut links = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".wants") || name.ends_with(".requires")) {
            continue;
        }
        let link = e.path().join(UNIT_NAME);
        if let Ok(target) = std::fs::read_link(&link) {
            let target = if target.is_absolute() {
                target
            } else {
                e.path().join(target)
            };
            let same = target == unit
                || std::fs::canonicalize(&target).ok() == std::fs::canonicalize(unit).ok();
            if same {
                links.push(link);
            }
        }
    }
    links
}

fn uninstall(args: &ServiceUninstallArgs, printer: &Printer) -> Result<(), CliError> {
    let dir = user_unit_dir()?;
    let path = dir.join(UNIT_NAME);
    let exists = path.exists();
    if exists {
        let content = std::fs::read_to_string(&path).map_err(|e| io_error("read", &path, &e))?;
        if !content.starts_with(INSTALLED_HEADER) {
            return Err(CliError::user(
                "INVALID_ARGUMENT",
                format!(
                    "{} was not written by `flm service install`; remove it yourself if you mean to",
                    path.display()
                ),
            ));
        }
    }
    let systemd = systemd_running();
    let use_systemctl = systemd && !args.no_systemctl;
    let mut done = Vec::new();
    let mut todo = Vec::new();
    let mut warning = None;
    if exists && use_systemctl {
        let step = ["disable", "--now", UNIT_NAME];
        match systemctl(&step) {
            Ok(_) => done.push(shell_line(&step)),
            // Not loaded, no user manager…: the files still go.
            Err(e) => warning = Some(format!("`{}` failed: {e}", shell_line(&step))),
        }
    }
    let mut removed = Vec::new();
    if exists {
        for link in enable_links(&dir, &path) {
            std::fs::remove_file(&link).map_err(|e| io_error("remove", &link, &e))?;
            removed.push(link);
        }
        std::fs::remove_file(&path).map_err(|e| io_error("remove", &path, &e))?;
        removed.push(path.clone());
        if use_systemctl {
            match systemctl(&["daemon-reload"]) {
                Ok(_) => done.push(shell_line(&["daemon-reload"])),
                Err(e) => warning = Some(e),
            }
        } else if systemd {
            todo.push(shell_line(&["stop", UNIT_NAME]));
            todo.push(shell_line(&["daemon-reload"]));
        }
    }
    let packaged = packaged_unit();
    let data = json!({
        "unit_file": path,
        "removed": removed,
        "systemd_running": systemd,
        "commands_run": done,
        "commands_to_run": todo,
        "warning": warning,
        "packaged_unit": packaged.as_ref().map(|(p, _)| p),
    });
    printer.success(&data, || {
        let mut out = String::new();
        if !exists {
            out.push_str(&format!(
                "No unit at {}: nothing to remove.\n",
                path.display()
            ));
        }
        for line in &done {
            out.push_str(&format!("Ran: {line}\n"));
        }
        for p in &removed {
            out.push_str(&format!("Removed {}\n", p.display()));
        }
        if let Some(w) = &warning {
            out.push_str(&format!("Warning: {w}\n"));
        }
        if !todo.is_empty() {
            out.push_str("Then run:\n");
            for line in &todo {
                out.push_str(&format!("  {line}\n"));
            }
        }
        if let Some((p, _)) = &packaged {
            out.push_str(&format!(
                "The flm package's unit stays at {}; disable it with: systemctl --user disable --now flm\n",
                p.display()
            ));
        }
        out.push_str("FLM's data (keys, settings, logs) is kept.\n");
        out
    })
}

/// The unit of the package or the administrator, if any.
fn packaged_unit() -> Option<(PathBuf, &'static str)> {
    SYSTEM_USER_UNIT_DIRS.iter().find_map(|(dir, source)| {
        let p = Path::new(dir).join(UNIT_NAME);
        p.is_file().then_some((p, *source))
    })
}

/// The `ExecStart=` value of a unit file.
fn exec_start(unit: &str) -> Option<String> {
    unit.lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .map(str::to_owned)
}

fn status(printer: &Printer) -> Result<(), CliError> {
    let dir = user_unit_dir()?;
    let own = dir.join(UNIT_NAME);
    let unit = if own.is_file() {
        Some((own.clone(), "flm service install"))
    } else {
        packaged_unit()
    };
    let content = match &unit {
        Some((p, _)) => Some(std::fs::read_to_string(p).map_err(|e| io_error("read", p, &e))?),
        None => None,
    };
    let exec = content.as_deref().and_then(exec_start);
    let systemd = systemd_running();
    let (enabled, active, error) = if systemd {
        // Both commands print the state and exit non-zero when it is not
        // enabled/active; only an empty answer is an error.
        let ask = |what: &str| match systemctl(&[what, UNIT_NAME]) {
            Ok(s) => (Some(s), None),
            Err(e) if !e.contains(' ') && !e.is_empty() => (Some(e), None),
            Err(e) => (None, Some(e)),
        };
        let (enabled, e1) = ask("is-enabled");
        let (active, e2) = ask("is-active");
        (enabled, active, e1.or(e2))
    } else {
        let enabled = unit.as_ref().map(|(p, _)| {
            if enable_links(&dir, p).is_empty() {
                "disabled".to_owned()
            } else {
                "enabled".to_owned()
            }
        });
        (enabled, None, None)
    };
    let data = json!({
        "unit_file": unit.as_ref().map(|(p, _)| p),
        "source": unit.as_ref().map(|(_, s)| s),
        "exec_start": exec,
        "systemd_running": systemd,
        "enabled": enabled,
        "active": active,
        "error": error,
    });
    printer.success(&data, || {
        let Some((p, source)) = &unit else {
            return format!(
                "No {UNIT_NAME} user unit is installed (looked in {}, /etc/systemd/user and /usr/lib/systemd/user).\nInstall it with: flm service install\n",
                dir.display()
            );
        };
        let mut out = format!("Unit file: {} (from {source})\n", p.display());
        if let Some(e) = &exec {
            out.push_str(&format!("Runs:      {e}\n"));
        }
        out.push_str(&format!(
            "Enabled:   {}\n",
            enabled.as_deref().unwrap_or("unknown")
        ));
        match (&active, systemd) {
            (Some(a), _) => out.push_str(&format!("Active:    {a}\n")),
            (None, false) => out.push_str("Active:    unknown (systemd is not running here)\n"),
            (None, true) => out.push_str("Active:    unknown\n"),
        }
        if let Some(e) = &error {
            out.push_str(&format!("Warning:   systemctl --user: {e}\n"));
        }
        out
    })
}

/// `flm __generate-docs --out-dir DIR` (`args` starts with `__generate-docs`).
pub fn generate_docs_main(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    use clap::Parser;
    let parsed = match GenerateDocsArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let printer = Printer {
        format: Format::Text,
    };
    match generate_docs(&parsed, &printer) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            printer.error(&e);
            std::process::ExitCode::from(u8::try_from(e.exit).unwrap_or(2))
        }
    }
}

/// Man pages (DIR/man/*.1), completions (DIR/completions/flm.bash, _flm, flm.fish)
/// and the package's user unit (DIR/systemd/flm.service), all from the clap
/// definitions of this binary.
fn generate_docs(args: &GenerateDocsArgs, printer: &Printer) -> Result<(), CliError> {
    let out = &args.out_dir;
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    let unit_dir = out.join("systemd");
    for d in [&man_dir, &comp_dir, &unit_dir] {
        std::fs::create_dir_all(d).map_err(|e| io_error("create", d, &e))?;
    }
    let mut files = Vec::new();
    write_man_pages(Cli::command(), &man_dir, &mut files)?;
    // `flm proxy`'s page is flm-proxy.1, the name of the daemon binary too: it
    // describes both.
    let proxy_page = man_dir.join("flm-proxy.1");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&proxy_page)
        .and_then(|mut f| f.write_all(DAEMON_SECTION.as_bytes()))
        .map_err(|e| io_error("write", &proxy_page, &e))?;

    use clap_complete::Shell;
    for (shell, name) in [
        (Shell::Bash, "flm.bash"),
        (Shell::Zsh, "_flm"),
        (Shell::Fish, "flm.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "flm", &mut buf);
        let p = comp_dir.join(name);
        std::fs::write(&p, buf).map_err(|e| io_error("write", &p, &e))?;
        files.push(p);
    }

    let unit = user_unit(PACKAGED_HEADER, &args.bin_path, &[], None)?;
    let p = unit_dir.join(UNIT_NAME);
    std::fs::write(&p, unit).map_err(|e| io_error("write", &p, &e))?;
    files.push(p);

    printer.success(&json!({ "files": files }), || {
        format!("Wrote {} files under {}\n", files.len(), out.display())
    })
}

/// Appended to flm-proxy.1: the daemon binary of the same name.
const DAEMON_SECTION: &str = r#".SH "THE flm\-proxy DAEMON"
\fBflm\-proxy\fR is the background daemon that \fBflm proxy start\fR starts when needed
(it is looked up next to \fBflm\fR, then on PATH). It exits when its last proxy stops and is
not meant to be run by hand:
.PP
\fBflm\-proxy \-\-daemon\fR [\fB\-\-data\-dir\fR \fIDIR\fR]
.PP
It hosts the proxies behind a loopback admin API (bearer token) and publishes how to reach it in
\fIDIR\fR/run/proxy\-daemon.json; its log is \fIDIR\fR/logs/proxy.log. To run the proxy under
systemd instead, see \fBflm\-service\fR(1).
"#;

/// One page per command and visible subcommand (`flm.1`, `flm-proxy-start.1`, …),
/// like `clap_mangen::generate_to`, dated with the build date.
fn write_man_pages(
    cmd: clap::Command,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<(), CliError> {
    fn walk(cmd: clap::Command, dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), CliError> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, dir, files)?;
        }
        let man = clap_mangen::Man::new(cmd)
            .date(crate::build_info::BUILD_DATE)
            .source(format!("FLM {}", env!("CARGO_PKG_VERSION")))
            .manual("FLM Manual");
        let path = dir.join(man.get_filename());
        let mut buf = Vec::new();
        man.render(&mut buf)
            .and_then(|()| std::fs::File::create(&path)?.write_all(&buf))
            .map_err(|e| io_error("write", &path, &e))?;
        files.push(path);
        Ok(())
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    walk(cmd, dir, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_systemd() {
        assert_eq!(unit_word("/usr/bin/flm").unwrap(), "/usr/bin/flm");
        assert_eq!(unit_word("/home/a b/flm").unwrap(), "\"/home/a b/flm\"");
        assert_eq!(unit_word("50%$x\"\\").unwrap(), "\"50%%$$x\\\"\\\\\"");
        assert!(unit_word("a\nb").is_err());
    }

    #[test]
    fn the_unit_runs_the_proxy_in_the_foreground() {
        let u = user_unit(
            INSTALLED_HEADER,
            Path::new("/opt/my flm/flm"),
            &["--port".into(), "9000".into()],
            Some(Path::new("/srv/flm")),
        )
        .unwrap();
        assert!(u.starts_with(INSTALLED_HEADER));
        assert_eq!(
            exec_start(&u).unwrap(),
            "\"/opt/my flm/flm\" proxy start --no-daemon --format json --port 9000"
        );
        assert!(u.contains("\nEnvironment=FLM_HOME=/srv/flm\n"));
        assert!(u.contains("\nWantedBy=default.target\n"));
    }
}
