-- `flm security audit-logs list` (and export) filter by client address, severity or
-- event type and page newest first (ORDER BY id). The indexes of 20261125000400 put
-- `created_at` second, so a filter matching many rows was read in full and sorted
-- before the first page: 1.9 s at 1 M rows for the busiest address. A one-column
-- index keeps each key's entries in rowid (= id) order, so a page is read straight off
-- the index, newest first, and stops after LIMIT rows (docs/benchmarks.md). Time
-- bounds (`--since`) are checked on the rows read; `created_at` keeps its own index
-- for time-only filters and the retention task.
DROP INDEX IF EXISTS idx_audit_logs_ip_created;
DROP INDEX IF EXISTS idx_audit_logs_severity_created;
DROP INDEX IF EXISTS idx_audit_logs_event_type_created;
CREATE INDEX idx_audit_logs_ip ON audit_logs (ip);
CREATE INDEX idx_audit_logs_severity ON audit_logs (severity);
CREATE INDEX idx_audit_logs_event_type ON audit_logs (event_type);
