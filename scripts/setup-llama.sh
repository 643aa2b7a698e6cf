#!/usr/bin/env bash
# llama.cpp's Python binding (`llama-cpp-python[server]`), the reference and
# CPU peer for the native runner on the same SmolLM2 GGUF: the greedy
# agreement oracle (tests/oracle/test_llamacpp_agreement.py) and
# `make bench-runner` use it. Called by scripts/setup-runner.sh.
#
# The package is an sdist that compiles llama.cpp with cmake (about 8 CPU
# minutes; 13 minutes of wall time on 2 busy cores), so it gets its own venv,
# keyed by the package version, outside the clone:
#   ${XDG_CACHE_HOME:-~/.cache}/infergate/llama-venv-<version>/
# A `.complete` marker holding the build flags is written last; a venv without
# it, or built with other flags, is rebuilt from nothing. `source
# scripts/runner-env.sh` exports its python as INFERGATE_LLAMA_PYTHON (a value
# already set is used as it is). Version and flags live in runner-env.sh.
#
# CPU-only, portable build: GGML_NATIVE=OFF compiles for AVX/AVX2/FMA/F16C
# (not -march=native, so a cache reused on another x86-64 host still runs; no
# AVX-512 kernels); no BLAS, no GPU backends, no multimodal (mtmd) library.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/runner-env.sh"
cd "$ROOT"

if [ "$INFERGATE_LLAMA_PYTHON" != "$LLAMA_VENV_DIR/bin/python" ]; then
  # Set by the caller: use it as it is.
  "$INFERGATE_LLAMA_PYTHON" -c 'import llama_cpp.server.app' 2>/dev/null && exit 0
  echo "INFERGATE_LLAMA_PYTHON=$INFERGATE_LLAMA_PYTHON cannot import llama_cpp.server" >&2
  exit 1
fi
if [ -x "$INFERGATE_LLAMA_PYTHON" ] && [ "$(cat "$LLAMA_VENV_DIR/.complete" 2>/dev/null)" = "$LLAMA_CMAKE_ARGS" ]; then
  exit 0
fi

# Build tools: a C/C++ compiler and make are required; cmake comes from apt
# when possible, otherwise the build backend (scikit-build-core) fetches the
# cmake wheel from the package index by itself.
apt_get() {
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}
if ! command -v cc >/dev/null || ! command -v c++ >/dev/null || ! command -v make >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install build-essential (to compile llama.cpp)"
    apt_get build-essential
  else
    echo "llama-cpp-python needs a C/C++ compiler and make: install build-essential" >&2
    exit 1
  fi
fi
if ! command -v cmake >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "apt-get install cmake (to compile llama.cpp)"
  apt_get cmake || log "apt-get install cmake failed; the build backend will use the cmake wheel"
fi

log "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION (compiles llama.cpp, several minutes) -> $LLAMA_VENV_DIR"
rm -rf "$LLAMA_VENV_DIR"
mkdir -p "$(dirname "$LLAMA_VENV_DIR")"
python3 -m venv "$LLAMA_VENV_DIR"
CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" FORCE_CMAKE=1 \
  "$LLAMA_VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
  "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION"
# Smoke check: the shared libraries load and report the CPU backend.
"$LLAMA_VENV_DIR/bin/python" - <<'PY'
import llama_cpp
import llama_cpp.server.app  # noqa: F401  (the [server] extra is complete)
info = llama_cpp.llama_print_system_info().decode()
assert "CPU" in info, info
PY
printf '%s' "$LLAMA_CMAKE_ARGS" >"$LLAMA_VENV_DIR/.complete"
