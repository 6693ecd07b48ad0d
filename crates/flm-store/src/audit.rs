//! [`AuditRepository`] on `security.db` → `audit_logs`, `audit_chain_head`,
//! `audit_archive_marker`, and archive files.
//!
//! See `flm_core::security` for the hash chain. Appends take the write lock
//! (`BEGIN IMMEDIATE`), continue the chain from the stored head, insert the rows with
//! explicit ids (so ids have no gaps) and move the head, all in one transaction.
//! Triggers (migration `20261125000400`) refuse `UPDATE` on rows and `DELETE` of rows
//! not yet recorded as archived; the chain and the head catch whatever bypasses them.
//!
//! Archiving copies a prefix of the chain into a separate SQLite file (journal mode
//! DELETE, `synchronous=FULL`, 0600), checks the copy, and only then — in one live
//! transaction — records the boundary in `audit_archive_marker` and deletes the moved
//! rows. A crash between the two steps leaves the rows in both files; the next run
//! copies with `INSERT OR IGNORE` (after checking that equal ids carry equal hashes)
//! and completes the move.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flm_core::security::{
    ArchiveReport, AuditEvent, AuditFilter, AuditRepository, AuditRow, VerifyReport,
    AUDIT_GENESIS_HASH,
};
use flm_core::RepoError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};

use crate::db::{map_sqlx_error, Db};
use crate::open::{ensure_db_file, ensure_dir};
use crate::time::format_ts;

/// Columns of an audit row, in [`AuditRow`] order.
const COLS: &str = "id, request_id, api_key_id, endpoint, status, latency_ms, created_at, \
                    event_type, severity, ip, details, prev_hash, hash";

/// Rows per page when walking the chain.
const PAGE: i64 = 1000;

/// Rows per multi-row `INSERT` (13 parameters each; well under SQLite's limit).
const INSERT_CHUNK: usize = 200;

/// Schema of an archive file: the audit columns (ids as in the live table) and the
/// same no-update / no-delete rules.
const ARCHIVE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_logs (
        id         INTEGER PRIMARY KEY NOT NULL,
        request_id TEXT NOT NULL,
        api_key_id TEXT NULL,
        endpoint   TEXT NOT NULL,
        status     INTEGER NOT NULL,
        latency_ms INTEGER NULL,
        created_at TEXT NOT NULL,
        event_type TEXT NULL,
        severity   TEXT NOT NULL,
        ip         TEXT NULL,
        details    TEXT NULL,
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS idx_audit_logs_created_at ON audit_logs (created_at)",
    "CREATE TRIGGER IF NOT EXISTS audit_logs_no_update BEFORE UPDATE ON audit_logs
     BEGIN SELECT RAISE(ABORT, 'archived audit rows are immutable'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_logs_no_delete BEFORE DELETE ON audit_logs
     BEGIN SELECT RAISE(ABORT, 'archived audit rows cannot be deleted'); END",
];

/// The audit log stored in `security.db`.
pub(crate) struct SqliteAudit {
    pub(crate) db: Arc<Db>,
}

fn decode(r: &SqliteRow) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        id: r.try_get(0)?,
        request_id: r.try_get(1)?,
        api_key_id: r.try_get(2)?,
        endpoint: r.try_get(3)?,
        status: r.try_get(4)?,
        latency_ms: r.try_get(5)?,
        created_at: r.try_get(6)?,
        event_type: r.try_get(7)?,
        severity: r.try_get(8)?,
        ip: r.try_get(9)?,
        details: r.try_get(10)?,
        prev_hash: r.try_get(11)?,
        hash: r.try_get(12)?,
    })
}

/// Rows per multi-row `INSERT`, largest first. A batch is split into these sizes so
/// that only a handful of distinct statements exist: each is compiled once per
/// connection and cached, instead of parsing a new statement per batch (or caching
/// one per batch size, which held tens of MiB).
const INSERT_SIZES: [usize; 4] = [64, 16, 4, 1];

