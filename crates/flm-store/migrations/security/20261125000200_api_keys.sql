-- security.db: API keys (spec 50-data §3 `api_keys`, DESIGN.md §3.2).
-- Keys are `flm_<id>_<secret>`; only the SHA-256 digest of the whole key is stored,
-- as 64 lower-case hex characters. The plaintext is never written anywhere.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    label      TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at TEXT NULL
);
CREATE INDEX idx_api_keys_label ON api_keys (label);
CREATE INDEX idx_api_keys_created_at ON api_keys (created_at);
CREATE INDEX idx_api_keys_revoked_at ON api_keys (revoked_at);
