//! One open database file: its pool, its read-only state and error mapping.

use std::path::{Path, PathBuf};

use flm_core::RepoError;
use sqlx::SqlitePool;

/// An open database (`config.db` or `security.db`).
#[derive(Debug)]
pub(crate) struct Db {
    /// Full path of the file.
    pub(crate) path: PathBuf,
    /// Connection pool (read-only connections in safe mode).
    pub(crate) pool: SqlitePool,
    /// Why the database is read-only, when its migration failed.
    pub(crate) read_only: Option<String>,
}

impl Db {
    /// Refuses a write in safe mode, before anything touches the database.
    pub(crate) fn ensure_writable(&self) -> Result<(), RepoError> {
        match &self.read_only {
            Some(reason) => Err(RepoError::ReadOnlyMode(reason.clone())),
            None => Ok(()),
        }
    }

    /// Maps a driver error of operation `op` (e.g. `reading settings`) on this file.
    pub(crate) fn err(&self, op: &str, e: sqlx::Error) -> RepoError {
        if let Some(reason) = &self.read_only {
            if sqlite_primary_code(&e) == Some(SQLITE_READONLY) {
                return RepoError::ReadOnlyMode(reason.clone());
            }
        }
        map_sqlx_error(&self.path, op, e)
    }
}

pub(crate) const SQLITE_BUSY: i32 = 5;
pub(crate) const SQLITE_LOCKED: i32 = 6;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// The primary SQLite result code of a driver error, if it carries one.
pub(crate) fn sqlite_primary_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff),
        _ => None,
    }
}

/// Maps a sqlx error of operation `op` on the database file `path` to a [`RepoError`]
/// whose message names the file and says what to do about it.
///
/// Public so that repositories added by other crates on top of
/// [`Store::config_pool`](crate::Store::config_pool) /
/// [`Store::security_pool`](crate::Store::security_pool) report errors the same way.
pub fn map_sqlx_error(path: &Path, op: &str, e: sqlx::Error) -> RepoError {
    let p = path.display();
    if let sqlx::Error::Database(db) = &e {
        let msg = db.message();
        if db.is_unique_violation() {
            return RepoError::Validation(format!("{op}: already exists ({msg})"));
        }
        return match sqlite_primary_code(&e) {
            Some(SQLITE_NOTADB) => RepoError::Database(format!(
                "`{p}` is not a valid SQLite database ({msg}); move it aside or restore a backup"
            )),
            Some(SQLITE_CORRUPT) => RepoError::Database(format!(
                "`{p}` is corrupt ({msg}); restore a backup or move it aside"
            )),
            Some(SQLITE_READONLY) => RepoError::ReadOnlyMode(format!(
                "{op}: `{p}` is read-only ({msg}); check the permissions of the file and its directory"
            )),
            Some(SQLITE_BUSY | SQLITE_LOCKED) => RepoError::Database(format!(
                "{op}: `{p}` is locked by another process ({msg}); retry when it is done"
            )),
            Some(SQLITE_FULL) => RepoError::Io(format!(
                "{op}: the disk holding `{p}` is full ({msg}); free some space and retry"
            )),
            Some(SQLITE_IOERR) => RepoError::Io(format!(
                "{op}: I/O error on `{p}` ({msg}); check the disk, then run `flm check`"
            )),
            Some(SQLITE_CANTOPEN) => RepoError::Io(format!(
                "cannot open `{p}` ({msg}); check that its directory exists and is writable"
            )),
            _ => RepoError::Database(format!(
                "{op} failed on `{p}`: {msg}; run `flm check`"
            )),
        };
    }
    match e {
        sqlx::Error::Io(io) => RepoError::Io(format!(
            "{op}: I/O error on `{p}`: {io}; check the disk, then run `flm check`"
        )),
        sqlx::Error::PoolTimedOut => RepoError::Database(format!(
            "{op}: timed out waiting for a connection to `{p}`; another process may keep it busy, retry"
        )),
        sqlx::Error::PoolClosed => RepoError::Database(format!(
            "{op}: the store for `{p}` is already closed; this is a bug, please report it"
        )),
        other => RepoError::Database(format!(
            "{op} failed on `{p}`: {other}; run `flm check`"
        )),
    }
}
