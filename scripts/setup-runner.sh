#!/usr/bin/env bash
# Everything the native runner's tests and benchmark need, cached by version
# outside the clone (a CI clone is fresh every run):
#   - the ONNX Runtime CPU library, taken from the onnxruntime wheel;
#   - a Python venv with the test-model generator's, the SDK test's and the
#     benchmark's packages, keyed by a hash of the requirement files;
#   - the generated test model in models/tiny-gpt/ (checked by sha256);
#   - llama-cpp-python[server] in its own venv (scripts/setup-llama.sh).
# Idempotent; a warm run prints nothing. `source scripts/runner-env.sh`
# afterwards exports the paths (ORT_DYLIB_PATH, INFERGATE_MODEL_DIR,
# INFERGATE_PYTHON, INFERGATE_LLAMA_PYTHON).
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/runner-env.sh"
cd "$ROOT"

# --- ONNX Runtime CPU library ----------------------------------------------
if [ ! -f "$ORT_DYLIB_PATH" ]; then
  log "onnxruntime $ORT_VERSION library (from the onnxruntime wheel) -> $ORT_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 \
    "onnxruntime==$ORT_VERSION" -d "$tmp"
  whl="$(ls "$tmp"/onnxruntime-"$ORT_VERSION"-*.whl | head -1)"
  python3 - "$whl" "$tmp" "$ORT_VERSION" <<'PY'
import sys, zipfile
whl, out, ver = sys.argv[1:]
name = f"onnxruntime/capi/libonnxruntime.so.{ver}"
with zipfile.ZipFile(whl) as z:
    z.extract(name, out)
PY
  mkdir -p "$ORT_DIR"
  # Move into place last, so an interrupted run never leaves a partial file.
  mv "$tmp/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_DYLIB_PATH.partial"
  mv "$ORT_DYLIB_PATH.partial" "$ORT_DYLIB_PATH"
fi

# --- Python venv --------------------------------------------------------------
if [ ! -x "$INFERGATE_PYTHON" ] || [ ! -f "$VENV_DIR/.complete" ]; then
  log "python venv -> $VENV_DIR"
  rm -rf "$VENV_DIR"
  if ! python3 -m venv "$VENV_DIR" >/dev/null 2>&1; then
    # Debian's python3 ships venv separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "apt-get install python3-venv"
      apt-get update -qq >/dev/null && apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$VENV_DIR"
      python3 -m venv "$VENV_DIR"
    else
      echo "python3 cannot create a venv: install python3-venv" >&2
      exit 1
    fi
  fi
  "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tools/requirements.txt -r bench/requirements.txt
  touch "$VENV_DIR/.complete"
fi

# --- test model ---------------------------------------------------------------
# The generator is deterministic, so the expected hashes pin the files; a
# changed generator or requirement shows up here as a regeneration.
MODEL_SHA256="$ROOT/tools/tiny-gpt.sha256"
model_ok() {
  [ -f "$MODEL_SHA256" ] && (cd "$INFERGATE_MODEL_DIR" 2>/dev/null && sha256sum --quiet --check "$MODEL_SHA256" >/dev/null 2>&1)
}
if ! model_ok; then
  log "generating the test model -> $INFERGATE_MODEL_DIR"
  out="$("$INFERGATE_PYTHON" tools/gen_test_model.py --out "$INFERGATE_MODEL_DIR" 2>&1)" || {
    printf '%s\n' "$out" >&2
    echo "test model generation or verification failed" >&2
    exit 1
  }
  if [ -f "$MODEL_SHA256" ] && ! model_ok; then
    echo "the generated model does not match tools/tiny-gpt.sha256:" >&2
    (cd "$INFERGATE_MODEL_DIR" && sha256sum --check "$MODEL_SHA256") >&2 || true
    exit 1
  fi
fi

# --- llama.cpp (reference and CPU peer on the SmolLM2 GGUF) ------------------
# llama-cpp-python[server], compiled once into its own version-keyed venv.
bash "$ROOT/scripts/setup-llama.sh"