/// Inserts already-hashed rows with their ids into `audit_logs` of `conn`.
async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[AuditRow],
    or_ignore: bool,
) -> Result<(), sqlx::Error> {
    let verb = if or_ignore {
        "INSERT OR IGNORE INTO"
    } else {
        "INSERT INTO"
    };
    let mut rest = rows;
    while !rest.is_empty() {
        let n = INSERT_SIZES
            .into_iter()
            .find(|n| *n <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut q = QueryBuilder::<Sqlite>::new(format!("{verb} audit_logs ({COLS}) "));
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.request_id.as_str())
                .push_bind(r.api_key_id.as_deref())
                .push_bind(r.endpoint.as_str())
                .push_bind(r.status)
                .push_bind(r.latency_ms)
                .push_bind(r.created_at.as_str())
                .push_bind(r.event_type.as_deref())
                .push_bind(r.severity.as_str())
                .push_bind(r.ip.as_deref())
                .push_bind(r.details.as_deref())
                .push_bind(r.prev_hash.as_str())
                .push_bind(r.hash.as_str());
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Appends the filter's `WHERE` conditions.
fn push_filter(q: &mut QueryBuilder<'_, Sqlite>, f: &AuditFilter) {
    q.push(" WHERE 1 = 1");
    if let Some(s) = f.severity {
        q.push(" AND severity = ").push_bind(s.as_str());
    }
    if let Some(t) = &f.event_type {
        q.push(" AND event_type = ").push_bind(t.clone());
    }
    if let Some(ip) = &f.ip {
        q.push(" AND ip = ").push_bind(ip.clone());
    }
    if let Some(t) = &f.since {
        q.push(" AND created_at >= ").push_bind(format_ts(t));
    }
    if let Some(t) = &f.until {
        q.push(" AND created_at < ").push_bind(format_ts(t));
    }
}

/// Walks a chain of rows in id order, one page at a time.
struct Walker {
    expected_id: Option<i64>,
    prev: String,
    checked: u64,
}

/// Where a walk stopped.
enum Step {
    Continue,
    Bad { id: i64, problem: String },
}

impl Walker {
    /// A walk that expects `first_id` next, linked to `prev` (`None`: take the first
    /// row's id and `prev_hash` as given — for archives that start mid-chain).
    fn new(first_id: Option<i64>, prev: String) -> Self {
        Self {
            expected_id: first_id,
            prev,
            checked: 0,
        }
    }

    fn step(&mut self, r: &AuditRow) -> Step {
        self.checked += 1;
        let expected = match self.expected_id {
            Some(e) => e,
            None => {
                // Start of an archive file: a chain that starts at id 1 must start at
                // the genesis hash; later starts link to a previous archive.
                if r.id == 1 {
                    self.prev = AUDIT_GENESIS_HASH.to_owned();
                } else {
                    self.prev = r.prev_hash.clone();
                }
                r.id
            }
        };
        if r.id != expected {
            let problem = if r.id > expected {
                if r.id - 1 == expected {
                    format!(
                        "audit row {expected} is missing (deleted?): the next row present is {}",
                        r.id
                    )
                } else {
                    format!(
                        "audit rows {expected}..={} are missing (deleted?): the next row present is {}",
                        r.id - 1,
                        r.id
                    )
                }
            } else {
                format!(
                    "audit row {} is out of sequence (expected id {expected})",
                    r.id
                )
            };
            return Step::Bad {
                id: expected.min(r.id),
                problem,
            };
        }
        if r.prev_hash != self.prev {
            return Step::Bad {
                id: r.id,
                problem: format!(
                    "audit row {}: prev_hash does not match the hash of the row before it (a row was replaced, inserted or removed)",
                    r.id
                ),
            };
        }
        if r.compute_hash() != r.hash {
            return Step::Bad {
                id: r.id,
                problem: format!(
                    "audit row {}: hash mismatch, the row was modified after it was written",
                    r.id
                ),
            };
        }
        self.prev = r.hash.clone();
        self.expected_id = Some(r.id + 1);
        Step::Continue
    }

    fn last_id(&self) -> Option<i64> {
        self.expected_id.map(|e| e - 1)
    }

    fn bad(&self, id: Option<i64>, problem: String) -> VerifyReport {
        VerifyReport {
            rows_checked: self.checked,
            ok: false,
            first_bad_id: id,
            problem: Some(problem),
        }
    }

    fn ok(&self) -> VerifyReport {
        VerifyReport {
            rows_checked: self.checked,
            ok: true,
            first_bad_id: None,
            problem: None,
        }
    }
}

/// Walks every row of `audit_logs` with `id > after` through `walker`, in pages.
/// Returns the first problem, if any.
async fn walk(
    conn: &mut SqliteConnection,
    after: i64,
    walker: &mut Walker,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    let mut cursor = after;
    loop {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM audit_logs WHERE id > ? ORDER BY id LIMIT ?"
        ))
        .bind(cursor)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        cursor = last.try_get(0)?;
        for raw in &rows {
            let row = match decode(raw) {
                Ok(r) => r,
                Err(e) => {
                    let id: i64 = raw.try_get(0)?;
                    walker.checked += 1;
                    return Ok(Some((
                        id,
                        format!("audit row {id} is unreadable ({e}): a column was altered"),
                    )));
                }
            };
            if let Step::Bad { id, problem } = walker.step(&row) {
                return Ok(Some((id, problem)));
            }
        }
        if i64::try_from(rows.len()).unwrap_or(PAGE) < PAGE {
            return Ok(None);
        }
    }
}

