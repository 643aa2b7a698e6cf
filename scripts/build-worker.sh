#!/usr/bin/env bash
# Build the Workers bundle into build/ with pinned, locally provided tools
# (worker-build would otherwise download wasm-bindgen, wasm-opt and esbuild).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
export WASM_BINDGEN_BIN="$(WASM_BINDGEN_BIN_PATH)"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
for b in "$WORKER_BUILD_BIN" "$WASM_BINDGEN_BIN" "$WASM_OPT_BIN" "$ESBUILD_BIN"; do
  [ -x "$b" ] || { echo "missing tool $b; run scripts/setup.sh" >&2; exit 1; }
done
log "worker-build --release"
# A failed worker-build leaves the previous build/ behind, so remove it
# first: a stale bundle must never pass the tests.
rm -rf build
"$WORKER_BUILD_BIN" --release
[ -f build/index.js ] || { echo "worker-build produced no build/index.js" >&2; exit 1; }
WASM="$(ls build/*.wasm build/**/*.wasm 2>/dev/null | head -1 || true)"
if [ -n "$WASM" ]; then
  # The release profile keeps symbols so wasm-bindgen can read the
  # target_features section; drop the name/debug sections now (~140 KB),
  # unless a profile wants function names (KEEP_NAMES=1).
  if [ "${KEEP_NAMES:-0}" != 1 ]; then
    "$WASM_OPT_BIN" "$WASM" --strip-debug --strip-producers -o "$WASM.tmp" && mv "$WASM.tmp" "$WASM"
  fi
  RAW=$(stat -c %s "$WASM"); GZ=$(gzip -9 -c "$WASM" | wc -c)
  log "worker wasm: $WASM raw=${RAW}B gzip-9=${GZ}B"
fi
