#!/usr/bin/env bash
# Build the real llama.cpp `llama-server` and generate tiny GGUF models for FLM's tests.
#
# Everything comes from package registries: the llama.cpp sources vendored inside the
# `llama-cpp-python` sdist on PyPI, cmake/g++ from Debian, gguf+numpy from PyPI. No
# weights are downloaded: scripts/make_tiny_gguf.py writes random-weight models that
# reuse the real tokenizers shipped with llama.cpp.
#
# Results are cached outside the clone (default ~/.cache/flm) and reused:
#   $FLM_CACHE/llama-server-<version>   the binary
#   $FLM_CACHE/models/tiny-llama.gguf  chat model (llama arch, Llama-2 SPM tokenizer)
#   $FLM_CACHE/models/tiny-bert.gguf   embedding model (bert arch, BGE WordPiece)
#
# Usage: scripts/setup-llama-server.sh [--print-env]
#   --print-env  print FLM_LLAMA_SERVER=… and FLM_TINY_MODELS=… lines for `eval`.
set -euo pipefail

VER=${LLAMA_CPP_PY_VERSION:-0.3.36}
CACHE=${FLM_CACHE:-$HOME/.cache/flm}
JOBS=${JOBS:-$(nproc)}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$CACHE/src/llama.cpp-$VER
BIN=$CACHE/llama-server-$VER
MODELS=$CACHE/models
VENV=$CACHE/venv
LOGS=$CACHE/logs
mkdir -p "$CACHE" "$MODELS" "$LOGS"

log() { echo "[setup-llama-server] $*" >&2; }

need_apt() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v g++ >/dev/null || missing+=(g++)
  command -v make >/dev/null || missing+=(make)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

fetch_sources() {
  [ -f "$SRC/tools/server/server.cpp" ] && return
  local sdist=$CACHE/sdist
  mkdir -p "$sdist"
  local tgz=$sdist/llama_cpp_python-$VER.tar.gz
  if [ ! -f "$tgz" ]; then
    log "downloading llama-cpp-python $VER sdist from PyPI"
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VER" -d "$sdist"
  fi
  rm -rf "$SRC.tmp" && mkdir -p "$SRC.tmp"
  tar xzf "$tgz" -C "$SRC.tmp" --strip-components=3 "llama_cpp_python-$VER/vendor/llama.cpp"
  rm -f "$SRC.tmp/.git"   # submodule pointer into the absent parent repository
  mv "$SRC.tmp" "$SRC"
}

build() {
  if [ -x "$BIN" ]; then log "llama-server cached: $BIN"; return; fi
  need_apt
  fetch_sources
  log "building llama-server (about 10 minutes on 2 cores; log: $LOGS/cmake-build.log)"
  cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF >"$LOGS/cmake-configure.log" 2>&1
  cmake --build "$SRC/build" --target llama-server -j"$JOBS" >"$LOGS/cmake-build.log" 2>&1
  cp "$SRC/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
  log "built $BIN"
}

models() {
  if [ -f "$MODELS/tiny-llama.gguf" ] && [ -f "$MODELS/tiny-bert.gguf" ]; then
    log "tiny models cached in $MODELS"; return
  fi
  need_apt
  fetch_sources
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q gguf numpy
  fi
  [ -f "$MODELS/tiny-llama.gguf" ] || "$VENV/bin/python" "$HERE/make_tiny_gguf.py" --arch llama \
    --vocab "$SRC/models/ggml-vocab-llama-spm.gguf" -o "$MODELS/tiny-llama.gguf" >&2
  [ -f "$MODELS/tiny-bert.gguf" ] || "$VENV/bin/python" "$HERE/make_tiny_gguf.py" --arch bert \
    --vocab "$SRC/models/ggml-vocab-bert-bge.gguf" -o "$MODELS/tiny-bert.gguf" >&2
}

# Two runs at once (a test run and a developer's shell) would share the half-made venv
# or build tree: the second waits for the first, then finds everything cached.
exec 9>"$CACHE/.setup.lock"
flock 9
build
models
flock -u 9
if [ "${1:-}" = "--print-env" ]; then
  echo "FLM_LLAMA_SERVER=$BIN"
  echo "FLM_TINY_MODELS=$MODELS"
fi
