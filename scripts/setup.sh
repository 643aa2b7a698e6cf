#!/usr/bin/env bash
# Install everything the build, the dev stack and the tests need, reusing the
# version-keyed cache outside the clone. Safe to run repeatedly; a warm run
# takes a few seconds.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
mkdir -p "$TOOLS"

log "rust targets"
rustup target add wasm32-unknown-unknown wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown wasm32-wasip2

install_crate() { # name version root binary
  local name="$1" version="$2" root="$3" bin="$4"
  if [ -x "$root/bin/$bin" ] && "$root/bin/$bin" --version 2>/dev/null | grep -q "$version"; then
    return 0
  fi
  log "cargo install $name $version (cached in $root)"
  # No --locked: the registry mirror lacks some locked transitive versions.
  cargo install "$name" --version "$version" --root "$root" --quiet
}
install_crate worker-build "$WORKER_BUILD_VERSION" "$TOOLS/worker-build-$WORKER_BUILD_VERSION" worker-build
WB_VERSION="$(wasm_bindgen_version)"
install_crate wasm-bindgen-cli "$WB_VERSION" "$TOOLS/wasm-bindgen-cli-$WB_VERSION" wasm-bindgen

# npm: reinstall only when the lockfile changed since the last install.
STAMP="node_modules/.infergate-lock.sha256"
LOCK_SUM="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$LOCK_SUM" ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --cache "$CACHE/npm" >/dev/null
  echo "$LOCK_SUM" > "$STAMP"
fi

# Debian packages: chromium for the /docs browser test
# (tests/e2e/docs.test.mjs, driven by playwright-core) and wrk for
# `make bench`. Installed only when missing, and only as root with apt
# (CI); elsewhere this says what to install and the browser test skips.
apt_install_missing() { # command package...
  local cmd="$1"
  shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install $*"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "note: $cmd is not installed; install the Debian package(s): $*" >&2
  fi
}
apt_install_missing chromium chromium fonts-liberation
apt_install_missing wrk wrk
