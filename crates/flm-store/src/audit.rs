//! [`AuditRepository`] on `security.db` → `audit_logs`, `audit_chain_head`,
//! `audit_archive_marker`, and archive files.
//!
//! See `flm_core::security` for the hash chain. Appends take the write lock
//! (`BEGIN IMMEDIATE`), continue the chain from the stored head, insert the rows with
//! explicit ids (so ids have no gaps) and move the head, all in one transaction.
//! Triggers (migration `20261125000400`) refuse `UPDATE` on rows and `DELETE` of rows
//! not yet recorded as archived; the chain and the head catch whatever bypasses them.
//!
//! Archiving writes the oldest rows, checked link by link while they are read, into
//! a new gzip-compressed JSON-lines file `audit-<first id>-<last id>.jsonl.gz` in the
//! archive directory (written to a temporary name, fsynced, renamed, directory
//! fsynced, 0600), and only then — in one live transaction — records the boundary and
//! the file in `audit_archive_marker` and deletes the moved rows. A crash between the
//! two steps leaves a file no marker names; its rows are still live, and the next run
//! removes it before writing. [`AuditRepository::verify`] walks every recorded file in
//! order, then the live table, so the chain is checked from the first row ever.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use flm_core::security::{
    ArchiveReport, ArchiveSelection, AuditDirection, AuditEvent, AuditFilter, AuditPage,
    AuditPageRequest, AuditQuery, AuditRepository, AuditRow, AuditStorage, VerifyReport,
    AUDIT_GENESIS_HASH,
};
use flm_core::RepoError;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::db::Db;
use crate::open::ensure_dir;
use crate::time::format_ts;

/// Columns of an audit row, in [`AuditRow`] order.
const COLS: &str = "id, request_id, api_key_id, endpoint, status, latency_ms, created_at, \
                    event_type, severity, ip, details, prev_hash, hash";

/// Rows per page when walking the chain.
const PAGE: i64 = 1000;

/// Rows per multi-row `INSERT` (13 parameters each; well under SQLite's limit).
const INSERT_CHUNK: usize = 200;

/// Rows per archive file at most: bounds the memory of one run (the compressed file
/// is built in memory, ~150 bytes a row) and how long one delete holds the write lock.
const SEGMENT_ROWS: i64 = 20_000;

