#!/usr/bin/env bash
# Creates .venv and installs the project with the pinned versions of constraints.txt.
# Idempotent: a second call only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
