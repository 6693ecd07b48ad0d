-- security.db: the tamper-evident audit log (spec 40-security §12, 50-data §3).
--
-- Every row carries `prev_hash` (the previous row's `hash`, 64 zeros for the first row
-- ever) and `hash` = SHA-256(prev_hash || canonical row), see flm_core::security.
-- `audit_chain_head` records the last id and hash in the same transaction as each
-- append, so removing rows from the end is detected too. Rows are never updated; they
-- leave the table only by archiving (moved to a separate file), after the archived
-- boundary is recorded in `audit_archive_marker`. Triggers enforce both rules against
-- stray SQL; the hash chain detects whatever bypasses them.
--
-- `api_key_id` has no foreign key: an audit row must never be refused (an event
-- naming a key id that is not, or no longer, in `api_keys` must still be recorded).

CREATE TABLE audit_logs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    api_key_id TEXT NULL,
    endpoint   TEXT NOT NULL,
    status     INTEGER NOT NULL,
    latency_ms INTEGER NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    event_type TEXT NULL,
    severity   TEXT NOT NULL DEFAULT 'low'
               CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    ip         TEXT NULL,
    details    TEXT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX idx_audit_logs_api_key_id ON audit_logs (api_key_id);
CREATE INDEX idx_audit_logs_endpoint ON audit_logs (endpoint);
CREATE INDEX idx_audit_logs_created_at ON audit_logs (created_at);
CREATE INDEX idx_audit_logs_event_type_created ON audit_logs (event_type, created_at);
CREATE INDEX idx_audit_logs_severity_created ON audit_logs (severity, created_at);
CREATE INDEX idx_audit_logs_ip_created ON audit_logs (ip, created_at);

-- The end of the chain: updated with every append, in the same transaction.
CREATE TABLE audit_chain_head (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    last_id    INTEGER NOT NULL,
    last_hash  TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO audit_chain_head (id, last_id, last_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- One row per archive run: every audit row up to `through_id` was moved to
-- `archive_path`; the live chain continues from `boundary_hash` (hash of that row).
CREATE TABLE audit_archive_marker (
    through_id    INTEGER PRIMARY KEY NOT NULL,
    boundary_hash TEXT NOT NULL,
    rows_archived INTEGER NOT NULL,
    archive_path  TEXT NOT NULL,
    archived_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs
BEGIN
    SELECT RAISE(ABORT, 'audit_logs rows are immutable');
END;

CREATE TRIGGER audit_logs_delete_only_archived BEFORE DELETE ON audit_logs
WHEN OLD.id > (SELECT coalesce(max(through_id), 0) FROM audit_archive_marker)
BEGIN
    SELECT RAISE(ABORT, 'audit_logs rows can only be removed by archiving');
END;

CREATE TRIGGER audit_chain_head_forward_only BEFORE UPDATE ON audit_chain_head
WHEN NEW.last_id < OLD.last_id
BEGIN
    SELECT RAISE(ABORT, 'the audit chain head only moves forward');
END;

CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head
BEGIN
    SELECT RAISE(ABORT, 'the audit chain head cannot be deleted');
END;

CREATE TRIGGER audit_archive_marker_no_update BEFORE UPDATE ON audit_archive_marker
BEGIN
    SELECT RAISE(ABORT, 'audit archive markers are immutable');
END;

CREATE TRIGGER audit_archive_marker_no_delete BEFORE DELETE ON audit_archive_marker
BEGIN
    SELECT RAISE(ABORT, 'audit archive markers cannot be deleted');
END;
