//! Processes: is a pid alive, where is `flm-proxy`, starting it detached.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::output::CliError;

/// File name of the daemon binary on this platform.
pub fn proxy_binary_name() -> String {
    format!("flm-proxy{}", std::env::consts::EXE_SUFFIX)
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let proc_root = Path::new("/proc");
    if proc_root.join("self").exists() {
        // Linux: the state letter follows the last `)` of /proc/<pid>/stat (the
        // command name in parentheses may itself contain spaces or parentheses).
        return match std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        };
    }
    #[cfg(unix)]
    {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
    #[cfg(not(unix))]
    {
        // No cheap check: callers confirm with the admin API.
        true
    }
}

/// Finds `flm-proxy`: next to the running executable first, then on `PATH`.
pub fn find_proxy_binary() -> Result<PathBuf, CliError> {
    let name = proxy_binary_name();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    if let Some(dir) = &exe_dir {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(&name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let next_to = exe_dir
        .map(|d| format!(" next to flm ({})", d.display()))
        .unwrap_or_default();
    Err(CliError::internal(
        "PROXY_DAEMON_ERROR",
        format!(
            "cannot find the `{name}` binary{next_to} or on PATH; install both binaries in the same directory (e.g. `cargo install --path crates/flm-cli` installs flm and flm-proxy), or run the proxy in the foreground with `flm proxy start --no-daemon`"
        ),
    ))
}

/// Starts `flm-proxy --daemon --data-dir DIR` detached from this process: no
/// standard streams, its own process group (a Ctrl-C in this terminal does not reach
/// it).
pub fn spawn_daemon(binary: &Path, data_dir: &Path) -> Result<Child, CliError> {
    let mut cmd = Command::new(binary);
    cmd.arg("--daemon")
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn().map_err(|e| {
        CliError::internal(
            "PROXY_DAEMON_ERROR",
            format!("cannot start {}: {e}", binary.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX - 1));
    }
}
