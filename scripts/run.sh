#!/usr/bin/env bash
# Builds FLM and runs its main job: find every LLM engine on this machine, show its
# health, and list its models. Extra arguments go to `flm engines detect`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "[run] cargo is missing: install the Rust toolchain (https://rustup.rs), then re-run" >&2
  exit 1
fi
cargo build --release --locked -p flm-cli >&2
FLM=target/release/flm
"$FLM" engines detect --fresh "$@"
"$FLM" models list
echo "[run] flm is at $FLM; try: $FLM --help" >&2