/// The latest archive boundary: `(through_id, boundary_hash)`, `(0, genesis)` if none.
async fn boundary(conn: &mut SqliteConnection) -> Result<(i64, String), sqlx::Error> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT through_id, boundary_hash FROM audit_archive_marker ORDER BY through_id DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.unwrap_or((0, AUDIT_GENESIS_HASH.to_owned())))
}

impl SqliteAudit {
    fn err(&self, op: &str, e: sqlx::Error) -> RepoError {
        self.db.err(op, e)
    }

    async fn select(
        &self,
        op: &str,
        f: &AuditFilter,
        newest_first: bool,
        default_limit: i64,
    ) -> Result<Vec<AuditRow>, RepoError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {COLS} FROM audit_logs"));
        push_filter(&mut q, f);
        q.push(if newest_first {
            " ORDER BY id DESC"
        } else {
            " ORDER BY id"
        });
        q.push(" LIMIT ")
            .push_bind(f.limit.map_or(default_limit, i64::from))
            .push(" OFFSET ")
            .push_bind(i64::from(f.offset));
        let rows = q
            .build()
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.err(op, e))?;
        rows.iter()
            .map(|r| decode(r).map_err(|e| self.err(op, e)))
            .collect()
    }

    /// Opens (creating 0600 when missing) an archive file with its schema.
    async fn open_archive(&self, path: &Path) -> Result<SqliteConnection, RepoError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                ensure_dir(parent, "audit archive directory")?;
            }
        }
        ensure_db_file(path)?;
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Delete)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| map_sqlx_error(path, "opening the audit archive", e))?;
        for stmt in ARCHIVE_SCHEMA {
            sqlx::query(stmt)
                .execute(&mut conn)
                .await
                .map_err(|e| map_sqlx_error(path, "preparing the audit archive", e))?;
        }
        Ok(conn)
    }

    /// Copies live rows `(from, through]` into the archive and checks the copy.
    async fn copy_to_archive(
        &self,
        archive: &mut SqliteConnection,
        path: &Path,
        from: i64,
        through: i64,
    ) -> Result<(), RepoError> {
        const OP: &str = "copying audit rows to the archive";
        let aerr = |e| map_sqlx_error(path, OP, e);
        let mut tx = archive.begin().await.map_err(aerr)?;
        let mut cursor = from;
        while cursor < through {
            let raw = sqlx::query(&format!(
                "SELECT {COLS} FROM audit_logs WHERE id > ? AND id <= ? ORDER BY id LIMIT ?"
            ))
            .bind(cursor)
            .bind(through)
            .bind(PAGE)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.err(OP, e))?;
            let rows = raw
                .iter()
                .map(|r| decode(r).map_err(|e| self.err(OP, e)))
                .collect::<Result<Vec<_>, _>>()?;
            let Some(last) = rows.last() else { break };
            let last_id = last.id;
            for chunk in rows.chunks(INSERT_CHUNK) {
                insert_rows(&mut tx, chunk, true).await.map_err(aerr)?;
            }
            // Equal ids must carry equal hashes (an archive file of another store, or
            // one written before a restore, is refused rather than mixed).
            let stored: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, hash FROM audit_logs WHERE id > ? AND id <= ? ORDER BY id",
            )
            .bind(cursor)
            .bind(last_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(aerr)?;
            let same = stored.len() == rows.len()
                && stored
                    .iter()
                    .zip(&rows)
                    .all(|((id, h), r)| *id == r.id && *h == r.hash);
            if !same {
                return Err(RepoError::Validation(format!(
                    "the audit archive `{}` already holds different rows with the same ids (ids {}..={}); choose another archive file",
                    path.display(),
                    cursor + 1,
                    last_id
                )));
            }
            cursor = last_id;
        }
        tx.commit().await.map_err(aerr)
    }
}

