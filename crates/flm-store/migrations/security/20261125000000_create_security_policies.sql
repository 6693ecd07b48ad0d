-- security.db: the single security policy (spec 50-data §3 `security_policies`).
CREATE TABLE security_policies (
    id          TEXT PRIMARY KEY NOT NULL CHECK (id = 'default'),
    policy_json TEXT NOT NULL,
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
