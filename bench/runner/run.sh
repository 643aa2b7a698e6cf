#!/usr/bin/env bash
# Runner benchmark, one command: the native runner (release build) against a
# Python FastAPI + onnxruntime baseline, at 1, 4 and 16 concurrent streams.
# Writes bench/results/runner.md. Needs scripts/setup-runner.sh (run here if
# anything is missing). Environment knobs: BENCH_DURATION (s per level,
# default 6), BENCH_STREAMS (default 1,4,16), BENCH_MAX_TOKENS (default 64),
# BENCH_INTRA_THREADS (default 1, used by both servers).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
bash scripts/setup-runner.sh
source scripts/runner-env.sh

INTRA="${BENCH_INTRA_THREADS:-1}"
RUNNER_PORT="${BENCH_RUNNER_PORT:-18090}"
BASELINE_PORT="${BENCH_BASELINE_PORT:-18091}"
RUNNER_FLAGS="--intra-threads $INTRA --max-batch-size 32"

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

wait_http() { # url log
  for _ in $(seq 1 300); do
    if "$INFERGATE_PYTHON" -c "import sys, httpx; sys.exit(0 if httpx.get('$1', timeout=1).status_code == 200 else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "timed out waiting for $1; log:" >&2
  cat "$2" >&2
  exit 1
}

echo "==> starting the runner on :$RUNNER_PORT ($RUNNER_FLAGS)" >&2
RUST_LOG=warn "$BIN" --insecure-dev --port "$RUNNER_PORT" $RUNNER_FLAGS >"$LOGS/runner.log" 2>&1 &
PIDS+=($!)
echo "==> starting the baseline on :$BASELINE_PORT (intra-op threads $INTRA)" >&2
"$INFERGATE_PYTHON" bench/runner/baseline_server.py --model-dir "$INFERGATE_MODEL_DIR" \
  --port "$BASELINE_PORT" --intra-threads "$INTRA" >"$LOGS/baseline.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$RUNNER_PORT/ready" "$LOGS/runner.log"
wait_http "http://127.0.0.1:$BASELINE_PORT/health" "$LOGS/baseline.log"

echo "==> load (same intra-op thread count for both: $INTRA)" >&2
"$INFERGATE_PYTHON" bench/runner/load.py \
  --runner "http://127.0.0.1:$RUNNER_PORT" --baseline "http://127.0.0.1:$BASELINE_PORT" \
  --streams "${BENCH_STREAMS:-1,4,16}" --duration "${BENCH_DURATION:-6}" \
  --max-tokens "${BENCH_MAX_TOKENS:-64}" --intra-threads "$INTRA" \
  --runner-flags "$RUNNER_FLAGS" --out bench/results/runner.md
