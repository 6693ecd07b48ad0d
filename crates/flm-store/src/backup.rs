//! `security.db` backups (`VACUUM INTO`, 3 generations) and restore (spec 40-security §13).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flm_core::security::{BackupInfo, RestoreInfo};
use flm_core::RepoError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::db::map_sqlx_error;
use crate::open::{create_private, ensure_dir, restrict};
use crate::{Store, StorePaths, SECURITY_DB_FILE, SECURITY_MIGRATOR};

/// Backup file names: `security.db.bak.<yyyymmddThhmmssZ>`.
pub const BACKUP_PREFIX: &str = "security.db.bak.";

/// Generations kept by [`Store::backup_security`].
pub const BACKUP_GENERATIONS: usize = 3;

/// Whether `name` is exactly `security.db.bak.` + `yyyymmddThhmmssZ`.
fn is_backup_name(name: &str) -> bool {
    let Some(stamp) = name.strip_prefix(BACKUP_PREFIX) else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
}

fn io_err(what: &str, path: &Path, e: &io::Error) -> RepoError {
    RepoError::Io(format!(
        "{what} `{}`: {e}; check the disk and the directory's permissions",
        path.display()
    ))
}

/// Flushes a file's contents to the disk.
fn sync_file(path: &Path) -> Result<(), RepoError> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err("cannot flush", path, &e))
}

/// Makes a rename in `dir` durable (no-op where directories cannot be opened).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not flush the directory after a rename");
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn remove_if_exists(path: &Path) -> Result<(), RepoError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove", path, &e)),
    }
}

/// Deletes all but the newest `keep` backups in `dir` (by name, i.e. by timestamp),
/// never `just_made`; returns how many remain.
fn rotate(dir: &Path, just_made: &Path, keep: usize) -> Result<usize, RepoError> {
    let entries = fs::read_dir(dir).map_err(|e| io_err("cannot list", dir, &e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("cannot list", dir, &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_backup_name(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(name);
        }
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    let just_made = just_made
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    // The new backup always stays, even when the clock went backwards.
    let mut kept = usize::from(just_made.as_ref().is_some_and(|n| names.contains(n)));
    for name in names {
        if Some(&name) == just_made.as_ref() {
            continue;
        }
        if kept < keep {
            kept += 1;
            continue;
        }
        let path = dir.join(&name);
        fs::remove_file(&path).map_err(|e| io_err("cannot delete the old backup", &path, &e))?;
        tracing::info!(path = %path.display(), "deleted old security.db backup");
    }
    Ok(kept)
}

/// What a backup file records about its schema.
struct BackupSchema {
    /// Migrations this build has that the backup lacks.
    pending: usize,
}

/// Checks that `backup` is a healthy `security.db` whose migrations this build knows.
async fn inspect_backup(backup: &Path) -> Result<BackupSchema, RepoError> {
    const OP: &str = "reading the backup";
    let p = backup.display();
    // immutable: no locks, no -wal/-shm, nothing written next to the backup.
    let mut conn = SqliteConnectOptions::new()
        .filename(backup)
        .read_only(true)
        .immutable(true)
        .connect()
        .await
        .map_err(|e| map_sqlx_error(backup, OP, e))?;
    let result = async {
        let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| map_sqlx_error(backup, OP, e))?;
        if integrity != ["ok"] {
            return Err(RepoError::Validation(format!(
                "the backup `{p}` is corrupt ({}); choose another backup",
                integrity.join("; ")
            )));
        }
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&mut conn)
                .await
                .map_err(|e| map_sqlx_error(backup, OP, e))?;
        let has = |t: &str| tables.iter().any(|n| n == t);
        if !has("_sqlx_migrations") || !has("security_policies") {
            return Err(RepoError::Validation(format!(
                "`{p}` is not a backup of FLM's security.db (its tables are missing); choose a `{BACKUP_PREFIX}*` file"
            )));
        }
        let applied: Vec<(i64, Vec<u8>, bool)> =
            sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .map_err(|e| map_sqlx_error(backup, OP, e))?;
        let known: HashMap<i64, &[u8]> = SECURITY_MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| (m.version, m.checksum.as_ref()))
            .collect();
        let latest_known = known.keys().copied().max().unwrap_or(0);
        if let Some((newest, ..)) = applied.iter().max_by_key(|(v, ..)| *v) {
            if *newest > latest_known {
                return Err(RepoError::Validation(format!(
                    "the backup `{p}` was written by a newer FLM: its schema is at migration {newest}, \
                     this build knows migrations up to {latest_known}. Nothing was changed; restore it with that newer FLM"
                )));
            }
        }
        for (version, checksum, success) in &applied {
            match known.get(version) {
                None => {
                    return Err(RepoError::Validation(format!(
                        "the backup `{p}` records migration {version}, which this build of FLM does not know; nothing was changed"
                    )))
                }
                Some(k) if *k != checksum.as_slice() => {
                    return Err(RepoError::Validation(format!(
                        "migration {version} in the backup `{p}` differs from this build's (is it a config.db backup?); nothing was changed"
                    )))
                }
                Some(_) if !success => {
                    return Err(RepoError::Validation(format!(
                        "migration {version} was left partially applied in the backup `{p}`; choose another backup"
                    )))
                }
                Some(_) => {}
            }
        }
        let pending = known
            .keys()
            .filter(|v| !applied.iter().any(|(a, ..)| a == *v))
            .count();
        Ok(BackupSchema { pending })
    }
    .await;
    conn.close()
        .await
        .map_err(|e| map_sqlx_error(backup, "closing the backup", e))?;
    result
}

