//! Opening a database file: permissions, connection options, migrations, safe mode.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use flm_core::RepoError;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::db::{map_sqlx_error, sqlite_primary_code, Db, SQLITE_BUSY, SQLITE_LOCKED};

/// Most connections one pool opens. Each SQLite connection owns a worker thread, and
/// WAL lets readers run beside the one writer; four is plenty for the CLI and the daemon.
const MAX_CONNECTIONS: u32 = 4;

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates `dir` (and missing parents) with mode 0700 on Unix.
///
/// `what` names the directory in messages (`data directory`, `directory of config.db`).
pub(crate) fn ensure_dir(dir: &Path, what: &str) -> Result<(), RepoError> {
    let fail = |e: &dyn std::fmt::Display| {
        RepoError::Io(format!(
            "cannot create {what} `{}`: {e}; choose another location (FLM_DATA_DIR) or fix the path",
            dir.display()
        ))
    };
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| fail(&e))?;
    if !dir.is_dir() {
        return Err(fail(&"it exists and is not a directory"));
    }
    Ok(())
}

/// Makes sure `path` exists as a regular file readable by its owner only (0600 on
/// Unix) before SQLite opens it, so the database is never readable by others — not
/// even for the moment between SQLite creating it and a later `chmod`. An existing file
/// with looser permissions is tightened, and so are its `-wal` / `-shm` companions.
pub(crate) fn ensure_db_file(path: &Path) -> Result<(), RepoError> {
    let p = path.display();
    match create_private(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let dir = path.parent().unwrap_or(path);
            return Err(RepoError::Io(format!(
                "cannot create `{p}`: the directory `{}` is not writable ({e}); fix its permissions or choose another location",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(RepoError::Io(format!(
                "cannot create `{p}`: {e}; check the path and its directory"
            )))
        }
    }
    let meta = fs::metadata(path).map_err(|e| {
        RepoError::Io(format!(
            "cannot read `{p}`: {e}; check the path (a dangling link?) and its permissions"
        ))
    })?;
    if !meta.is_file() {
        return Err(RepoError::Io(format!(
            "`{p}` is not a regular file; move it aside or choose another location"
        )));
    }
    restrict(path)?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        let companion = Path::new(&companion);
        if companion.is_file() {
            restrict(companion)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
pub(crate) fn create_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(not(unix))]
pub(crate) fn create_private(path: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
}

/// Tightens an existing file to 0600 when group or others have any access.
#[cfg(unix)]
pub(crate) fn restrict(path: &Path) -> Result<(), RepoError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|e| {
        RepoError::Io(format!(
            "cannot read `{}`: {e}; check its permissions",
            path.display()
        ))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "database file was readable by others; restricting it to 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| {
            RepoError::Io(format!(
                "cannot restrict `{}` to mode 0600: {e}; run `chmod 600` on it",
                path.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn restrict(_path: &Path) -> Result<(), RepoError> {
    Ok(())
}

fn read_write_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
}

/// Read-only connections set no `journal_mode` / `synchronous` pragma: both would be
/// writes (or need a write lock) on a file that must stay untouched.
fn read_only_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .read_only(true)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
}

fn pool_options() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A SQLite "ping" only round-trips to the worker thread; skip it.
        .test_before_acquire(false)
        // SQLite rolls a transaction back by itself on SQLITE_FULL, so sqlx's queued
        // ROLLBACK fails and the connection would go back to the pool still counting
        // an open transaction: every later `BEGIN` on it is refused ("non-zero
        // transaction depth") and writes stay broken after the disk has space again.
        // Such a connection is closed instead; the pool opens a fresh one.
        .after_release(|conn, _| {
            Box::pin(async move {
                use sqlx::Connection;
                if !conn.is_in_transaction() {
                    return Ok(true);
                }
                // Lets the queued ROLLBACK run first (same command queue).
                conn.ping().await?;
                let healthy = !conn.is_in_transaction();
                if !healthy {
                    tracing::warn!("closing a database connection left in a failed transaction");
                }
                Ok(healthy)
            })
        })
}

/// Opens the read-write pool, retrying while another process holds the file locked.
///
/// Switching a new file to WAL (`PRAGMA journal_mode = WAL` on connect) needs an
/// exclusive lock that SQLite does not wait for with its busy timeout: a second process
/// opening the same fresh store at that moment gets `SQLITE_BUSY` at once. Once the file
/// is in WAL mode (a persistent setting) the pragma is a no-op, so this only matters
/// for the first opens of a new store.
async fn connect_read_write(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut delay = Duration::from_millis(2);
    loop {
        match pool_options().connect_with(read_write_options(path)).await {
            Err(e)
                if matches!(sqlite_primary_code(&e), Some(SQLITE_BUSY | SQLITE_LOCKED))
                    && Instant::now() < deadline =>
            {
                tracing::debug!(path = %path.display(), error = %e, "database busy while opening; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Opens `path` read-write and applies `migrator`; on a migration failure falls back to
/// a read-only pool (safe mode, spec 50-data §5).
pub(crate) async fn open_db(
    name: &'static str,
    path: &Path,
    migrator: &'static Migrator,
) -> Result<Db, RepoError> {
    let pool = connect_read_write(path)
        .await
        .map_err(|e| map_sqlx_error(path, &format!("opening {name}"), e))?;

    let detail = match run_migrations(&pool, migrator).await {
        Ok(()) => {
            return Ok(Db {
                path: path.to_owned(),
                pool,
                read_only: None,
            })
        }
        Err(e) => describe_migrate_error(&e),
    };
    pool.close().await;

    let reason = format!(
        "{name} migration failed: {detail}; FLM runs read-only. Restore a backup or run `flm check`"
    );
    tracing::warn!(path = %path.display(), %detail, "{name} migration failed; opening it read-only");

    let ro = async {
        let pool = pool_options().connect_with(read_only_options(path)).await?;
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .fetch_one(&pool)
            .await?;
        Ok::<_, sqlx::Error>(pool)
    };
    match ro.await {
        Ok(pool) => Ok(Db {
            path: path.to_owned(),
            pool,
            read_only: Some(reason),
        }),
        Err(e) => Err(RepoError::MigrationFailed(format!(
            "{name} migration failed: {detail}; opening `{}` read-only failed too: {}. Restore a backup or move the file aside",
            path.display(),
            map_sqlx_error(path, "opening read-only", e)
        ))),
    }
}

/// Runs the migrator; retries while another process is migrating the same file.
///
/// sqlx takes no migration lock on SQLite. Two processes opening a fresh store at the
/// same moment both see a migration as pending; the second one's `CREATE TABLE` (or its
/// `_sqlx_migrations` row) then fails on what the first one just committed. So when
/// executing a migration fails *and* more migrations are recorded as applied than
/// before the attempt, someone made progress: run again, and the migrator skips what
/// is now applied. A failure without progress (a genuine conflict) is returned as is.
async fn run_migrations(pool: &SqlitePool, migrator: &Migrator) -> Result<(), MigrateError> {
    let max_attempts = migrator.iter().count() + 2;
    let mut applied = applied_count(pool).await;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e @ (MigrateError::Execute(_) | MigrateError::ExecuteMigration(..))) => {
                let now = applied_count(pool).await;
                if now <= applied || attempts >= max_attempts {
                    return Err(e);
                }
                tracing::debug!(error = %e, "migration raced with another process; retrying");
                applied = now;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Rows in `_sqlx_migrations` (0 before the table exists).
async fn applied_count(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

fn describe_migrate_error(e: &MigrateError) -> String {
    match e {
        MigrateError::VersionMissing(v) => format!(
            "the database records migration {v}, which this build of FLM does not know (was it written by a newer FLM?)"
        ),
        MigrateError::VersionMismatch(v) => {
            format!("migration {v} differs from the one applied to the database")
        }
        MigrateError::Dirty(v) => format!("migration {v} was left partially applied"),
        MigrateError::ExecuteMigration(err, v) => format!("migration {v} failed: {err}"),
        other => other.to_string(),
    }
}
