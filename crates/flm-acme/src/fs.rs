//! Private directory and atomic-write helpers (same policy as `flm-tls`: directory
//! 0700, secrets 0600, temporary file + rename).
//!
//! On Windows the files inherit the ACL of FLM's per-user data directory; modes are a
//! Unix concept and are not emulated.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{AcmeError, Result};

/// Mode of private keys and account credentials.
pub(crate) const SECRET_MODE: u32 = 0o600;
/// Mode of certificates (public material).
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode of the state directory.
const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and parents) and restricts it to the owner.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(AcmeError::io(dir))?;
    set_mode(dir, DIR_MODE)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(AcmeError::io(path))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory created
/// with `mode` from the start (a key is never readable by others, not even briefly),
/// synced, then renamed over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        hex::encode(rand::random::<[u8; 6]>())
    ));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts.open(&tmp).map_err(AcmeError::io(&tmp))?;
        f.write_all(bytes).map_err(AcmeError::io(&tmp))?;
        f.sync_all().map_err(AcmeError::io(&tmp))?;
        drop(f);
        // `mode` is filtered by the umask at creation; set it exactly.
        set_mode(&tmp, mode)?;
        fs::rename(&tmp, path).map_err(AcmeError::io(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn modes_and_replacement() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        ensure_private_dir(&dir).expect("dir");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("k.pem");
        write_atomic(&f, b"one", SECRET_MODE).expect("write");
        write_atomic(&f, b"two", SECRET_MODE).expect("overwrite");
        assert_eq!(fs::read(&f).expect("read"), b"two");
        assert_eq!(mode(&f), 0o600);
        let leftovers = fs::read_dir(&dir)
            .expect("ls")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                    .unwrap_or(false)
            })
            .count();
        assert_eq!(leftovers, 0, "no temporary files left behind");
    }
}
