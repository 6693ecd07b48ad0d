#!/usr/bin/env bash
# Measures what the proxy's security layer costs: every protection on against
# keys-only, in the same run.
#
# Starts one fake OpenAI-compatible engine (`flm-bench fake-upstream`) and two proxies
# in front of it (`flm proxy start --no-daemon`, each with its own temporary data dir,
# the fake registered as an `openai` engine, one API key, auth on):
#   keys    policy `{}`: on a loopback bind the abuse protections are off (the default
#           loopback profile); API keys and the audit log are on.
#   secure  every protection on (POLICY_SECURE below, set with `flm security policy
#           set` before the start): IP allow list, per-IP and per-key rate limits,
#           blocklist, intrusion detection, anomaly detection, resource protection,
#           plus keys and the audit log. Limits and thresholds are raised to their
#           maximum so that the load generator (one IP) is neither limited nor flagged
#           as a flood: every check still runs on every request.
# Then runs three scenarios with `flm-bench load`, interleaved per round: direct to
# the engine (context), then keys and secure in alternating order (keys first in odd
# rounds, secure first in even rounds), so machine noise and order hit both sides:
#   chat-c1     non-streaming chat, 1 connection        (added p50/p99 latency)
#   chat-c64    non-streaming chat, 64 connections      (throughput ratio)
#   stream-c16  streaming chat, 20 SSE chunks, 16 conns (added TTFB, streams/s ratio)
# Prints a Markdown table (medians over rounds; "secure vs keys" is the median of the
# per-round differences or ratios) for docs/benchmarks.md.
#
# Checks, and fails loudly on: any error or non-2xx answer on any side (a 403, 429 or
# 503 from `secure` would mean the policy hit the load), a `secure` policy that is not
# in force, an audit log without rows. Warns (with the rows) about intrusion or anomaly
# records written during the run: false positives on benign load.
#
# Usage: bench/security.sh [quick|full]
#   quick  2 rounds of 1 s per run (~20 s of load): a smoke test
#   full   5 rounds of 6 s per run (~5 min of load): the real measurement
# Env: FLM_BENCH_ENFORCE=1 exits 1 when a bar is missed (errors always do).
#      FLM_BENCH_PERF=1 records `perf record -g` of each proxy during one extra 6 s
#      chat-c64 run after the rounds (target/bench/security-perf-<side>.{data,txt}).
# Raw results are kept in target/bench/security-<mode>.jsonl (+ .checks.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-quick}
case "$MODE" in
  quick) DUR=1 ROUNDS=2 ;;
  full) DUR=6 ROUNDS=5 ;;
  *) echo "usage: bench/security.sh [quick|full]" >&2; exit 64 ;;
esac

POLICY_SECURE='{"ip_whitelist":["127.0.0.0/8"],"trusted_proxy_ips":[],"rate_limit":{"rpm":100000000,"burst":100000000},"ip_rate_limit":{"enabled":true,"rpm":100000000},"ip_blocklist":{"enabled":true},"intrusion_detection":{"enabled":true},"anomaly_detection":{"enabled":true,"request_rate_threshold":100000000},"resource_protection":{"enabled":true,"cpu_threshold":100,"memory_threshold":100}}'

SCRIPT=bench/security.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh

cargo build --release --locked -p flm-cli -p flm-bench >&2
FLM=$PWD/target/release/flm
BENCH=$PWD/target/release/flm-bench
require_proxy_cli

WORK=$(mktemp -d)
PIDS=()
trap cleanup EXIT
mkdir -p target/bench
CHECKS=target/bench/security-$MODE.checks.txt
: >"$CHECKS"
check_note() { echo "$*" | tee -a "$CHECKS" >&2; }

start_fake_upstream
MODEL=flm://fake/fake-model

