//! The daemon's log file with size-based rotation: when a line would take
//! `proxy.log` past `log.max_size_mb`, the file becomes `proxy.log.1` (the older
//! ones shift to `.2` … up to `log.max_files`, the oldest is deleted) and a fresh
//! `proxy.log` (0600) is started. Rotation is a few renames under the same short
//! lock that already serialises the lines, so no request waits on more than that;
//! a rotation that fails keeps writing to the current file (and retries at the
//! next line past the limit), so logging never stops.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Default of `log.max_size_mb`.
pub const DEFAULT_MAX_SIZE_MB: u64 = 50;
/// Default of `log.max_files`.
pub const DEFAULT_MAX_FILES: usize = 5;

/// A log file rotated by size; `&RotatingLog` is an [`io::Write`] taking whole lines.
pub struct RotatingLog {
    path: PathBuf,
    state: Mutex<State>,
    max_bytes: AtomicU64,
    max_files: AtomicUsize,
}

struct State {
    file: File,
    size: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// `proxy.log.{n}`.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl RotatingLog {
    /// Opens (appends to) `path`, rotating past `max_bytes` and keeping `max_files`.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new(State { file, size }),
            max_bytes: AtomicU64::new(max_bytes.max(1)),
            max_files: AtomicUsize::new(max_files),
        })
    }

    /// Changes the limits (applied from the next line on).
    pub fn set_limits(&self, max_bytes: u64, max_files: usize) {
        self.max_bytes.store(max_bytes.max(1), Ordering::Relaxed);
        self.max_files.store(max_files, Ordering::Relaxed);
    }

    fn write_line(&self, buf: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let len = buf.len() as u64;
        if st.size > 0 && st.size.saturating_add(len) > self.max_bytes.load(Ordering::Relaxed) {
            match self.rotate() {
                Ok(file) => {
                    st.file = file;
                    st.size = 0;
                }
                // Keep the line in the current file; the next one tries again.
                Err(e) => eprintln!("flm-proxy: cannot rotate {}: {e}", self.path.display()),
            }
        }
        st.file.write_all(buf)?;
        st.size = st.size.saturating_add(len);
        Ok(())
    }

    /// Shifts the old files and returns the fresh current one.
    fn rotate(&self) -> io::Result<File> {
        let keep = self.max_files.load(Ordering::Relaxed);
        if keep == 0 {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).truncate(true);
            let file = opts.open(&self.path)?;
            drop(file);
            return open_append(&self.path);
        }
        // Files beyond the cap (the cap may have been lowered) go first.
        let mut n = keep;
        while n <= keep + 100 && numbered(&self.path, n).exists() {
            let _ = std::fs::remove_file(numbered(&self.path, n));
            n += 1;
        }
        for i in (1..keep).rev() {
            match std::fs::rename(numbered(&self.path, i), numbered(&self.path, i + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        open_append(&self.path)
    }
}

impl Write for &RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn rotates_by_size_and_keeps_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.log");
        let log = RotatingLog::open(&path, 25, 2).unwrap();
        let mut w = &log;
        for i in 0..8 {
            // 10 bytes per line: two lines per file.
            w.write_all(format!("line {i:04}\n").as_bytes()).unwrap();
        }
        assert_eq!(read(&path), "line 0006\nline 0007\n");
        assert_eq!(read(&numbered(&path, 1)), "line 0004\nline 0005\n");
        assert_eq!(read(&numbered(&path, 2)), "line 0002\nline 0003\n");
        assert!(!numbered(&path, 3).exists(), "only 2 old files are kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.log");
        std::fs::write(&path, "old line\n").unwrap();
        let log = RotatingLog::open(&path, 12, 1).unwrap();
        (&log).write_all(b"new line\n").unwrap();
        assert_eq!(read(&path), "new line\n");
        assert_eq!(read(&numbered(&path, 1)), "old line\n");
    }

    #[test]
    fn a_line_larger_than_the_limit_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.log");
        let log = RotatingLog::open(&path, 4, 1).unwrap();
        (&log).write_all(b"a long line\n").unwrap();
        (&log).write_all(b"another long line\n").unwrap();
        assert_eq!(read(&path), "another long line\n");
        assert_eq!(read(&numbered(&path, 1)), "a long line\n");
    }

    #[test]
    fn limits_change_live_and_zero_files_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.log");
        let log = RotatingLog::open(&path, 1000, 3).unwrap();
        for _ in 0..3 {
            (&log).write_all(b"0123456789\n").unwrap();
        }
        assert!(!numbered(&path, 1).exists());
        log.set_limits(15, 3);
        (&log).write_all(b"x\n").unwrap();
        assert_eq!(read(&path), "x\n");
        assert!(numbered(&path, 1).exists());
        // Lowering the cap drops the files beyond it at the next rotation.
        (&log).write_all(b"0123456789abcdef\n").unwrap();
        assert!(numbered(&path, 2).exists());
        log.set_limits(15, 1);
        (&log).write_all(b"0123456789abcdef\n").unwrap();
        assert!(numbered(&path, 1).exists());
        assert!(!numbered(&path, 2).exists());
        log.set_limits(15, 0);
        (&log).write_all(b"0123456789abcdef\n").unwrap();
        assert_eq!(read(&path), "0123456789abcdef\n");
        assert!(!numbered(&path, 2).exists());
    }
}
