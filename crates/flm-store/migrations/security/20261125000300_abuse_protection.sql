-- security.db: abuse-protection state and detection data (spec 50-data §3,
-- spec 40-security §4, §6-§10), and certificate metadata.
-- Timestamps are RFC 3339 UTC text with milliseconds, e.g. 2026-11-25T10:00:00.123Z.

-- Automatic IP blocklist (spec 40-security §6). Loaded on start, synchronised by the
-- proxy every 5 minutes and whenever a block is created.
CREATE TABLE ip_blocklist (
    ip               TEXT PRIMARY KEY NOT NULL,
    failure_count    INTEGER NOT NULL DEFAULT 0 CHECK (failure_count >= 0),
    first_failure_at TEXT NOT NULL,
    blocked_until    TEXT NULL,
    permanent_block  INTEGER NOT NULL DEFAULT 0 CHECK (permanent_block IN (0, 1)),
    last_attempt     TEXT NOT NULL,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idx_ip_blocklist_blocked_until ON ip_blocklist (blocked_until)
    WHERE blocked_until IS NOT NULL;
CREATE INDEX idx_ip_blocklist_permanent ON ip_blocklist (permanent_block)
    WHERE permanent_block = 1;

-- Scored requests (spec 40-security §7, honeypot hits §9). Ids are generated on insert.
CREATE TABLE intrusion_attempts (
    id           TEXT PRIMARY KEY NOT NULL,
    ip           TEXT NOT NULL,
    pattern      TEXT NOT NULL,
    score        INTEGER NOT NULL,
    request_path TEXT NULL,
    user_agent   TEXT NULL,
    method       TEXT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idx_intrusion_attempts_ip_created ON intrusion_attempts (ip, created_at);
CREATE INDEX idx_intrusion_attempts_score_created ON intrusion_attempts (score, created_at);
CREATE INDEX idx_intrusion_attempts_created ON intrusion_attempts (created_at);

-- Anomaly detections (spec 40-security §8).
CREATE TABLE anomaly_detections (
    id           TEXT PRIMARY KEY NOT NULL,
    ip           TEXT NOT NULL,
    anomaly_type TEXT NOT NULL,
    score        INTEGER NOT NULL,
    details      TEXT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idx_anomaly_detections_ip_created ON anomaly_detections (ip, created_at);
CREATE INDEX idx_anomaly_detections_type_created ON anomaly_detections (anomaly_type, created_at);
CREATE INDEX idx_anomaly_detections_created ON anomaly_detections (created_at);

-- Resource protection alerts (spec 40-security §10).
CREATE TABLE resource_alerts (
    id         TEXT PRIMARY KEY NOT NULL,
    alert_type TEXT NOT NULL CHECK (alert_type IN ('cpu', 'memory', 'connections')),
    value      REAL NOT NULL,
    threshold  REAL NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idx_resource_alerts_created ON resource_alerts (created_at);
CREATE INDEX idx_resource_alerts_type_created ON resource_alerts (alert_type, created_at);

-- Rate-limit windows that survive restarts (spec 40-security §4). `api_key_id` is a
-- key id or `ip:<address>`; no foreign key, since IP windows share the column.
CREATE TABLE rate_limit_states (
    api_key_id     TEXT PRIMARY KEY NOT NULL,
    requests_count INTEGER NOT NULL DEFAULT 0,
    reset_at       TEXT NOT NULL
);
CREATE INDEX idx_rate_limit_states_reset_at ON rate_limit_states (reset_at);
CREATE INDEX idx_rate_limit_states_key_reset ON rate_limit_states (api_key_id, reset_at);

-- Certificate metadata; the PEM files stay on disk.
CREATE TABLE certificates (
    id         TEXT PRIMARY KEY NOT NULL,
    cert_path  TEXT NOT NULL,
    key_path   TEXT NOT NULL,
    mode       TEXT NOT NULL CHECK (mode IN ('acme', 'self-signed', 'packaged-ca')),
    domain     TEXT NULL,
    expires_at TEXT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idx_certificates_expires_at ON certificates (expires_at);