# --- the two proxies ---
declare -A URL PID DATA KEYS RSS_IDLE RSS_C64
for side in keys secure; do
  DATA[$side]=$WORK/data-$side
  KEYS[$side]=$(setup_data_dir "${DATA[$side]}")
  if [ "$side" = secure ]; then policy=$POLICY_SECURE; else policy='{}'; fi
  out=$("$FLM" --data-dir "${DATA[$side]}" --format json security policy set --json "$policy" 2>&1) \
    || die "\`flm security policy set\` refused the $side policy: $out"
  start_proxy "${DATA[$side]}" "$WORK/proxy-$side.log"
  URL[$side]=$STARTED_URL PID[$side]=$STARTED_PID
  smoke_chat "${URL[$side]}" "$MODEL" "${KEYS[$side]}"
  RSS_IDLE[$side]=$(rss_kib "$STARTED_PID") RSS_C64[$side]=0
  log "$side: proxy pid ${PID[$side]}, idle RSS ${RSS_IDLE[$side]} KiB"
done

# The policy in force in `secure` must have every protection enabled.
"$FLM" --data-dir "${DATA[secure]}" --format json security policy show >"$WORK/policy-secure.json"
python3 - "$WORK/policy-secure.json" <<'EOF' || die "the secure policy is not what was set: $(cat "$WORK/policy-secure.json")"
import json, sys
p = json.load(open(sys.argv[1]))["data"]["policy_json"]
for k in ("ip_rate_limit", "ip_blocklist", "intrusion_detection", "anomaly_detection", "resource_protection"):
    assert p[k].get("enabled") is True, k
assert p["ip_whitelist"] == ["127.0.0.0/8"]
EOF
check_note "secure policy in force: $(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["data"]["policy_json"], sort_keys=True))' "$WORK/policy-secure.json")"

# Audit rows and security events so far (the smoke requests), per side.
db_count() { # side table
  sqlite3 -readonly "file:${DATA[$1]}/security.db?mode=ro" "SELECT count(*) FROM $2" 2>/dev/null || echo '?'
}
declare -A AUDIT0 INTR0 ANOM0
for side in keys secure; do
  AUDIT0[$side]=$(db_count "$side" audit_logs)
  INTR0[$side]=$(db_count "$side" intrusion_attempts)
  ANOM0[$side]=$(db_count "$side" anomaly_detections)
done

# --- the runs ---
RES=$WORK/results.jsonl
: >"$RES"
load() { # scenario path flm-bench-load-args...
  local scenario=$1 path=$2 url=$UP_URL model=fake-model key=direct-path-sends-any-key
  shift 2
  if [ "$path" != direct ]; then url=${URL[$path]} model=$MODEL key=${KEYS[$path]}; fi
  FLM_BENCH_KEY=$key "$BENCH" load --label "$scenario/$path" --url "$url" --model "$model" \
    --duration-secs "$DUR" "$@" >>"$RES"
  log "$(tail -1 "$RES")"
}
for round in $(seq "$ROUNDS"); do
  log "round $round/$ROUNDS ($(uptime | sed 's/.*load/load/'))"
  if [ $((round % 2)) = 1 ]; then order=(direct keys secure); else order=(direct secure keys); fi
  for path in "${order[@]}"; do load chat-c1 "$path" --concurrency 1 --warmup 500; done
  for path in "${order[@]}"; do
    load chat-c64 "$path" --concurrency 64 --warmup 2000
    if [ "$path" != direct ]; then
      rss=$(rss_kib "${PID[$path]}")
      [ "$rss" -gt "${RSS_C64[$path]}" ] && RSS_C64[$path]=$rss
    fi
  done
  for path in "${order[@]}"; do load stream-c16 "$path" --concurrency 16 --stream --warmup 500; done
done
cp "$RES" "target/bench/security-$MODE.jsonl"

