-- The default policy: no IP allow-list, no CORS origins, default rate limits.
INSERT OR IGNORE INTO security_policies (id, policy_json)
VALUES ('default', '{"ip_whitelist":[],"cors":{"allowed_origins":[]},"rate_limit":{}}');
