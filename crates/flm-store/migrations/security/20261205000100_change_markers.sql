-- security.db: change markers. A running proxy mirrors api_keys, security_policies
-- and ip_blocklist in memory; it polls these generations (a read of three rows,
-- several times a second) to learn that one of them changed, whoever changed it:
-- a CLI command, another process, or a hand-written SQL statement (the triggers
-- fire for every writer). Only changes of a generation matter, not its value.
CREATE TABLE change_markers (
    name       TEXT PRIMARY KEY NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0
);
INSERT INTO change_markers (name) VALUES ('api_keys'), ('security_policies'), ('ip_blocklist');

CREATE TRIGGER api_keys_changed_insert AFTER INSERT ON api_keys
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'api_keys'; END;
CREATE TRIGGER api_keys_changed_update AFTER UPDATE ON api_keys
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'api_keys'; END;
CREATE TRIGGER api_keys_changed_delete AFTER DELETE ON api_keys
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'api_keys'; END;

CREATE TRIGGER security_policies_changed_insert AFTER INSERT ON security_policies
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'security_policies'; END;
CREATE TRIGGER security_policies_changed_update AFTER UPDATE ON security_policies
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'security_policies'; END;
CREATE TRIGGER security_policies_changed_delete AFTER DELETE ON security_policies
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'security_policies'; END;

CREATE TRIGGER ip_blocklist_changed_insert AFTER INSERT ON ip_blocklist
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'ip_blocklist'; END;
CREATE TRIGGER ip_blocklist_changed_update AFTER UPDATE ON ip_blocklist
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'ip_blocklist'; END;
CREATE TRIGGER ip_blocklist_changed_delete AFTER DELETE ON ip_blocklist
BEGIN UPDATE change_markers SET generation = generation + 1 WHERE name = 'ip_blocklist'; END;
