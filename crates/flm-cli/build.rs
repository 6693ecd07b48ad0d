//! Build information for `flm --version`: the commit and the build date.
//!
//! - Commit: `$FLM_BUILD_COMMIT` when set (packagers building from a source tarball
//!   set it), else `git rev-parse --short=12 HEAD` in this checkout, else `unknown`
//!   (a tarball without `.git` and without the variable: the version line says so).
//! - Build date (UTC, `YYYY-MM-DD`): `$FLM_BUILD_DATE` when set, else
//!   `$SOURCE_DATE_EPOCH` (reproducible builds), else today.
//!
//! The script runs again when HEAD moves (a commit, a checkout) or one of the variables
//! changes, not on every build: the date is the date of the last such run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["FLM_BUILD_COMMIT", "FLM_BUILD_DATE", "SOURCE_DATE_EPOCH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());

    let commit = match non_empty_env("FLM_BUILD_COMMIT") {
        Some(c) => c,
        None => match git(&manifest_dir, &["rev-parse", "--short=12", "HEAD"]) {
            Some(c) => {
                watch_git_head(&manifest_dir);
                c
            }
            None => "unknown".to_owned(),
        },
    };
    let date = non_empty_env("FLM_BUILD_DATE").unwrap_or_else(|| {
        let secs = non_empty_env("SOURCE_DATE_EPOCH")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            });
        ymd(secs)
    });
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let commit_text = if commit == "unknown" {
        "commit unknown: not built from a git checkout".to_owned()
    } else {
        format!("commit {commit}")
    };
    println!("cargo:rustc-env=FLM_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=FLM_BUILD_DATE={date}");
    println!("cargo:rustc-env=FLM_VERSION_LINE={version} ({commit_text}, built {date})");
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Output of a successful git command, trimmed; `None` when git is missing, this is not
/// a checkout, or the command fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// Re-run when HEAD or the branch it points to moves (worktrees included: HEAD lives
/// in the worktree's git dir, branches and packed-refs in the common dir).
fn watch_git_head(dir: &Path) {
    let abs = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }
    };
    let Some(git_dir) = git(dir, &["rev-parse", "--git-dir"]).map(abs) else {
        return;
    };
    let common = git(dir, &["rev-parse", "--git-common-dir"])
        .map(abs)
        .unwrap_or_else(|| git_dir.clone());
    let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(reference) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(reference));
    }
    for p in watched {
        // A path that does not exist would make cargo re-run the script every time.
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}

/// `YYYY-MM-DD` of a Unix time (UTC), by the civil-from-days algorithm.
fn ymd(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