impl Store {
    /// Writes a consistent snapshot of `security.db` to
    /// `out_dir/security.db.bak.<UTC yyyymmddThhmmssZ of now>` with `VACUUM INTO`
    /// (safe while the proxy writes; works in read-only safe mode too), mode 0600 in a
    /// 0700 directory, then keeps the [`BACKUP_GENERATIONS`] newest files of exactly that
    /// name pattern (the new one always among them) and deletes the others.
    ///
    /// # Errors
    ///
    /// [`RepoError::Validation`] when a backup with the same timestamp exists;
    /// [`RepoError::Io`] / [`RepoError::Database`] on I/O or SQLite failures.
    pub async fn backup_security(
        &self,
        out_dir: &Path,
        now: DateTime<Utc>,
    ) -> Result<BackupInfo, RepoError> {
        ensure_dir(out_dir, "backup directory")?;
        let name = format!("{BACKUP_PREFIX}{}", now.format("%Y%m%dT%H%M%SZ"));
        let path = out_dir.join(&name);
        if path.exists() {
            return Err(RepoError::Validation(format!(
                "the backup `{}` already exists; wait a second and retry",
                path.display()
            )));
        }
        // Written under a name outside the pattern, then renamed: a crash never leaves
        // a partial file that rotation would count as a generation.
        let tmp = out_dir.join(format!(".{name}.tmp"));
        remove_if_exists(&tmp)?;
        let Some(tmp_text) = tmp.to_str() else {
            return Err(RepoError::Io(format!(
                "the backup path `{}` is not valid UTF-8; choose another directory",
                tmp.display()
            )));
        };
        // Created empty and private first, so the snapshot is never readable by others.
        create_private(&tmp).map_err(|e| io_err("cannot create", &tmp, &e))?;
        let db = &self.inner.security;
        let vacuum = sqlx::query("VACUUM INTO ?")
            .bind(tmp_text)
            .execute(&db.pool)
            .await;
        if let Err(e) = vacuum {
            let _ = fs::remove_file(&tmp);
            return Err(map_sqlx_error(&db.path, "backing up security.db", e));
        }
        let finish = (|| {
            restrict(&tmp)?;
            sync_file(&tmp)?;
            fs::rename(&tmp, &path).map_err(|e| io_err("cannot rename the backup to", &path, &e))
        })();
        if let Err(e) = finish {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(out_dir);
        let total_backups = rotate(out_dir, &path, BACKUP_GENERATIONS)?;
        tracing::info!(path = %path.display(), total_backups, "security.db backed up");
        Ok(BackupInfo {
            path,
            total_backups,
        })
    }

    /// Replaces `paths.security_db` with `backup` and brings it up to this build's
    /// schema. **FLM must be stopped** (no daemon, no open [`Store`] on these paths).
    ///
    /// 1. The backup is opened read-only (`immutable`): it must pass
    ///    `PRAGMA integrity_check`, be a `security.db`, and record no migration newer
    ///    than this build knows (else [`RepoError::Validation`] with both versions, and
    ///    nothing is touched).
    /// 2. It is copied next to the live file (0600, fsync) and migrated *there*, so a
    ///    failing migration leaves the live file untouched.
    /// 3. The stale `-wal` / `-shm` of the old file are removed (they would otherwise
    ///    be replayed onto the restored file), the copy is renamed over `security.db`
    ///    (atomic) and the directory is flushed.
    ///
    /// # Errors
    ///
    /// [`RepoError::NotFound`] when `backup` does not exist, [`RepoError::Validation`]
    /// for an unusable backup, [`RepoError::MigrationFailed`] when migrating the copy
    /// fails, [`RepoError::Io`] for file errors.
    pub async fn restore_security(
        paths: &StorePaths,
        backup: &Path,
    ) -> Result<RestoreInfo, RepoError> {
        let live = &paths.security_db;
        match fs::metadata(backup) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(RepoError::Validation(format!(
                    "`{}` is not a file; pass a `{BACKUP_PREFIX}*` file",
                    backup.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RepoError::NotFound(format!(
                    "the backup `{}` does not exist",
                    backup.display()
                )))
            }
            Err(e) => return Err(io_err("cannot read", backup, &e)),
        }
        if let (Ok(a), Ok(b)) = (backup.canonicalize(), live.canonicalize()) {
            if a == b {
                return Err(RepoError::Validation(format!(
                    "`{}` is the live {SECURITY_DB_FILE} itself; pass a backup file",
                    backup.display()
                )));
            }
        }
        let schema = inspect_backup(backup).await?;

        let dir = match live.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        ensure_dir(&dir, &format!("directory of {SECURITY_DB_FILE}"))?;
        let tmp = with_suffix(live, ".restore.tmp");
        for stale in [
            tmp.clone(),
            with_suffix(&tmp, "-journal"),
            with_suffix(&tmp, "-wal"),
            with_suffix(&tmp, "-shm"),
        ] {
            remove_if_exists(&stale)?;
        }
        let staged = stage_copy(backup, &tmp).await;
        if let Err(e) = staged {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }

        for companion in [with_suffix(live, "-wal"), with_suffix(live, "-shm")] {
            remove_if_exists(&companion)?;
        }
        if let Err(e) = fs::rename(&tmp, live) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("cannot replace", live, &e));
        }
        sync_dir(&dir);
        tracing::info!(path = %live.display(), backup = %backup.display(), migrations_applied = schema.pending, "security.db restored");
        Ok(RestoreInfo {
            restored_path: live.clone(),
            migrations_applied: schema.pending,
        })
    }
}

