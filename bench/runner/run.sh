#!/usr/bin/env bash
# Runner benchmark, one command (`make bench-runner`): on SmolLM2-135M-Instruct,
#   - the native runner (release build, continuous batching) on the converted
#     ONNX folder ($INFERGATE_CHAT_MODEL_DIR),
#   - llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on the
#     original Q4_1 GGUF ($INFERGATE_SMOLLM2_GGUF),
#   - the FastAPI + onnxruntime baseline (bench/runner/baseline_server.py,
#     naive per-request decode) on the same ONNX folder,
# at 1, 4 and 16 concurrent streams: tokens/s, TTFT p50/p99 and RSS per open
# stream, with runner/llama.cpp and runner/FastAPI ratios. Writes
# bench/results/runner.md. Takes about 5 minutes once built.
#
# Knobs: BENCH_THREADS (compute threads of every server, default 2),
# BENCH_DURATION (s per level and server, default 6), BENCH_STREAMS (default
# 1,4,16), BENCH_MAX_TOKENS (default 64), BENCH_PORT_BASE (default 18090).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
bash scripts/setup-runner.sh
source scripts/runner-env.sh

fail() { echo "bench-runner: $*" >&2; exit 1; }
[ -n "${INFERGATE_CHAT_MODEL_DIR:-}" ] && [ -f "$INFERGATE_CHAT_MODEL_DIR/model.onnx" ] ||
  fail "INFERGATE_CHAT_MODEL_DIR (${INFERGATE_CHAT_MODEL_DIR:-unset}) has no model.onnx: run make setup"
[ -n "${INFERGATE_SMOLLM2_GGUF:-}" ] && [ -f "$INFERGATE_SMOLLM2_GGUF" ] ||
  fail "INFERGATE_SMOLLM2_GGUF (${INFERGATE_SMOLLM2_GGUF:-unset}) is not a file: run make setup"
[ -x "$INFERGATE_LLAMA_PYTHON" ] || fail "INFERGATE_LLAMA_PYTHON ($INFERGATE_LLAMA_PYTHON) is missing: run make setup"

THREADS="${BENCH_THREADS:-2}"
PORT="${BENCH_PORT_BASE:-18090}"
RUNNER_PORT="$PORT" BASELINE_PORT="$((PORT + 1))" LLAMA_PORT="$((PORT + 2))"
RUNNER_FLAGS="--intra-threads $THREADS --max-batch-size 32"
# llama-cpp-python's server runs one request at a time (a global lock around the
# model; it has no parallel slots or batching across requests). Its best setting
# for concurrent clients is --interrupt_requests False: by default a waiting
# request cuts the stream in progress short. n_threads_batch covers the prompt.
LLAMA_FLAGS="--n_threads $THREADS --n_threads_batch $THREADS --n_ctx 2048 --interrupt_requests False"

echo "==> cargo build --release -p infergate-runner" >&2
cargo build --release --quiet -p infergate-runner
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/infergate-runner"

LOGS="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$LOGS"
}
trap cleanup EXIT

wait_http() { # url log pid
  for _ in $(seq 1 600); do
    if "$INFERGATE_PYTHON" -c "import sys, httpx; sys.exit(0 if httpx.get('$1', timeout=1).status_code == 200 else 1)" 2>/dev/null; then
      return 0
    fi
    kill -0 "$3" 2>/dev/null || { echo "server exited; log:" >&2; cat "$2" >&2; exit 1; }
    sleep 0.2
  done
  echo "timed out waiting for $1; log:" >&2
  cat "$2" >&2
  exit 1
}

# Started one after the other, so that no load competes with another's start-up.
echo "==> runner on :$RUNNER_PORT ($RUNNER_FLAGS)" >&2
RUST_LOG=warn "$BIN" --model-dir "$INFERGATE_CHAT_MODEL_DIR" --insecure-dev --port "$RUNNER_PORT" $RUNNER_FLAGS \
  >"$LOGS/runner.log" 2>&1 &
RUNNER_PID=$!
PIDS+=("$RUNNER_PID")
wait_http "http://127.0.0.1:$RUNNER_PORT/ready" "$LOGS/runner.log" "$RUNNER_PID"

echo "==> llama.cpp server on :$LLAMA_PORT ($LLAMA_FLAGS)" >&2
"$INFERGATE_LLAMA_PYTHON" -m llama_cpp.server --model "$INFERGATE_SMOLLM2_GGUF" --model_alias smollm2-135m-instruct-q4_1 \
  --host 127.0.0.1 --port "$LLAMA_PORT" $LLAMA_FLAGS >"$LOGS/llama.log" 2>&1 &
