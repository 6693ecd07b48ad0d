-- config.db: settings, detection cache and configured engine endpoints (spec 50-data §2).
-- Timestamps are RFC 3339 UTC text with milliseconds, e.g. 2026-11-25T10:00:00.123Z.

CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    notes      TEXT
);

-- One row per engine of the last detection run. `position` keeps the order of the
-- run (detection order), which the engine id alone would lose.
CREATE TABLE engines_cache (
    engine_id  TEXT PRIMARY KEY NOT NULL,
    state_json TEXT NOT NULL,
    cached_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    position   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_engines_cache_cached_at ON engines_cache (cached_at);

-- When the last full detection ran, so that a run that found no engine is cached too.
CREATE TABLE engines_cache_meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    detected_at TEXT NOT NULL
);

-- Engine endpoints added by the user (`flm engines add`).
CREATE TABLE engine_endpoints (
    id         TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    base_url   TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
