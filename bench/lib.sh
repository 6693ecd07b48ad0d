# Shell functions shared by bench/proxy.sh and bench/security.sh. Source it after
# `set -euo pipefail` and `cd` to the workspace root; the caller defines
#   SCRIPT   its name, for messages
#   WORK     a temporary directory (removed by cleanup)
#   PIDS     an array of background processes (killed by cleanup)
#   FLM, BENCH  the release binaries
# Every wait loop here is bounded (100 × 0.1 s).

log() { echo "[bench] $*" >&2; }
die() { echo "$SCRIPT: $*" >&2; exit 1; }

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Dies unless this `flm` has `proxy start --no-daemon` and `api-keys create`.
# $1: extra advice for the message.
require_proxy_cli() {
  local start_help
  start_help=$("$FLM" proxy start --help 2>/dev/null || true)
  if ! { [[ $start_help == *--no-daemon* ]] && "$FLM" api-keys create --help >/dev/null 2>&1; }; then
    die "this build of \`flm\` has no \`proxy start --no-daemon\` or \`api-keys create\` yet
  (crates/flm-proxy is not wired into flm-cli), so there is no proxy to measure.${1:+
  $1}"
  fi
}

# Starts `flm-bench fake-upstream`; sets UP_PID and UP_URL.
start_fake_upstream() {
  : >"$WORK/upstream.out"
  "$BENCH" fake-upstream --port 0 >>"$WORK/upstream.out" 2>&1 &
  UP_PID=$!
  PIDS+=("$UP_PID")
  UP_URL=
  for _ in $(seq 100); do
    UP_URL=$(sed -n 's/^listening on //p' "$WORK/upstream.out")
    [ -n "$UP_URL" ] && break
    kill -0 "$UP_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$UP_URL" ] || die "fake upstream did not start: $(cat "$WORK/upstream.out")"
  log "fake engine on $UP_URL"
}

# Registers the fake engine as `openai` endpoint `fake` in data dir $1 and creates one
# API key; prints the key.
setup_data_dir() {
  local data=$1
  "$FLM" --data-dir "$data" engines add --kind openai --url "$UP_URL" --id fake >&2
  "$FLM" --data-dir "$data" api-keys create --label bench --format json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["key"])'
}

# Starts `flm proxy start --no-daemon` on data dir $1 and a free port, logging to $2,
# and waits for GET /health; sets STARTED_PID and STARTED_URL.
start_proxy() {
  local data=$1 logf=$2 port up=0
  port=$(free_port)
  "$FLM" --data-dir "$data" proxy start --no-daemon --port "$port" >"$logf" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  STARTED_URL=http://127.0.0.1:$port
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$STARTED_URL/health" && { up=1; break; }
    kill -0 "$STARTED_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ "$up" = 1 ] || die "proxy did not answer GET /health with 200 within 10 s; its log:
$(tail -20 "$logf")"
  log "proxy on $STARTED_URL (pid $STARTED_PID)"
}

# One chat request first, so a wiring problem shows its answer. $1 url, $2 model, $3 key.
smoke_chat() {
  local smoke
  smoke=$(curl -s -w '\n%{http_code}' "$1/v1/chat/completions" \
    -H "Authorization: Bearer $3" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$2\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}") || true
  [ "${smoke##*$'\n'}" = 200 ] || die "POST /v1/chat/completions via $1 (model $2) did not answer 200:
$smoke"
}

# Commit and tree state for result headers.
commit_note() {
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ', dirty tree')"
}
