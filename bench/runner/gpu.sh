#!/usr/bin/env bash
# GPU benchmark of the native runner on SmolLM2-135M-Instruct (CUDA execution
# provider): batch-1 decode ms/token and aggregate tokens/s at 1, 8, 32 and 64
# concurrent streams. Writes bench/results/runner-gpu.md.
#
# Two steps, because a GPU host may reach no registry (or only a package index):
#
# 1. On a connected machine with the repository (this project's dev machine):
#
#      bench/runner/gpu.sh prepare DIR
#
#    fills DIR (about 3 GB, mostly the nvidia-* wheels) with
#      DIR/wheels/   onnxruntime-gpu[cuda,cudnn]==1.31.1 (CUDA 13, with every
#                    nvidia-* wheel it needs) and httpx for the load generator,
#                    all wheels for Linux x86_64 and CPython $GPU_PYTHON_VERSION
#                    (default: this machine's python3 version; set it to the
#                    GPU host's, e.g. GPU_PYTHON_VERSION=3.12);
#      DIR/model/    a copy of the converted SmolLM2 folder ($INFERGATE_CHAT_MODEL_DIR,
#                    made by scripts/setup-runner.sh);
#      DIR/vendor/   the workspace's crates (`cargo vendor`) and
#      DIR/cargo-config.toml, so the runner builds offline;
#      DIR/bin/      only with GPU_PREBUILD=1: the runner built here with
#                    `--features cuda`, for a GPU host without Rust.
#    Copy DIR and the repository to the GPU host (e.g. rsync -a).
#
# 2. On the GPU host (NVIDIA driver for CUDA 13, python3 with venv, a Rust
#    toolchain unless DIR/bin or GPU_RUNNER_BIN gives the runner):
#
#      bench/runner/gpu.sh run [DIR]
#
#    fails at once when there is no NVIDIA GPU (`nvidia-smi` missing or listing
#    none); installs the wheels into a venv (from DIR/wheels without any index,
#    or from the package index when DIR is not given); builds the runner with
#    `--features cuda` (offline from DIR/vendor when present) into target/cuda;
#    starts it with `--device cuda --require-gpu`, `--ort-lib` at the GPU wheel's
#    libonnxruntime.so.1.31.1 and LD_LIBRARY_PATH on the nvidia-* wheels' lib
#    folders; checks /ready reports device cuda; drives bench/runner/load.py.
#    Without DIR the model is $INFERGATE_CHAT_MODEL_DIR.
#
# Knobs (run): GPU_BENCH_STREAMS (default 1,8,32,64), GPU_BENCH_DURATION (s per
# level, default 10), GPU_BENCH_MAX_TOKENS (default 64), GPU_BENCH_PORT (18190),
# GPU_MAX_BATCH (runner --max-batch-size, default 64), GPU_VENV (default
# ${XDG_CACHE_HOME:-~/.cache}/infergate/gpu-venv-1.31.1), GPU_RUNNER_BIN (a
# runner built with --features cuda; skips the build).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

