-- security.db: scoped and expiring API keys (docs/guides/api-keys.md).
-- `models`: JSON array of model ids or glob patterns the key may use; NULL = every model.
-- `routes`: JSON array of route classes (chat, completions, embeddings, models,
--           responses, audio, images, passthrough, metrics); NULL = every route.
-- `expires_at`: when the key stops working (same text format as created_at); NULL = never.
-- Rows written before this migration get NULL everywhere: unscoped, no expiry, as before.
-- The change_markers trigger on UPDATE already fires for changes of these columns.
ALTER TABLE api_keys ADD COLUMN models TEXT NULL;
ALTER TABLE api_keys ADD COLUMN routes TEXT NULL;
ALTER TABLE api_keys ADD COLUMN expires_at TEXT NULL;
CREATE INDEX idx_api_keys_expires_at ON api_keys (expires_at);

-- Token budgets: `tpm` tokens per minute, `monthly_tokens` tokens per calendar month
-- (UTC); NULL = no limit.
ALTER TABLE api_keys ADD COLUMN tpm INTEGER NULL;
ALTER TABLE api_keys ADD COLUMN monthly_tokens INTEGER NULL;

-- Tokens used per key and calendar month (`YYYY-MM`, UTC), added by running proxies
-- every few seconds and at stop, so that monthly quotas survive a restart. Not
-- mirrored by the proxy's change markers (the proxy is its writer).
CREATE TABLE api_key_token_usage (
    api_key_id TEXT NOT NULL,
    month      TEXT NOT NULL,
    tokens     INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (api_key_id, month)
);