#[async_trait]
impl AuditRepository for SqliteAudit {
    async fn append_batch(&self, events: &[AuditEvent]) -> Result<(), RepoError> {
        const OP: &str = "writing audit events";
        let db = &self.db;
        db.ensure_writable()?;
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = db
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(OP, e))?;
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT last_id, last_hash FROM audit_chain_head WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(OP, e))?;
        let tail: Option<(i64, String)> =
            sqlx::query_as("SELECT id, hash FROM audit_logs ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(OP, e))?;
        let marker = boundary(&mut tx).await.map_err(|e| self.err(OP, e))?;
        // Continue from the head. If the table or the archive boundary is ahead of it
        // (something wrote outside FLM), continue after the highest id so the append
        // never collides; `verify` reports the inconsistency either way.
        let mut tip = (0, AUDIT_GENESIS_HASH.to_owned());
        for candidate in [Some(marker), tail, head.clone()].into_iter().flatten() {
            if candidate.0 >= tip.0 {
                tip = candidate;
            }
        }
        if head.as_ref().map(|h| h.0) != Some(tip.0) {
            tracing::warn!(path = %db.path.display(), head = head.as_ref().map(|h| h.0), continuing_after = tip.0,
                "the audit chain head is missing or behind the table; run `flm check`");
        }

        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            let mut row = AuditRow {
                id: tip.0 + 1,
                request_id: e.request_id.clone(),
                api_key_id: e.api_key_id.clone(),
                endpoint: e.endpoint.clone(),
                status: i64::from(e.status),
                latency_ms: e.latency_ms.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
                created_at: format_ts(&e.created_at),
                event_type: e.event_type.clone(),
                severity: e.severity.as_str().to_owned(),
                ip: e.ip.clone(),
                details: e.details.clone(),
                prev_hash: std::mem::take(&mut tip.1),
                hash: String::new(),
            };
            row.hash = row.compute_hash();
            tip = (row.id, row.hash.clone());
            rows.push(row);
        }
        for chunk in rows.chunks(INSERT_CHUNK) {
            insert_rows(&mut tx, chunk, false)
                .await
                .map_err(|e| self.err(OP, e))?;
        }
        sqlx::query(
            "INSERT INTO audit_chain_head (id, last_id, last_hash, updated_at) VALUES (1, ?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash, \
             updated_at = excluded.updated_at",
        )
        .bind(tip.0)
        .bind(&tip.1)
        .bind(format_ts(&Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(OP, e))?;
        tx.commit().await.map_err(|e| self.err(OP, e))
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, RepoError> {
        self.select("listing audit events", filter, true, 100).await
    }

    async fn export(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, RepoError> {
        // LIMIT -1: no limit.
        self.select("exporting audit events", filter, false, -1)
            .await
    }

    async fn verify(&self) -> Result<VerifyReport, RepoError> {
        const OP: &str = "verifying the audit log";
        // One read transaction: a consistent snapshot even while the proxy appends.
        let mut tx = self.db.pool.begin().await.map_err(|e| self.err(OP, e))?;
        let (through, boundary_hash) = boundary(&mut tx).await.map_err(|e| self.err(OP, e))?;
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT last_id, last_hash FROM audit_chain_head WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(OP, e))?;
        let mut walker = Walker::new(Some(through + 1), boundary_hash);

        let stale: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE id <= ?")
            .bind(through)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(OP, e))?;
        if stale > 0 {
            let first: i64 = sqlx::query_scalar("SELECT min(id) FROM audit_logs")
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.err(OP, e))?;
            return Ok(walker.bad(
                Some(first),
                format!("{stale} audit row(s) at or below the archived boundary (id {through}) are still, or again, in the live table"),
            ));
        }

        if let Some((id, problem)) = walk(&mut tx, through, &mut walker)
            .await
            .map_err(|e| self.err(OP, e))?
        {
            return Ok(walker.bad(Some(id), problem));
        }
        tx.commit().await.map_err(|e| self.err(OP, e))?;

        let last_id = walker.last_id().unwrap_or(through);
        let Some((head_id, head_hash)) = head else {
            return Ok(walker.bad(
                None,
                "the audit chain head (table audit_chain_head) is missing; its end cannot be checked".into(),
            ));
        };
        if head_id > last_id {
            let missing = if head_id == last_id + 1 {
                format!("audit row {head_id} is missing")
            } else {
                format!("audit rows {}..={head_id} are missing", last_id + 1)
            };
            return Ok(walker.bad(
                Some(last_id + 1),
                format!("{missing} at the end of the log (the chain head records id {head_id}): the log was truncated"),
            ));
        }
        if head_id < last_id {
            return Ok(walker.bad(
                Some(head_id + 1),
                format!("audit rows after id {head_id} are not recorded in the chain head (written outside FLM?)"),
            ));
        }
        if head_hash != walker.prev {
            return Ok(walker.bad(
                Some(last_id),
                format!("the chain head's hash does not match audit row {last_id}"),
            ));
        }
        Ok(walker.ok())
    }

    async fn archive_older_than(
        &self,
        cutoff: DateTime<Utc>,
        archive_path: &Path,
    ) -> Result<ArchiveReport, RepoError> {
        const OP: &str = "archiving audit events";
        let db = &self.db;
        db.ensure_writable()?;
        let same_file = match (archive_path.canonicalize(), db.path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => archive_path == db.path,
        };
        if same_file {
            return Err(RepoError::Validation(format!(
                "the audit archive cannot be the live database `{}`; choose another file",
                db.path.display()
            )));
        }
        let report = self.verify().await?;
        if !report.ok {
            return Err(RepoError::Database(format!(
                "the audit log of `{}` does not verify ({}); archiving is refused so the evidence stays in place. Run `flm check`",
                db.path.display(),
                report.problem.unwrap_or_default()
            )));
        }

        let (from, from_hash) = {
            let mut conn = db.pool.acquire().await.map_err(|e| self.err(OP, e))?;
            boundary(&mut conn).await.map_err(|e| self.err(OP, e))?
        };
        let first_keep: Option<i64> =
            sqlx::query_scalar("SELECT min(id) FROM audit_logs WHERE created_at >= ?")
                .bind(format_ts(&cutoff))
                .fetch_one(&db.pool)
                .await
                .map_err(|e| self.err(OP, e))?;
        let max_id: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM audit_logs")
            .fetch_one(&db.pool)
            .await
            .map_err(|e| self.err(OP, e))?;
        // Only a contiguous prefix moves, so the live chain keeps one start.
        let through = match first_keep {
            Some(k) => k - 1,
            None => max_id.unwrap_or(from),
        };
        let nothing = |through_id: i64, hash: String| ArchiveReport {
            rows_archived: 0,
            archived_through_id: (through_id > 0).then_some(through_id),
            boundary_hash: hash,
            archive_path: archive_path.to_owned(),
        };
        if through <= from {
            return Ok(nothing(from, from_hash));
        }

        let mut archive = self.open_archive(archive_path).await?;
        let copied = self
            .copy_to_archive(&mut archive, archive_path, from, through)
            .await;
        let closed = archive.close().await;
        copied?;
        closed.map_err(|e| map_sqlx_error(archive_path, "closing the audit archive", e))?;

        let mut tx = db
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(OP, e))?;
        let (now_from, now_hash) = boundary(&mut tx).await.map_err(|e| self.err(OP, e))?;
        if now_from >= through {
            // Another archiver got here first.
            tx.rollback().await.map_err(|e| self.err(OP, e))?;
            return Ok(nothing(now_from, now_hash));
        }
        let boundary_hash: String = sqlx::query_scalar("SELECT hash FROM audit_logs WHERE id = ?")
            .bind(through)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(OP, e))?;
        sqlx::query(
            "INSERT INTO audit_archive_marker (through_id, boundary_hash, rows_archived, archive_path, archived_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(through)
        .bind(&boundary_hash)
        .bind(through - now_from)
        .bind(archive_path.to_string_lossy().into_owned())
        .bind(format_ts(&Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(OP, e))?;
        let done = sqlx::query("DELETE FROM audit_logs WHERE id > ? AND id <= ?")
            .bind(now_from)
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(OP, e))?;
        tx.commit().await.map_err(|e| self.err(OP, e))?;
        tracing::info!(rows = done.rows_affected(), through_id = through, archive = %archive_path.display(), "archived audit events");
        Ok(ArchiveReport {
            rows_archived: done.rows_affected(),
            archived_through_id: Some(through),
            boundary_hash,
            archive_path: archive_path.to_owned(),
        })
    }

    async fn verify_archive(&self, archive_path: &Path) -> Result<VerifyReport, RepoError> {
        const OP: &str = "verifying the audit archive";
        if !archive_path.is_file() {
            return Err(RepoError::NotFound(format!(
                "the audit archive `{}` does not exist",
                archive_path.display()
            )));
        }
        let aerr = |e| map_sqlx_error(archive_path, OP, e);
        let mut conn = SqliteConnectOptions::new()
            .filename(archive_path)
            .read_only(true)
            .connect()
            .await
            .map_err(aerr)?;
        let mut walker = Walker::new(None, String::new());
        let found = walk(&mut conn, i64::MIN, &mut walker).await.map_err(aerr);
        let mut report = match found? {
            Some((id, problem)) => walker.bad(Some(id), problem),
            None => walker.ok(),
        };
        if report.ok {
            // Every boundary the live store recorded for this file must be in it, with
            // the recorded hash: this catches a truncated archive.
            let path_text = archive_path.to_string_lossy().into_owned();
            let markers: Vec<(i64, String)> = sqlx::query_as(
                "SELECT through_id, boundary_hash FROM audit_archive_marker WHERE archive_path = ? ORDER BY through_id",
            )
            .bind(&path_text)
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.err(OP, e))?;
            for (through, hash) in markers {
                let stored: Option<String> =
                    sqlx::query_scalar("SELECT hash FROM audit_logs WHERE id = ?")
                        .bind(through)
                        .fetch_optional(&mut conn)
                        .await
                        .map_err(aerr)?;
                if stored.as_deref() != Some(hash.as_str()) {
                    report = walker.bad(
                        Some(through),
                        format!("archived audit row {through} (an archive boundary recorded in the live store) is missing or differs"),
                    );
                    break;
                }
            }
        }
        conn.close().await.map_err(aerr)?;
        Ok(report)
    }
}