/// Copies `backup` to `tmp` (0600, flushed) and applies pending migrations to it.
async fn stage_copy(backup: &Path, tmp: &Path) -> Result<(), RepoError> {
    create_private(tmp).map_err(|e| io_err("cannot create", tmp, &e))?;
    {
        let mut src = fs::File::open(backup).map_err(|e| io_err("cannot read", backup, &e))?;
        let mut dst = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(tmp)
            .map_err(|e| io_err("cannot write", tmp, &e))?;
        io::copy(&mut src, &mut dst).map_err(|e| io_err("cannot copy the backup to", tmp, &e))?;
        dst.sync_all()
            .map_err(|e| io_err("cannot flush", tmp, &e))?;
    }
    // Rollback journal while migrating: no -wal to carry over; the next open of the
    // store switches the file back to WAL.
    let mut conn = SqliteConnectOptions::new()
        .filename(tmp)
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .connect()
        .await
        .map_err(|e| map_sqlx_error(tmp, "opening the restored copy", e))?;
    let migrated = SECURITY_MIGRATOR.run(&mut conn).await;
    let closed = conn.close().await;
    migrated.map_err(|e| {
        RepoError::MigrationFailed(format!(
            "migrating the restored copy of the backup `{}` failed: {e}; the live database was not changed",
            backup.display()
        ))
    })?;
    closed.map_err(|e| map_sqlx_error(tmp, "closing the restored copy", e))?;
    sync_file(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_are_matched_exactly() {
        assert!(is_backup_name("security.db.bak.20261125T100000Z"));
        for bad in [
            "security.db.bak.20261125T100000",
            "security.db.bak.20261125T100000Z.tmp",
            ".security.db.bak.20261125T100000Z.tmp",
            "security.db.bak.2026112xT100000Z",
            "config.db.bak.20261125T100000Z",
            "security.db.bak.20261125-100000Z",
            "security.db",
        ] {
            assert!(!is_backup_name(bad), "{bad}");
        }
    }
}
