-- security.db: model profiles and prompt templates (docs/guides/profiles-and-prompts.md).
-- They live next to api_keys (not in config.db as 50-data.md first planned) because
-- they decide what a key's requests become, and a running proxy must follow their
-- changes within a second through the same change markers as keys and policy.
--
-- `model_profiles`: a named parameter set for one engine model; clients use it as the
-- model id `profile/<label>`. `engine_id` is '' for a bare model name (any engine).
CREATE TABLE model_profiles (
    id              TEXT PRIMARY KEY NOT NULL,
    engine_id       TEXT NOT NULL,
    model_id        TEXT NOT NULL,
    label           TEXT NOT NULL UNIQUE,
    parameters_json TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    modalities      TEXT NULL,
    vision_prompt   TEXT NULL,
    audio_prompt    TEXT NULL,
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idx_model_profiles_engine_model ON model_profiles (engine_id, model_id);

-- `api_prompts`: a system prompt template. `api_id` is its scope: `default`,
-- `model:<flm://engine/model or bare name>` or `key:<api key id>`.
CREATE TABLE api_prompts (
    api_id        TEXT PRIMARY KEY NOT NULL,
    template_text TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1,
    modalities    TEXT NULL,
    vision_prompt TEXT NULL,
    audio_prompt  TEXT NULL,
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

INSERT INTO change_markers (name) VALUES ('profiles');

CREATE TRIGGER model_profiles_changed_insert AFTER INSERT ON model_profiles
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'profiles'; END;
CREATE TRIGGER model_profiles_changed_update AFTER UPDATE ON model_profiles
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'profiles'; END;
CREATE TRIGGER model_profiles_changed_delete AFTER DELETE ON model_profiles
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'profiles'; END;
CREATE TRIGGER api_prompts_changed_insert AFTER INSERT ON api_prompts
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'profiles'; END;
CREATE TRIGGER api_prompts_changed_update AFTER UPDATE ON api_prompts
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'profiles'; END;
CREATE TRIGGER api_prompts_changed_delete AFTER DELETE ON api_prompts
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'profiles'; END;
