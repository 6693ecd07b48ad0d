//! The daemon state file `proxy-daemon.json`: how separate CLI invocations find the
//! running daemon. Written atomically (temp file + rename) with mode 0600, because it
//! holds the admin token and the local CLI key.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Contents of the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonState {
    /// Daemon process id.
    pub pid: u32,
    /// Loopback port of the admin API.
    pub port: u16,
    /// Bearer token of the admin API (64 hex characters).
    pub token: String,
    /// An API key valid only while this daemon runs, for `flm chat` on this machine.
    /// Never stored in the database.
    pub cli_key: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// Last update (RFC 3339).
    pub updated_at: String,
    /// The app's loopback URL (`http://127.0.0.1:<port>`), when the daemon serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_url: Option<String>,
}

/// Reads the state file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> std::io::Result<Option<DaemonState>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a valid daemon state file: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the state file atomically with mode 0600 (parent directory 0700).
pub fn write(path: &Path, state: &DaemonState) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("state file has no parent directory"))?;
    create_private_dir(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        let body = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Removes the state file if it exists.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates a directory (and parents) private to the user.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
