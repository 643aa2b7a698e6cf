#!/usr/bin/env bash
# Build the Spin component (wasm32-wasip2, spin-sdk) to
# target/wasm32-wasip2/release/infergate.wasm, the `source` in spin.toml, and
# print its raw and gzip -9 sizes.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
log "cargo build --target wasm32-wasip2 --release --features spin"
# The shared release profile keeps symbols because wasm-bindgen needs them
# for the Workers build. The component needs none: stripping takes it from
# about 3.5 MB to under 1 MB. (wasm32-wasip2 links straight to a component;
# no adapter or post-processing step.)
# Optimized for speed, unlike the Workers build: on Spin the component's own
# code is the host's whole per-request cost above the floor, and opt-level 3
# cut the host's CPU per request at one connection by about 8 % and p50 from
# 0.63 to 0.60 ms (`BENCH_ONLY=overhead BENCH_TARGETS=spin`), for about
# 105 KB more gzip. Workers, where a size budget applies, keep "s": there it
# bought no measurable speed.
CARGO_PROFILE_RELEASE_OPT_LEVEL=3 CARGO_PROFILE_RELEASE_STRIP=true cargo build --target wasm32-wasip2 --release --features spin --lib
BUILT="${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip2/release/infergate.wasm"
OUT="$ROOT/target/wasm32-wasip2/release/infergate.wasm"
[ -f "$BUILT" ] || { echo "cargo produced no $BUILT" >&2; exit 1; }
if [ "$(realpath "$BUILT")" != "$(realpath -m "$OUT")" ]; then
  mkdir -p "$(dirname "$OUT")" && cp "$BUILT" "$OUT"
fi
RAW=$(stat -c %s "$OUT"); GZ=$(gzip -9 -c "$OUT" | wc -c)
log "spin component: $OUT raw=${RAW}B gzip-9=${GZ}B"