ORT_GPU_VERSION="1.31.1"
HTTPX_VERSION="0.28.1"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/infergate"
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() { echo "gpu.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }

prepare() {
  local dir="${1:-}"
  [ -n "$dir" ] || usage
  mkdir -p "$dir/wheels"
  dir="$(cd "$dir" && pwd)"
  local pyver="${GPU_PYTHON_VERSION:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
  log "wheels for CPython $pyver, Linux x86_64 -> $dir/wheels"
  # The nvidia-* wheels carry assorted manylinux tags; an explicit --platform
  # list is needed because pip does not widen a single one.
  local plats=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
    manylinux_2_12_x86_64 manylinux2010_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
    plats+=(--platform "$p")
  done
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: "${plats[@]}" \
    --python-version "$pyver" -d "$dir/wheels" \
    "onnxruntime-gpu[cuda,cudnn]==$ORT_GPU_VERSION" "httpx==$HTTPX_VERSION"
  echo "$pyver" >"$dir/wheels/PYTHON_VERSION"

  bash scripts/setup-runner.sh
  source scripts/runner-env.sh
  [ -f "$INFERGATE_CHAT_MODEL_DIR/model.onnx" ] || fail "no converted model at $INFERGATE_CHAT_MODEL_DIR"
  log "model folder $INFERGATE_CHAT_MODEL_DIR -> $dir/model"
  rm -rf "$dir/model"
  cp -a "$INFERGATE_CHAT_MODEL_DIR/." "$dir/model/"

  log "cargo vendor -> $dir/vendor"
  rm -rf "$dir/vendor"
  cargo vendor --locked "$dir/vendor" 2>"$dir/vendor.log" | sed "s|$dir/vendor|VENDOR_DIR|" >"$dir/cargo-config.toml" ||
    { cat "$dir/vendor.log" >&2; fail "cargo vendor failed"; }
  grep -q VENDOR_DIR "$dir/cargo-config.toml" || fail "cargo vendor printed no source replacement"
  if [ "${GPU_PREBUILD:-0}" = 1 ]; then
    # For a GPU host without a Rust toolchain (its glibc must be at least this machine's).
    log "cargo build --release -p infergate-runner --features cuda -> $dir/bin"
    CARGO_TARGET_DIR="$ROOT/target/cuda" cargo build --release --quiet -p infergate-runner --features cuda
    mkdir -p "$dir/bin"
    cp "$ROOT/target/cuda/release/infergate-runner" "$dir/bin/"
  fi
  log "done: copy $dir and this repository to the GPU host, then run bench/runner/gpu.sh run $dir"
}

run() {
  local dir="${1:-}"
  # Fail fast without a GPU, before installing or building anything.
  command -v nvidia-smi >/dev/null ||
    fail "no NVIDIA GPU here: nvidia-smi is missing (this benchmark needs an NVIDIA GPU and its driver)"
  local gpus
  gpus="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)" ||
    fail "nvidia-smi failed: $gpus"
  [ -n "$gpus" ] || fail "nvidia-smi lists no GPU"
  log "GPU: $gpus"
  if [ -n "$dir" ]; then
    [ -d "$dir/wheels" ] || fail "$dir/wheels is missing: make it with bench/runner/gpu.sh prepare $dir"
    dir="$(cd "$dir" && pwd)"
  fi

  # --- venv with the GPU build of ONNX Runtime ---------------------------------
  local venv="${GPU_VENV:-$CACHE/gpu-venv-$ORT_GPU_VERSION}"
  if [ ! -f "$venv/.complete" ]; then
    log "venv with onnxruntime-gpu[cuda,cudnn]==$ORT_GPU_VERSION -> $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    local src=()
    [ -n "$dir" ] && src=(--no-index --find-links "$dir/wheels")
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${src[@]}" \
      "onnxruntime-gpu[cuda,cudnn]==$ORT_GPU_VERSION" "httpx==$HTTPX_VERSION"
    touch "$venv/.complete"
  fi
  local site
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  local ort_lib="$site/onnxruntime/capi/libonnxruntime.so.$ORT_GPU_VERSION"
  [ -f "$ort_lib" ] || fail "$ort_lib is missing from the onnxruntime-gpu wheel"
  [ -f "$site/onnxruntime/capi/libonnxruntime_providers_cuda.so" ] ||
    fail "libonnxruntime_providers_cuda.so is missing: is this the onnxruntime-gpu wheel?"
  # Every lib folder of the nvidia-* wheels (CUDA runtime, cuBLAS, cuDNN, cuFFT, cuRAND, nvrtc, nvJitLink).
  local libs
  libs="$(find "$site/nvidia" -type d -name lib 2>/dev/null | sort | paste -sd:)"
  [ -n "$libs" ] || fail "no nvidia-* wheel libraries under $site/nvidia"
  export LD_LIBRARY_PATH="$libs:$site/onnxruntime/capi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

  # --- model -------------------------------------------------------------------
  local model
  if [ -n "$dir" ]; then
    model="$dir/model"
  else
    [ -f scripts/runner-env.sh ] && source scripts/runner-env.sh
    model="${INFERGATE_CHAT_MODEL_DIR:-}"
  fi
  [ -f "$model/model.onnx" ] || fail "no model.onnx in '${model}': pass the prepared DIR or set INFERGATE_CHAT_MODEL_DIR"

  # --- runner with the CUDA execution provider --------------------------------
  local bin="${GPU_RUNNER_BIN:-}"
  if [ -z "$bin" ] && ! command -v cargo >/dev/null && [ -n "$dir" ] && [ -x "$dir/bin/infergate-runner" ]; then
    bin="$dir/bin/infergate-runner"  # prebuilt by `GPU_PREBUILD=1 gpu.sh prepare`
  fi
  if [ -z "$bin" ]; then
    command -v cargo >/dev/null || fail "cargo is missing: install Rust, or prepare with GPU_PREBUILD=1, or set GPU_RUNNER_BIN"
    export CARGO_TARGET_DIR="${GPU_CARGO_TARGET_DIR:-$ROOT/target/cuda}"
    local cargo_args=(build --release --quiet -p infergate-runner --features cuda)
    if [ -n "$dir" ] && [ -d "$dir/vendor" ]; then
      sed "s|VENDOR_DIR|$dir/vendor|" "$dir/cargo-config.toml" >"$dir/cargo-config.local.toml"
      cargo_args+=(--offline --config "$dir/cargo-config.local.toml")
    fi
    log "cargo ${cargo_args[*]}"
    cargo "${cargo_args[@]}"
    bin="$CARGO_TARGET_DIR/release/infergate-runner"
  fi

  local port="${GPU_BENCH_PORT:-18190}" max_batch="${GPU_MAX_BATCH:-64}"
  local flags="--device cuda --require-gpu --max-batch-size $max_batch"
  # Globals, not locals: the EXIT trap runs after run() has returned.
  LOGS="$(mktemp -d)"
  RUNNER_PID=""
  trap 'if [ -n "$RUNNER_PID" ]; then kill "$RUNNER_PID" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$LOGS"' EXIT
  log "runner on :$port ($flags)"
  RUST_LOG=info "$bin" --model-dir "$model" --ort-lib "$ort_lib" --insecure-dev --port "$port" $flags \
    >"$LOGS/runner.log" 2>&1 &
  RUNNER_PID=$!
  local ready=""
  for _ in $(seq 1 900); do
    ready="$("$venv/bin/python" -c "import httpx, sys; r = httpx.get('http://127.0.0.1:$port/ready', timeout=1); print(r.text); sys.exit(r.status_code != 200)" 2>/dev/null)" && break
    ready=""
    kill -0 "$RUNNER_PID" 2>/dev/null || { cat "$LOGS/runner.log" >&2; fail "the runner exited (log above)"; }
    sleep 0.2
  done
  [ -n "$ready" ] || { cat "$LOGS/runner.log" >&2; fail "the runner did not become ready"; }
  echo "$ready" | grep -q '"cuda"' || { cat "$LOGS/runner.log" >&2; fail "the runner is not on CUDA: $ready"; }
  log "ready: $ready"

  local notes
  notes="- GPU: $gpus (\`nvidia-smi\`).
- Runner: \`infergate-runner\` release build with \`--features cuda\`, \`$flags\`; ONNX Runtime
  $ORT_GPU_VERSION GPU (\`onnxruntime-gpu[cuda,cudnn]==$ORT_GPU_VERSION\`, CUDA 13) CUDA execution provider,
  registered strictly (\`/ready\`: device cuda).
- Model: the converted SmolLM2-135M-Instruct ONNX folder (\`$(basename "$model")\`).
- Batch-1 decode ms/token: the \`decode ms/token p50\` column at 1 stream."
  log "load: streams ${GPU_BENCH_STREAMS:-1,8,32,64}"
  "$venv/bin/python" bench/runner/load.py \
    --server runner "http://127.0.0.1:$port" "$RUNNER_PID" \
    --streams "${GPU_BENCH_STREAMS:-1,8,32,64}" --duration "${GPU_BENCH_DURATION:-10}" \
    --max-tokens "${GPU_BENCH_MAX_TOKENS:-64}" \
    --title "Native runner on the GPU (SmolLM2-135M-Instruct, CUDA execution provider)" \
    --generated-by "bench/runner/gpu.sh run" --notes "$notes" --out bench/results/runner-gpu.md
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  run) shift; run "$@" ;;
  *) usage ;;
esac
