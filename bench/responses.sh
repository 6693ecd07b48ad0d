#!/usr/bin/env bash
# Measures what the Responses bridge adds: `POST /v1/responses` through FLM (bridged to
# chat completions on an engine without a native Responses API) against
# `POST /v1/chat/completions` through FLM and against the engine directly, in the
# same run.
#
# Starts the fake OpenAI-compatible engine (`flm-bench fake-upstream`, an `openai`
# endpoint: always bridged) and the proxy in front of it, then runs with
# `flm-bench load`, interleaved for 3 rounds so machine noise hits every side:
#   full-c1    non-streaming, 1 connection:  engine direct (chat), FLM chat, FLM responses
#   stream-c1  streaming (20 chunks), 1 connection: the same three
# Prints a Markdown table: medians over rounds of p50/p99 (TTFB for streams), and
# the ratios responses/chat (the bridge's own cost) and responses/direct.
#
# Usage: bench/responses.sh [quick|full]
#   quick  1 s per run: a smoke test
#   full   6 s per run: the real measurement
# Raw results are kept in target/bench/responses-<mode>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-quick}
case "$MODE" in
  quick) DUR=1 ;;
  full) DUR=6 ;;
  *) echo "usage: bench/responses.sh [quick|full]" >&2; exit 64 ;;
esac
ROUNDS=3

SCRIPT=bench/responses.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh

cargo build --release --locked -p flm-cli -p flm-bench >&2
FLM=$PWD/target/release/flm
BENCH=$PWD/target/release/flm-bench
require_proxy_cli ""

WORK=$(mktemp -d)
PIDS=()
trap cleanup EXIT

start_fake_upstream
DATA=$WORK/data
KEY=$(setup_data_dir "$DATA")
start_proxy "$DATA" "$WORK/proxy.log"
PROXY_URL=$STARTED_URL
smoke_chat "$PROXY_URL" flm://fake/fake-model "$KEY"
smoke=$(curl -s -w '\n%{http_code}' "$PROXY_URL/v1/responses" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{"model":"flm://fake/fake-model","input":"hi"}') || true
[ "${smoke##*$'\n'}" = 200 ] || die "POST /v1/responses did not answer 200: $smoke"

RES=$WORK/results.jsonl
: >"$RES"
load() { # label path api args...
  local label=$1 path=$2 api=$3 url=$PROXY_URL model=flm://fake/fake-model key=$KEY
  shift 3
  if [ "$path" = direct ]; then url=$UP_URL model=fake-model key=direct-path-sends-any-key; fi
  FLM_BENCH_KEY=$key "$BENCH" load --label "$label/$path-$api" --api "$api" --url "$url" \
    --model "$model" --duration-secs "$DUR" --concurrency 1 "$@" >>"$RES"
  log "$(tail -1 "$RES")"
}
for round in $(seq "$ROUNDS"); do
  log "round $round/$ROUNDS"
  for side in "direct chat" "proxy chat" "proxy responses"; do
    # shellcheck disable=SC2086
    load full-c1 $side --warmup 300
  done
  for side in "direct chat" "proxy chat" "proxy responses"; do
    # shellcheck disable=SC2086
    load stream-c1 $side --stream --warmup 100
  done
done
mkdir -p target/bench
cp "$RES" "target/bench/responses-$MODE.jsonl"

echo
echo "Result ($(date +%F), \`$MODE\`: $ROUNDS interleaved rounds of ${DUR} s per run, c=1, $(nproc) cores shared by load generator, proxy and fake engine, $(commit_note)):"
echo
python3 - "$RES" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = [r for r in runs if r["errors"] or r["non_2xx"]]
if bad:
    sys.exit(f"failed requests: {bad}")
def med(label, key):
    return statistics.median(r[key] for r in runs if r["label"] == label)
print("| scenario | metric | engine direct | FLM chat | FLM responses | responses − chat | responses / chat | responses / direct |")
print("|---|---|---|---|---|---|---|---|")
for scen, metrics in (("full-c1", ("p50_us", "p99_us", "rps")), ("stream-c1", ("ttfb_p50_us", "p50_us", "rps"))):
    for m in metrics:
        d, c, r = (med(f"{scen}/{s}", m) for s in ("direct-chat", "proxy-chat", "proxy-responses"))
        diff = "–" if m == "rps" else f"{r - c:+.1f}"
        print(f"| {scen} | {m.replace('_us', ' µs')} | {d:.1f} | {c:.1f} | {r:.1f} | {diff} | ×{r / c:.2f} | ×{r / d:.2f} |")
PY
echo
echo "Command: \`nice -n 19 bench/responses.sh $MODE\`"
