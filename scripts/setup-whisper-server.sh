#!/usr/bin/env bash
# Build the real whisper.cpp `whisper-server` for FLM's audio-route tests.
#
# Everything comes from package registries: the whisper.cpp sources vendored inside the
# `pywhispercpp` sdist on PyPI (with its vocabulary-only test models and the sample
# `jfk.wav`), cmake/g++ from Debian. No weights are downloaded: the test model has the
# real tiny hyper-parameters and vocabulary but no tensors, so the server answers every
# transcription with empty text — enough to prove the route, the multipart relay and the
# error paths end to end.
#
# Results are cached outside the clone (default ~/.cache/flm) and reused:
#   $FLM_CACHE/whisper-server-<version>            the binary
#   $FLM_CACHE/models/for-tests-ggml-tiny.bin      the vocabulary-only test model
#   $FLM_CACHE/samples/jfk.wav                     the sample audio (16 kHz mono WAV)
#
# Usage: scripts/setup-whisper-server.sh [--print-env]
#   --print-env  print FLM_WHISPER_SERVER=…, FLM_WHISPER_MODEL=… and FLM_WHISPER_SAMPLE=…
#                lines for `eval`.
set -euo pipefail

VER=${PYWHISPERCPP_VERSION:-1.5.1}
CACHE=${FLM_CACHE:-$HOME/.cache/flm}
JOBS=${JOBS:-$(nproc)}
SRC=$CACHE/src/whisper.cpp-$VER
BIN=$CACHE/whisper-server-$VER
MODELS=$CACHE/models
SAMPLES=$CACHE/samples
MODEL=$MODELS/for-tests-ggml-tiny.bin
SAMPLE=$SAMPLES/jfk.wav
LOGS=$CACHE/logs
mkdir -p "$CACHE" "$MODELS" "$SAMPLES" "$LOGS"

log() { echo "[setup-whisper-server] $*" >&2; }

need_apt() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v g++ >/dev/null || missing+=(g++)
  command -v make >/dev/null || missing+=(make)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

fetch_sources() {
  [ -f "$SRC/examples/server/server.cpp" ] && return
  local sdist=$CACHE/sdist
  mkdir -p "$sdist"
  local tgz=$sdist/pywhispercpp-$VER.tar.gz
  if [ ! -f "$tgz" ]; then
    log "downloading pywhispercpp $VER sdist from PyPI"
    # Only this package as source: `--no-binary :all:` would also build every build
    # dependency from source, which takes many minutes.
    python3 -m pip download -q --no-deps --no-binary pywhispercpp "pywhispercpp==$VER" -d "$sdist"
  fi
  rm -rf "$SRC.tmp" && mkdir -p "$SRC.tmp"
  tar xzf "$tgz" -C "$SRC.tmp" --strip-components=2 "pywhispercpp-$VER/whisper.cpp"
  rm -f "$SRC.tmp/.git"   # submodule pointer into the absent parent repository
  mv "$SRC.tmp" "$SRC"
}

build() {
  if [ -x "$BIN" ]; then log "whisper-server cached: $BIN"; return; fi
  need_apt
  fetch_sources
  log "building whisper-server (about 2 minutes on 2 cores; log: $LOGS/whisper-build.log)"
  cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_EXAMPLES=ON \
    -DWHISPER_SDL2=OFF >"$LOGS/whisper-configure.log" 2>&1
  cmake --build "$SRC/build" --target whisper-server -j"$JOBS" >"$LOGS/whisper-build.log" 2>&1
  cp "$SRC/build/bin/whisper-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
  log "built $BIN"
}

assets() {
  if [ -f "$MODEL" ] && [ -f "$SAMPLE" ]; then return; fi
  fetch_sources
  cp "$SRC/models/for-tests-ggml-tiny.bin" "$MODEL.tmp" && mv "$MODEL.tmp" "$MODEL"
  cp "$SRC/samples/jfk.wav" "$SAMPLE.tmp" && mv "$SAMPLE.tmp" "$SAMPLE"
  log "test model and sample audio copied to $MODELS and $SAMPLES"
}

# Two runs at once (a test run and a developer's shell) would share the half-made build
# tree: the second waits for the first, then finds everything cached. The lock is its own
# file so that this script and setup-llama-server.sh can build side by side.
exec 9>"$CACHE/.setup-whisper.lock"
flock 9
build
assets
flock -u 9
if [ "${1:-}" = "--print-env" ]; then
  echo "FLM_WHISPER_SERVER=$BIN"
  echo "FLM_WHISPER_MODEL=$MODEL"
  echo "FLM_WHISPER_SAMPLE=$SAMPLE"
fi
