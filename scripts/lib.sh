# Shared helpers for the project's scripts. Sourced, not executed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Version-keyed caches live outside the clone: CI clones afresh every run,
# and rebuilding worker-build + wasm-bindgen-cli costs ~12 minutes.
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/infergate"
TOOLS="$CACHE/tools"

WORKER_BUILD_VERSION="0.8.7"
wasm_bindgen_version() {
  # The CLI must equal the library version in Cargo.lock, byte for byte.
  awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' "$ROOT/Cargo.lock"
}
WORKER_BUILD_BIN="$TOOLS/worker-build-$WORKER_BUILD_VERSION/bin/worker-build"
WASM_BINDGEN_BIN_PATH() { echo "$TOOLS/wasm-bindgen-cli-$(wasm_bindgen_version)/bin/wasm-bindgen"; }

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