/// The size cap archives down to this share of the cap, so that a database at the cap
/// is not archived again for every few new rows.
const CAP_TARGET_PERCENT: u64 = 90;

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
async fn insert_rows(conn: &mut SqliteConnection, rows: &[AuditRow]) -> Result<(), sqlx::Error> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = INSERT_SIZES
            .into_iter()
            .find(|n| *n <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut q = QueryBuilder::<Sqlite>::new(format!("INSERT INTO audit_logs ({COLS}) "));
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

/// Ids a page of a text or key-id search reads at most (without an indexed address
/// filter to narrow it): bounds the time of one request on a large log; the cursor
/// then continues below the range read (docs/benchmarks.md).
const SEARCH_WINDOW: i64 = 100_000;

/// Rows whose `created_at` is out of id order by more than this many ids would be
/// missed by a time filter; appends are in time order, batch by batch.
const TIME_SLACK: i64 = 10_000;

/// `%text%` for `LIKE … ESCAPE '\'`.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Appends the app query's conditions. `created_at` is compared as `+created_at` so
/// that SQLite never sorts a whole time range: the id bounds derived from it
/// ([`SqliteAudit::time_bounds`]) narrow the read instead.
fn push_query(q: &mut QueryBuilder<'_, Sqlite>, f: &AuditQuery) {
    // An address is far more selective than a severity or an event type: with one,
    // keep SQLite on the `ip` index (`+col` takes a column out of index selection).
    let plus = if f.ip.is_some() { "+" } else { "" };
    if let Some(s) = f.severity {
        q.push(format!(" AND {plus}severity = "))
            .push_bind(s.as_str());
    }
    if let Some(t) = &f.event_type {
        q.push(format!(" AND {plus}event_type = "))
            .push_bind(t.clone());
    }
    if let Some(ip) = &f.ip {
        q.push(" AND ip = ").push_bind(ip.clone());
    }
    if let Some(k) = &f.api_key_id {
        q.push(" AND api_key_id = ").push_bind(k.clone());
    }
    if let Some(t) = &f.since {
        q.push(" AND +created_at >= ").push_bind(format_ts(t));
    }
    if let Some(t) = &f.until {
        q.push(" AND +created_at < ").push_bind(format_ts(t));
    }
    if let Some(text) = &f.text {
        let pat = like_pattern(text.trim());
        q.push(" AND (endpoint LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR request_id LIKE ")
            .push_bind(pat.clone())
            .push(" ESCAPE '\\' OR ip LIKE ")
            .push_bind(pat)
            .push(" ESCAPE '\\')");
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

    /// Live id range `[lo, hi]` that can hold rows of the query's time range (with
    /// [`TIME_SLACK`]), from the `created_at` index; `None` when the log is empty.
    async fn time_bounds(
        &self,
        conn: &mut SqliteConnection,
        f: &AuditQuery,
    ) -> Result<Option<(i64, i64)>, sqlx::Error> {
        let (min, max): (Option<i64>, Option<i64>) =
            // Two subqueries: SQLite answers a lone min() or max() of the key from the
            // B-tree's ends, but `min(id), max(id)` together with a full scan.
            sqlx::query_as(
                "SELECT (SELECT min(id) FROM audit_logs), (SELECT max(id) FROM audit_logs)",
            )
                .fetch_one(&mut *conn)
                .await?;
        let (Some(mut lo), Some(mut hi)) = (min, max) else {
            return Ok(None);
        };
        if let Some(t) = &f.since {
            let first: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM audit_logs WHERE created_at >= ? ORDER BY created_at LIMIT 1",
            )
            .bind(format_ts(t))
            .fetch_optional(&mut *conn)
            .await?;
            match first {
                Some(id) => lo = lo.max(id - TIME_SLACK),
                None => lo = hi.saturating_sub(TIME_SLACK).max(lo),
            }
        }
        if let Some(t) = &f.until {
            let last: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM audit_logs WHERE created_at < ? ORDER BY created_at DESC LIMIT 1",
            )
            .bind(format_ts(t))
            .fetch_optional(&mut *conn)
            .await?;
            match last {
                Some(id) => hi = hi.min(id + TIME_SLACK),
                None => hi = lo.saturating_add(TIME_SLACK).min(hi),
            }
        }
        Ok(Some((lo, hi)))
    }

    async fn page_in(
        &self,
        conn: &mut SqliteConnection,
        r: &AuditPageRequest,
    ) -> Result<AuditPage, sqlx::Error> {
        let Some((lo, hi)) = self.time_bounds(conn, &r.query).await? else {
            return Ok(AuditPage::default());
        };
        let newest = r.direction == AuditDirection::NewestFirst;
        // The ids still to read, inclusive.
        let (mut from, mut to) = (lo, hi);
        if let Some(c) = r.cursor {
            if newest {
                to = to.min(c - 1);
            } else {
                from = from.max(c + 1);
            }
        }
        if from > to {
            return Ok(AuditPage::default());
        }
        // Only an address, or one of severity / event type alone, is answered from an
        // index that holds just the matching rows. A text or key search, or severity
        // and event type together, reads rows that may not match, possibly all of
        // them: read at most SEARCH_WINDOW ids per page.
        let q = &r.query;
        let windowed = q.ip.is_none()
            && (q.text.is_some()
                || q.api_key_id.is_some()
                || (q.severity.is_some() && q.event_type.is_some()));
        let mut rest = None;
        if windowed && to - from >= SEARCH_WINDOW {
            if newest {
                from = to - SEARCH_WINDOW + 1;
                rest = Some(from);
            } else {
                to = from + SEARCH_WINDOW - 1;
                rest = Some(to);
            }
        }
        let limit = i64::from(r.limit.max(1));
        let mut q =
            QueryBuilder::<Sqlite>::new(format!("SELECT {COLS} FROM audit_logs WHERE id >= "));
        q.push_bind(from).push(" AND id <= ").push_bind(to);
        push_query(&mut q, &r.query);
        q.push(if newest {
            " ORDER BY id DESC"
        } else {
            " ORDER BY id"
        });
        q.push(" LIMIT ").push_bind(limit + 1);
        let raw = q.build().fetch_all(&mut *conn).await?;
        let mut rows = raw.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            rows.last().map(|l| l.id)
        } else {
            // The whole (windowed) range was read: continue past it, if anything is left.
            rest
        };
        Ok(AuditPage { rows, next_cursor })
    }

    /// The live chain from the last archive boundary, checked in one read snapshot,
    /// and the archive files recorded in that snapshot.
    async fn verify_live(&self) -> Result<(VerifyReport, Vec<Marker>), RepoError> {
        const OP: &str = "verifying the audit log";
        // One read transaction: a consistent snapshot even while the proxy appends.
        let mut tx = self.db.pool.begin().await.map_err(|e| self.err(OP, e))?;
        let markers: Vec<Marker> = sqlx::query_as::<_, (i64, String, String)>(
            "SELECT through_id, boundary_hash, archive_path FROM audit_archive_marker ORDER BY through_id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.err(OP, e))?
        .into_iter()
        .map(|(through_id, boundary_hash, path)| Marker {
            through_id,
            boundary_hash,
            path: PathBuf::from(path),
        })
        .collect();
        let (through, boundary_hash) = markers.last().map_or_else(
            || (0, AUDIT_GENESIS_HASH.to_owned()),
            |m| (m.through_id, m.boundary_hash.clone()),
        );
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
            let report = walker.bad(
                Some(first),
                format!("{stale} audit row(s) at or below the archived boundary (id {through}) are still, or again, in the live table"),
            );
            return Ok((report, markers));
        }

        if let Some((id, problem)) = walk(&mut tx, through, &mut walker)
            .await
            .map_err(|e| self.err(OP, e))?
        {
            return Ok((walker.bad(Some(id), problem), markers));
        }
        tx.commit().await.map_err(|e| self.err(OP, e))?;

        let last_id = walker.last_id().unwrap_or(through);
        let report = match head {
            None => walker.bad(
                None,
                "the audit chain head (table audit_chain_head) is missing; its end cannot be checked".into(),
            ),
            Some((head_id, _)) if head_id > last_id => {
                let missing = if head_id == last_id + 1 {
                    format!("audit row {head_id} is missing")
                } else {
                    format!("audit rows {}..={head_id} are missing", last_id + 1)
                };
                walker.bad(
                    Some(last_id + 1),
                    format!("{missing} at the end of the log (the chain head records id {head_id}): the log was truncated"),
                )
            }
            Some((head_id, _)) if head_id < last_id => walker.bad(
                Some(head_id + 1),
                format!("audit rows after id {head_id} are not recorded in the chain head (written outside FLM?)"),
            ),
            Some((_, head_hash)) if head_hash != walker.prev => walker.bad(
                Some(last_id),
                format!("the chain head's hash does not match audit row {last_id}"),
            ),
            Some(_) => walker.ok(),
        };
        Ok((report, markers))
    }

    /// The last id the selection moves (`from` when nothing).
    async fn archive_target(&self, sel: &ArchiveSelection, from: i64) -> Result<i64, RepoError> {
        const OP: &str = "choosing audit rows to archive";
        let max_id: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM audit_logs")
            .fetch_one(&self.db.pool)
            .await
            .map_err(|e| self.err(OP, e))?;
        let Some(max_id) = max_id else {
            return Ok(from);
        };
        let mut through = from;
        if let Some(cutoff) = &sel.older_than {
            // The first row (by time, on the created_at index) that stays: rows are
            // appended in time order, so everything before it is older. min(id) over
            // the range would read every newer row.
            let first_keep: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM audit_logs WHERE created_at >= ? ORDER BY created_at, id LIMIT 1",
            )
            .bind(format_ts(cutoff))
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| self.err(OP, e))?;
            through = through.max(first_keep.map_or(max_id, |k| k - 1));
        }
        if let Some(cap) = sel.max_db_bytes {
            let st = self.storage().await?;
            if st.db_used_bytes > cap && st.live_rows > 0 {
                // Rows are most of the file: move the rows' share of the excess (and a
                // little more, down to CAP_TARGET_PERCENT of the cap).
                let target = cap / 100 * CAP_TARGET_PERCENT;
                let excess = u128::from(st.db_used_bytes - target);
                let rows = (u128::from(st.live_rows) * excess)
                    .div_ceil(u128::from(st.db_used_bytes.max(1)));
                through = through.max(from.saturating_add(i64::try_from(rows).unwrap_or(i64::MAX)));
            }
        }
        Ok(through.min(max_id))
    }

    /// Reads rows `(from, through]`, checking each link from `from_hash`, as JSON lines.
    /// Returns the lines and the hash of row `through`.
    async fn segment_lines(
        &self,
        from: i64,
        from_hash: &str,
        through: i64,
    ) -> Result<(Vec<u8>, String), RepoError> {
        const OP: &str = "reading audit rows to archive";
        let refuse = |id: i64, problem: &str| {
            RepoError::Database(format!(
                "the audit log of `{}` does not verify at row {id} ({problem}); archiving is refused so the evidence stays in place. Run `flm security audit-logs verify`",
                self.db.path.display()
            ))
        };
        let mut walker = Walker::new(Some(from + 1), from_hash.to_owned());
        let mut out = Vec::new();
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
            if raw.is_empty() {
                break;
            }
            for r in &raw {
                let row = decode(r).map_err(|e| refuse(cursor + 1, &e.to_string()))?;
                if let Step::Bad { id, problem } = walker.step(&row) {
                    return Err(refuse(id, &problem));
                }
                serde_json::to_writer(&mut out, &row).map_err(|e| {
                    RepoError::Database(format!("cannot encode audit row {}: {e}", row.id))
                })?;
                out.push(b'\n');
                cursor = row.id;
            }
        }
        if walker.last_id() != Some(through) {
            return Err(refuse(cursor + 1, "rows are missing"));
        }
        Ok((out, walker.prev))
    }
}