# --- optional profile: one extra chat-c64 run per proxy under `perf record` ---
if [ "${FLM_BENCH_PERF:-0}" = 1 ]; then
  command -v perf >/dev/null || die "FLM_BENCH_PERF=1 but no \`perf\`"
  for side in keys secure; do
    perf record -g -o "target/bench/security-perf-$side.data" -p "${PID[$side]}" -- sleep 6 \
      >"$WORK/perf-$side.out" 2>&1 &
    perf_pid=$!
    sleep 0.3
    FLM_BENCH_KEY=${KEYS[$side]} "$BENCH" load --label "perf/$side" --url "${URL[$side]}" \
      --model "$MODEL" --duration-secs 5.5 --concurrency 64 --warmup 2000 >"$WORK/perf-load-$side.json"
    wait "$perf_pid" || die "perf record failed: $(cat "$WORK/perf-$side.out")"
    perf report -i "target/bench/security-perf-$side.data" --no-children --stdio 2>/dev/null \
      | grep -v '^$' | head -200 >"target/bench/security-perf-$side.txt" || true
    log "perf ($side): target/bench/security-perf-$side.txt ($(cat "$WORK/perf-load-$side.json"))"
  done
fi

# --- checks ---
sleep 1.5 # let the audit writers flush their last batch
fail=0
for side in keys secure; do
  a1=$(db_count "$side" audit_logs) i1=$(db_count "$side" intrusion_attempts) n1=$(db_count "$side" anomaly_detections)
  sent=$(python3 -c 'import json,sys
n=0
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r["label"].endswith("/"+sys.argv[2]): n+=r["requests"]
print(n)' "$RES" "$side")
  check_note "$side: audit_logs rows ${AUDIT0[$side]} -> $a1 (measured requests sent: $sent, plus warm-up), intrusion_attempts ${INTR0[$side]} -> $i1, anomaly_detections ${ANOM0[$side]} -> $n1"
  if [ "$a1" = '?' ] || [ "$a1" -le "${AUDIT0[$side]}" ]; then
    check_note "FAIL: $side wrote no audit rows during the run"; fail=1
  fi
  if [ "$i1" != "${INTR0[$side]}" ] || [ "$n1" != "${ANOM0[$side]}" ]; then
    # Not fatal (every answer was 2xx, so nothing was refused), but a false positive
    # on benign load: show the rows.
    check_note "WARN: $side recorded intrusion or anomaly events on benign load (false positives):"
    for t in intrusion_attempts anomaly_detections; do
      check_note "$(sqlite3 -readonly -header "file:${DATA[$side]}/security.db?mode=ro" "SELECT * FROM $t ORDER BY rowid DESC LIMIT 5" 2>&1)"
    done
  fi
done
listing=$("$FLM" --data-dir "${DATA[secure]}" --format text security audit-logs list --limit 5 2>&1) || true
check_note "secure: flm security audit-logs list --limit 5:"
check_note "$listing"
for side in keys secure; do
  if grep -qiE 'panic|error' "$WORK/proxy-$side.log"; then
    check_note "$side proxy log mentions errors:"; check_note "$(grep -iE 'panic|error' "$WORK/proxy-$side.log" | head -5)"
  fi
done

# --- the table ---
echo
echo "Result ($(date +%F), \`$MODE\`: $ROUNDS interleaved rounds of ${DUR} s per run, $(nproc) cores shared by load generator, both proxies and fake engine, load average $(cut -d' ' -f1-3 /proc/loadavg), $(commit_note)):"
echo
enforce=()
[ "${FLM_BENCH_ENFORCE:-0}" = 1 ] && enforce=(--enforce)
rc=0
python3 bench/security_summary.py "$RES" \
  --rss keys "${RSS_IDLE[keys]}" "${RSS_C64[keys]}" \
  --rss secure "${RSS_IDLE[secure]}" "${RSS_C64[secure]}" "${enforce[@]}" || rc=$?
echo
echo "Command: \`bench/security.sh $MODE\`; checks: $CHECKS"
[ "$fail" = 0 ] || die "checks failed (see $CHECKS): the figures are not valid"
exit "$rc"
