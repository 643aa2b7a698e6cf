#!/usr/bin/env bash
# Schemathesis against the edge's /openapi.json (tests/schemathesis/run.mjs):
# the built worker in workerd, or INFERGATE_TARGET=spin for the Spin build.
# Schemathesis lives in its own venv, cached outside the clone and keyed by
# tests/schemathesis/requirements.txt.
#   SCHEMATHESIS_MAX_EXAMPLES (default 100) cases per operation.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
REQ=tests/schemathesis/requirements.txt
VENV="$CACHE/schemathesis-venv-$(sha256sum "$REQ" | cut -c1-12)"
if [ ! -x "$VENV/bin/schemathesis" ] || [ ! -f "$VENV/.complete" ]; then
  log "schemathesis venv -> $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  touch "$VENV/.complete"
fi
SCHEMATHESIS_BIN="$VENV/bin/schemathesis" SCHEMATHESIS_MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
  exec node tests/schemathesis/run.mjs
