-- Health history of engines (spec 50-data §2 `engine_health_logs`).
CREATE TABLE engine_health_logs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    engine_id  TEXT NOT NULL,
    model_id   TEXT,
    status     TEXT NOT NULL,
    latency_ms INTEGER,
    error_rate REAL DEFAULT 0.0,
    -- Same RFC 3339 text as every other timestamp (not CURRENT_TIMESTAMP's
    -- `YYYY-MM-DD HH:MM:SS`), so that text order is time order across tables.
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idx_engine_health_logs_engine_id ON engine_health_logs (engine_id);
CREATE INDEX idx_engine_health_logs_engine_created ON engine_health_logs (engine_id, created_at);
CREATE INDEX idx_engine_health_logs_model_id ON engine_health_logs (model_id);
CREATE INDEX idx_engine_health_logs_model_created ON engine_health_logs (model_id, created_at);
CREATE INDEX idx_engine_health_logs_created_at ON engine_health_logs (created_at);
