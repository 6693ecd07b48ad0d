#!/usr/bin/env bash
# Audit log at ~1 M rows: size per row and `flm security audit-logs list` query times
# before and after migration 20261205000200 (filter indexes). Needs sqlite3; run from
# the workspace root. Rows are synthetic but shaped like the proxy's (see
# docs/benchmarks.md, "Audit log growth and filters").
set -euo pipefail
ROWS=${ROWS:-1000000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
MIG=crates/flm-store/migrations/security
for f in "$MIG"/*.sql; do
  [[ $f == *20261205000200* ]] && continue
  sqlite3 "$WORK/before.db" <"$f"
done
sqlite3 "$WORK/before.db" "PRAGMA journal_mode=WAL;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < $ROWS)
INSERT INTO audit_logs (id, request_id, api_key_id, endpoint, status, latency_ms, created_at, event_type, severity, ip, details, prev_hash, hash)
SELECT i, printf('%032x', i*7919), printf('key_%016x', i % 5), '/v1/chat/completions',
 CASE WHEN i % 100 = 0 THEN 401 ELSE 200 END, i % 50,
 strftime('%Y-%m-%dT%H:%M:%fZ', '2026-11-28T00:00:00', printf('+%d seconds', i/2)),
 CASE WHEN i % 100 = 0 THEN 'auth_failure' ELSE 'auth_success' END,
 CASE WHEN i % 100 = 0 THEN 'medium' WHEN i % 1000 = 7 THEN 'high' ELSE 'low' END,
 CASE WHEN i % 50 = 0 THEN printf('10.0.%d.%d', (i/50)%200, i%200) ELSE '127.0.0.1' END,
 '{\"method\":\"POST\",\"engine\":\"vllm-1\",\"model\":\"test-model\"}',
 printf('%064x', i-1), printf('%064x', i)
FROM n; PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
echo "bytes per row: $(( $(stat -c %s "$WORK/before.db") / ROWS ))"
cp "$WORK/before.db" "$WORK/after.db"
sqlite3 "$WORK/after.db" <"$MIG/20261205000200_audit_filter_indexes.sql"
Q=(
  "1 = 1"
  "ip = '127.0.0.1'"
  "ip = '10.0.7.150'"
  "severity = 'low'"
  "severity = 'high'"
  "event_type = 'auth_success'"
  "event_type = 'auth_failure'"
  "created_at >= '2026-11-30T00:00:00.000Z'"
  "ip = '127.0.0.1' AND created_at >= '2026-11-30T00:00:00.000Z'"
)
printf '%-70s %10s %10s\n' "WHERE (ORDER BY id DESC LIMIT 100)" before after
for q in "${Q[@]}"; do
  t=()
  for db in before after; do
    t+=("$(printf '.timer on\n.output /dev/null\nSELECT * FROM audit_logs WHERE %s ORDER BY id DESC LIMIT 100;\n' "$q" \
      | sqlite3 "$WORK/$db.db" 2>&1 | sed -n 's/^Run Time: real \([0-9.]*\).*/\1/p')")
  done
  printf '%-70s %10s %10s\n' "$q" "${t[0]}" "${t[1]}"
done
