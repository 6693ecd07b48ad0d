#!/usr/bin/env bash
# Benchmarks `flm engines detect` wall time, process start to exit (release build):
#   1. --fresh with no engine running (every default address refuses),
#   2. --fresh with the real llama-server running on the llama.cpp default address,
#   3. cached (second call within the TTL).
# Needs hyperfine (Debian package) and scripts/setup-llama-server.sh.
# Usage: bench/detect.sh [runs]   (default 50). Prints a Markdown table of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-50}
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release --locked -p flm-cli >&2
eval "$(scripts/setup-llama-server.sh --print-env)"
FLM=$PWD/target/release/flm
WORK=$(mktemp -d)
trap 'kill $LLAMA_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export FLM_HOME=$WORK/data PATH_SAVE=$PATH
export OLLAMA_BASE_URL=http://127.0.0.1:$(free_port) VLLM_PORT=$(free_port)
export LMSTUDIO_API_HOST=127.0.0.1:$(free_port) LLAMA_CPP_PORT=$(free_port)
"$FLM" config list >/dev/null   # create and migrate the store once

hf() { # name, command
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/$1.json" "$2" >/dev/null
  python3 - "$WORK/$1.json" "$1" <<'PY'
import json, sys, statistics
r = json.load(open(sys.argv[1]))["results"][0]
t = sorted(r["times"])
p = lambda q: t[min(len(t) - 1, int(q * len(t)))] * 1000
print(f"| {sys.argv[2]} | {statistics.median(t)*1000:.1f} | {p(0.9):.1f} | {min(t)*1000:.1f} | {len(t)} |")
PY
}

echo "| case | median ms | p90 ms | min ms | runs |"
echo "|---|---|---|---|---|"
hf "fresh, nothing running" "$FLM engines detect --fresh"
LLAMA_PORT=$(free_port)
"$FLM_LLAMA_SERVER" -m "$FLM_TINY_MODELS/tiny-llama.gguf" -a tiny-llama --host 127.0.0.1 \
  --port "$LLAMA_PORT" -c 256 -np 1 -t 1 >/dev/null 2>&1 &
LLAMA_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$LLAMA_PORT/health" >/dev/null && break; sleep 0.1; done
export LLAMA_CPP_PORT=$LLAMA_PORT
hf "fresh, real llama-server running" "$FLM engines detect --fresh"
"$FLM" engines detect --fresh >/dev/null
hf "cached" "$FLM engines detect"
