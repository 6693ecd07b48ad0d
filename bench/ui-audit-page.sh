#!/usr/bin/env bash
# The app's audit view at 1,000,000 rows: first page, page 100 via the cursor, filtered
# and searched first pages, and the summary counts, each one HTTP request to the
# security router over a real socket in front of a real security.db filled through
# the audit writer (hash chain included). Run from the workspace root.
#   ROWS=1000000 PROFILE=release bench/ui-audit-page.sh
# PROFILE=dev skips the (long) release build; dependencies, SQLite included, are
# still optimised (opt-level 1), FLM's own crates are not.
set -euo pipefail
ROWS=${ROWS:-1000000}
PROFILE=${PROFILE:-release}
args=()
[[ $PROFILE == release ]] && args+=(--release)
FLM_BENCH_AUDIT_ROWS=$ROWS cargo test "${args[@]}" -p flm-proxy --test ui_security_api \
  -- --ignored --exact audit_pages_at_one_million_rows --nocapture 2>&1 |
  grep -E '^(filled|first page|page 100|filtered|search|summary)'