LLAMA_PID=$!
PIDS+=("$LLAMA_PID")
wait_http "http://127.0.0.1:$LLAMA_PORT/v1/models" "$LOGS/llama.log" "$LLAMA_PID"

echo "==> FastAPI baseline on :$BASELINE_PORT (intra-op threads $THREADS)" >&2
"$INFERGATE_PYTHON" bench/runner/baseline_server.py --model-dir "$INFERGATE_CHAT_MODEL_DIR" \
  --port "$BASELINE_PORT" --intra-threads "$THREADS" >"$LOGS/baseline.log" 2>&1 &
BASELINE_PID=$!
PIDS+=("$BASELINE_PID")
wait_http "http://127.0.0.1:$BASELINE_PORT/health" "$LOGS/baseline.log" "$BASELINE_PID"

LLAMA_VERSION="$("$INFERGATE_LLAMA_PYTHON" -c 'import llama_cpp; print(llama_cpp.__version__)')"
NOTES="$("$INFERGATE_PYTHON" - "$INFERGATE_CHAT_MODEL_DIR" "$INFERGATE_SMOLLM2_GGUF" <<'PY'
import json, os, sys
import onnx
d, gguf = sys.argv[1:]
m = onnx.load(os.path.join(d, "model.onnx"), load_external_data=False)
ops = sorted({n.op_type for n in m.graph.node if n.domain == "com.microsoft"})
size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("model.onnx"))
weights = "int4 MatMulNBits" if "MatMulNBits" in ops else "fp32 (the GGUF's weights dequantized)"
print(f"- ONNX folder: `{os.path.basename(os.path.normpath(d))}`, model.onnx {size / 2**20:.0f} MiB, weights {weights}"
      + (f", contrib ops {', '.join(ops)}" if ops else "") + ".")
print(f"- GGUF: `{os.path.basename(gguf)}` ({os.path.getsize(gguf) / 2**20:.0f} MiB; Q4_1 blocks, Q8_0 embedding/head).")
PY
)"
NOTES+="
- Every server uses **$THREADS compute thread(s)** (\`BENCH_THREADS\`): ONNX Runtime intra-op threads for the
  runner and FastAPI, \`n_threads\`/\`n_threads_batch\` for llama.cpp.
- Runner: \`infergate-runner\` release build, ONNX Runtime 1.31.1 CPU, continuous batching
  (\`$RUNNER_FLAGS\`).
- llama.cpp: \`llama-cpp-python[server]==$LLAMA_VERSION\` (portable CPU build, AVX2 without AVX-512 kernels:
  \`$LLAMA_CMAKE_ARGS\`),
  \`python -m llama_cpp.server $LLAMA_FLAGS\`. This server has no parallel slots: requests take turns
  behind one lock, so concurrent streams queue; \`--interrupt_requests False\` keeps a waiting request
  from cutting the running stream short (the default would).
- FastAPI: \`bench/runner/baseline_server.py\`, FastAPI + uvicorn + onnxruntime-python 1.31.1, the same
  greedy KV-cache decode, naive per-request generation in the thread pool (no batching), one worker,
  $THREADS intra-op threads.
- Greedy texts: the two ONNX servers run the same fp32 graph and should agree; llama.cpp quantizes
  activations to Q8 in its Q4_1/Q8_0 dot products, so near-tied argmaxes can flip and its continuations
  may differ (tests/oracle/test_llamacpp_agreement.py measures this)."

if [ "$(nproc)" -le "$THREADS" ]; then
  NOTES+="
- **Oversubscribed:** $THREADS compute threads per server on $(nproc) cores leave no core for the load
  generator. Spinning thread pools suffer when a thread is preempted, llama.cpp's most (it synchronizes
  its threads at every graph node): expect noisy numbers, and compare with \`BENCH_THREADS=$(( $(nproc) - 1 > 0 ? $(nproc) - 1 : 1 ))\`."
fi

echo "==> load (every server: $THREADS threads)" >&2
"$INFERGATE_PYTHON" bench/runner/load.py \
  --server runner "http://127.0.0.1:$RUNNER_PORT" "$RUNNER_PID" \
  --server llama.cpp "http://127.0.0.1:$LLAMA_PORT" "$LLAMA_PID" \
  --server FastAPI "http://127.0.0.1:$BASELINE_PORT" "$BASELINE_PID" \
  --streams "${BENCH_STREAMS:-1,4,16}" --duration "${BENCH_DURATION:-6}" \
  --max-tokens "${BENCH_MAX_TOKENS:-64}" --notes "$NOTES" \
  --out bench/results/runner.md