/// An archive file recorded in `audit_archive_marker`.
struct Marker {
    through_id: i64,
    boundary_hash: String,
    path: PathBuf,
}

/// `audit-<first>-<last>.jsonl.gz` → `(first, last)`.
fn segment_range(name: &str) -> Option<(i64, i64)> {
    let mid = name.strip_prefix("audit-")?.strip_suffix(".jsonl.gz")?;
    let (a, b) = mid.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> RepoError {
    RepoError::Io(format!(
        "{what} `{}`: {e}; check the free space and permissions of the archive directory",
        path.display()
    ))
}

/// Holds an exclusive `flock` on `<archive dir>/.lock` so that two archivers (the
/// proxy's retention task and `flm security audit-logs archive`) never interleave.
struct ArchiveLock(#[allow(dead_code)] std::fs::File); // held for its lock, released on drop

impl ArchiveLock {
    fn take(dir: &Path) -> Result<Self, RepoError> {
        let path = dir.join(".lock");
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&path)
            .map_err(|e| io_err("cannot open the archive lock", &path, &e))?;
        #[cfg(unix)]
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                RepoError::Validation(format!(
                    "another audit archive run is in progress in `{}`; try again shortly",
                    dir.display()
                ))
            },
        )?;
        Ok(Self(file))
    }
}

