#!/usr/bin/env bash
# Build the pass-through Spin component that `make bench` compares the
# infergate component against (bench/passthrough-spin), with the same
# profile, into target/wasm32-wasip2/release/infergate_passthrough_spin.wasm
# (the `source` in bench/passthrough-spin/spin.toml). It shares target/ with
# the workspace, so spin-sdk is compiled once for both.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
log "cargo build (bench/passthrough-spin) --target wasm32-wasip2 --release"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" CARGO_PROFILE_RELEASE_STRIP=true \
  cargo build --manifest-path bench/passthrough-spin/Cargo.toml --target wasm32-wasip2 --release --locked
