#!/usr/bin/env bash
# Fuzz the core with cargo-fuzz (libFuzzer): every target in fuzz/ for
# FUZZ_SECONDS (default 60) each, then print the executions per target.
#   FUZZ_SECONDS=600 scripts/fuzz.sh          longer runs
#   scripts/fuzz.sh sse config                 only these targets
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run;
# reproduce it with `scripts/fuzz.sh --repro <target> <file>`, then add it
# to the core's unit tests as a regression test.
#
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer=address and
# sanitizer-coverage instrumentation). This machine has only stable Rust,
# so the build sets RUSTC_BOOTSTRAP=1, which lets a stable rustc accept
# them. It applies to this build alone: the fuzz/ workspace is separate,
# and nothing else in the project is built this way.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

CARGO_FUZZ_VERSION="0.13.2"
CARGO_FUZZ_ROOT="$TOOLS/cargo-fuzz-$CARGO_FUZZ_VERSION"
if ! "$CARGO_FUZZ_ROOT/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION (cached in $CARGO_FUZZ_ROOT)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$CARGO_FUZZ_ROOT" --quiet
fi
export PATH="$CARGO_FUZZ_ROOT/bin:$PATH"
export RUSTC_BOOTSTRAP=1
# Instrumented builds are slow to make; keep them outside the clone.
FUZZ_TARGET_DIR="$CACHE/fuzz-target"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"

if [ "${1:-}" = "--repro" ]; then
  exec cargo fuzz run --target-dir "$FUZZ_TARGET_DIR" "$2" "$3"
fi

TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS < <(cargo fuzz list)

log "cargo fuzz build (${TARGETS[*]})"
for t in "${TARGETS[@]}"; do
  cargo fuzz build --target-dir "$FUZZ_TARGET_DIR" "$t"
done

declare -A EXECS CRASHED
crashes=0
for t in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  # Seeds are committed; the corpus grows locally (gitignored).
  [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
  log "fuzzing $t for ${SECONDS_PER_TARGET}s"
  out="$(mktemp)"
  set +e
  cargo fuzz run --target-dir "$FUZZ_TARGET_DIR" "$t" "$corpus" -- \
    -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -max_len=8192 "${dict[@]}" >"$out" 2>&1
  rc=$?
  set -e
  EXECS[$t]="$(awk '/stat::number_of_executed_units/ {print $2}' "$out" | tail -1)"
  if [ $rc -ne 0 ]; then
    CRASHED[$t]=1
    crashes=$((crashes + 1))
    tail -60 "$out" >&2
  fi
  rm -f "$out"
done

printf '\n%-20s %15s  %s\n' target executions result
total=0
for t in "${TARGETS[@]}"; do
  n="${EXECS[$t]:-0}"
  total=$((total + n))
  printf '%-20s %15s  %s\n' "$t" "$n" "$([ -n "${CRASHED[$t]:-}" ] && echo "CRASH (fuzz/artifacts/$t)" || echo ok)"
done
printf '%-20s %15s\n' total "$total"
[ "$crashes" -eq 0 ]