/// Removes files of a run that crashed before its marker was committed (their rows are
/// still live, from id `from + 1` on) and temporary files.
fn remove_orphans(dir: &Path, from: i64) -> Result<(), RepoError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("cannot list", dir, &e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let orphan = name.starts_with(".audit-") && name.ends_with(".tmp")
            || segment_range(name).is_some_and(|(first, _)| first > from);
        if orphan {
            let path = entry.path();
            tracing::info!(file = %path.display(), "removing an unrecorded audit archive file left by an interrupted run");
            std::fs::remove_file(&path).map_err(|e| io_err("cannot remove", &path, &e))?;
        }
    }
    Ok(())
}

/// Compresses `lines` into `path` durably: temporary file, fsync, rename, fsync of
/// the directory; 0600.
fn write_segment(dir: &Path, path: &Path, lines: &[u8]) -> Result<(), RepoError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&tmp)?;
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::default(),
        );
        gz.write_all(lines)?;
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err("cannot write the audit archive", path, &e)
    })
}

/// Walks every recorded archive file in order from the first row ever.
fn verify_archives(markers: &[Marker]) -> VerifyReport {
    let mut w = Walker::new(Some(1), AUDIT_GENESIS_HASH.to_owned());
    for m in markers {
        let first = w.expected_id.unwrap_or(1);
        let shown = m.path.display();
        let file = match std::fs::File::open(&m.path) {
            Ok(f) => f,
            Err(e) => {
                return w.bad(
                    Some(first),
                    format!(
                        "the audit archive `{shown}` (rows {first}..={}) cannot be read: {e}",
                        m.through_id
                    ),
                )
            }
        };
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
        for line in reader.lines() {
            let next = w.expected_id.unwrap_or(first);
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    return w.bad(
                        Some(next),
                        format!("the audit archive `{shown}` is damaged near row {next} ({e})"),
                    )
                }
            };
            if line.is_empty() {
                continue;
            }
            let row: AuditRow = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => {
                    return w.bad(
                        Some(next),
                        format!("the audit archive `{shown}` has an unreadable row near {next} ({e}): it was altered"),
                    )
                }
            };
            if row.id > m.through_id {
                return w.bad(
                    Some(row.id),
                    format!("the audit archive `{shown}` holds row {} beyond its recorded end (row {}): rows were added", row.id, m.through_id),
                );
            }
            if let Step::Bad { id, problem } = w.step(&row) {
                return w.bad(Some(id), format!("{problem} (in the archive `{shown}`)"));
            }
        }
        let last = w.last_id().unwrap_or(0);
        if last != m.through_id || w.prev != m.boundary_hash {
            return w.bad(
                Some(last + 1),
                format!(
                    "the audit archive `{shown}` ends at row {last}, but the store recorded it to end at row {} with another hash: it was truncated or replaced",
                    m.through_id
                ),
            );
        }
    }
    w.ok()
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
            insert_rows(&mut tx, chunk)
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

    async fn page(&self, request: &AuditPageRequest) -> Result<AuditPage, RepoError> {
        const OP: &str = "reading a page of the audit log";
        // One read transaction: the bounds and the page come from one snapshot.
        let mut tx = self.db.pool.begin().await.map_err(|e| self.err(OP, e))?;
        let page = self
            .page_in(&mut tx, request)
            .await
            .map_err(|e| self.err(OP, e))?;
        tx.commit().await.map_err(|e| self.err(OP, e))?;
        Ok(page)
    }

    async fn count_since(&self, since: chrono::DateTime<Utc>) -> Result<u64, RepoError> {
        const OP: &str = "counting audit events";
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE created_at >= ?")
            .bind(format_ts(&since))
            .fetch_one(&self.db.pool)
            .await
            .map_err(|e| self.err(OP, e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn export(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, RepoError> {
        // LIMIT -1: no limit.
        self.select("exporting audit events", filter, false, -1)
            .await
    }

    async fn verify(&self) -> Result<VerifyReport, RepoError> {
        let (live, markers) = self.verify_live().await?;
        let archived = tokio::task::spawn_blocking(move || verify_archives(&markers))
            .await
            .map_err(|e| RepoError::Io(format!("verifying the audit archives stopped: {e}")))?;
        if !archived.ok {
            return Ok(archived);
        }
        Ok(VerifyReport {
            rows_checked: archived.rows_checked + live.rows_checked,
            ..live
        })
    }

    async fn archive(
        &self,
        selection: &ArchiveSelection,
        archive_dir: &Path,
    ) -> Result<ArchiveReport, RepoError> {
        const OP: &str = "archiving audit events";
        let db = &self.db;
        db.ensure_writable()?;
        ensure_dir(archive_dir, "audit archive directory")?;
        let _lock = ArchiveLock::take(archive_dir)?;
        let (mut from, mut from_hash) = {
            let mut conn = db.pool.acquire().await.map_err(|e| self.err(OP, e))?;
            boundary(&mut conn).await.map_err(|e| self.err(OP, e))?
        };
        remove_orphans(archive_dir, from)?;
        let target = self.archive_target(selection, from).await?;
        let mut report = ArchiveReport {
            rows_archived: 0,
            archived_through_id: None,
            boundary_hash: String::new(),
            archive_dir: archive_dir.to_owned(),
            files: Vec::new(),
        };
        while from < target {
            let through = target.min(from.saturating_add(SEGMENT_ROWS));
            let (lines, last_hash) = self.segment_lines(from, &from_hash, through).await?;
            let path = archive_dir.join(format!("audit-{:012}-{through:012}.jsonl.gz", from + 1));
            {
                let (dir, path) = (archive_dir.to_owned(), path.clone());
                tokio::task::spawn_blocking(move || write_segment(&dir, &path, &lines))
                    .await
                    .map_err(|e| {
                        RepoError::Io(format!("writing the audit archive stopped: {e}"))
                    })??;
            }
            let mut tx = db
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(|e| self.err(OP, e))?;
            let (now_from, _) = boundary(&mut tx).await.map_err(|e| self.err(OP, e))?;
            if now_from != from {
                // Only an archiver that bypassed the lock gets here; its file stays.
                tx.rollback().await.map_err(|e| self.err(OP, e))?;
                let _ = std::fs::remove_file(&path);
                return Err(RepoError::Validation(format!(
                    "the audit log was archived by someone else meanwhile (through row {now_from}); run the command again"
                )));
            }
            sqlx::query(
                "INSERT INTO audit_archive_marker (through_id, boundary_hash, rows_archived, archive_path, archived_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(through)
            .bind(&last_hash)
            .bind(through - from)
            .bind(path.to_string_lossy().into_owned())
            .bind(format_ts(&Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(OP, e))?;
            let done = sqlx::query("DELETE FROM audit_logs WHERE id > ? AND id <= ?")
                .bind(from)
                .bind(through)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(OP, e))?;
            tx.commit().await.map_err(|e| self.err(OP, e))?;
            tracing::info!(rows = done.rows_affected(), through_id = through, archive = %path.display(), "archived audit events");
            report.rows_archived += done.rows_affected();
            report.files.push(path);
            from = through;
            from_hash = last_hash;
        }
        report.archived_through_id = (from > 0).then_some(from);
        report.boundary_hash = from_hash;
        Ok(report)
    }

    async fn storage(&self) -> Result<AuditStorage, RepoError> {
        const OP: &str = "measuring the audit log";
        let mut conn = self.db.pool.acquire().await.map_err(|e| self.err(OP, e))?;
        let (through, _) = boundary(&mut conn).await.map_err(|e| self.err(OP, e))?;
        // Ids are contiguous: the live rows are those after the boundary up to the head.
        let head: Option<i64> =
            sqlx::query_scalar("SELECT last_id FROM audit_chain_head WHERE id = 1")
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| self.err(OP, e))?;
        let files: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_archive_marker")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(OP, e))?;
        let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(OP, e))?;
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(OP, e))?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(OP, e))?;
        let used = u64::try_from((page_count - free).max(0) * page_size).unwrap_or(0);
        let disk = self.db.path.parent().and_then(crate::disk_space);
        Ok(AuditStorage {
            live_rows: u64::try_from(head.unwrap_or(through) - through).unwrap_or(0),
            db_used_bytes: used,
            archived_through_id: through,
            archive_files: u64::try_from(files).unwrap_or(0),
            disk_free_bytes: disk.map(|d| d.0),
            disk_total_bytes: disk.map(|d| d.1),
        })
    }
}
