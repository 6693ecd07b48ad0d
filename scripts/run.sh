#!/usr/bin/env bash
# Builds FLM and runs its main job: find every LLM engine on this machine, list their
# models, and serve them all behind one OpenAI-compatible endpoint with an API key.
# The proxy keeps running in the background; stop it with `target/release/flm proxy stop`.
# Extra arguments go to `flm proxy start` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "[run] cargo is missing: install the Rust toolchain (https://rustup.rs), then re-run" >&2
  exit 1
fi
scripts/build-ui.sh >&2
cargo build --release --locked -p flm-cli >&2
FLM=target/release/flm
"$FLM" --format text engines detect --fresh
"$FLM" --format text models list
"$FLM" --format text proxy start "$@" || { "$FLM" --format text proxy status; exit 1; }
echo "[run] flm is at $FLM; stop the proxy with: $FLM proxy stop" >&2
