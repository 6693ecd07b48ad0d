-- The audit log is written once per request. `flm security audit-logs` filters by
-- severity, event type, client address and time, never by key id or endpoint, so
-- these two indexes only cost every insert a B-tree update.
DROP INDEX IF EXISTS idx_audit_logs_api_key_id;
DROP INDEX IF EXISTS idx_audit_logs_endpoint;
