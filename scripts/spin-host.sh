#!/usr/bin/env bash
# The wasmtime test host that serves the Spin component (tests/spin-host).
# Wasmtime takes 4-9 minutes to build cold on 2 cores, so the host is its own
# workspace and keeps its target dir in the cache outside the clone; a warm
# rebuild takes seconds.
#
#   scripts/spin-host.sh              build, print the binary's path
#   scripts/spin-host.sh test         the host's unit tests
#   scripts/spin-host.sh lint         rustfmt --check and clippy -D warnings
#   scripts/spin-host.sh run FLAGS    build, then run the host with FLAGS
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
export CARGO_TARGET_DIR="$CACHE/spin-host-target"
MANIFEST=tests/spin-host/Cargo.toml
BIN="$CARGO_TARGET_DIR/release/infergate-spin-host"
case "${1:-build}" in
  build)
    log "building the Spin test host (target dir $CARGO_TARGET_DIR)"
    cargo build --release --manifest-path "$MANIFEST" >&2
    echo "$BIN"
    ;;
  test)
    cargo test --release --manifest-path "$MANIFEST"
    ;;
  lint)
    cargo fmt --manifest-path "$MANIFEST" -- --check
    cargo clippy --release --manifest-path "$MANIFEST" --all-targets -- -D warnings
    ;;
  run)
    shift
    cargo build --release --manifest-path "$MANIFEST" >&2
    exec "$BIN" "$@"
    ;;
  *)
    echo "usage: $0 [build|test|lint|run FLAGS]" >&2
    exit 2
    ;;
esac
