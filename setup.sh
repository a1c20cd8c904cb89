#!/usr/bin/env bash
# Creates .venv and installs the project with the pinned versions of constraints.txt, then makes
# Fashion-MNIST available (the default data of search.run). Idempotent: a second call only checks.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The installer is uv (pinned in constraints.txt): it resolves and unpacks the ~1.7 GB of packages
# in parallel (about 10 s here, against about 70 s for pip). It is told where pip finds local
# wheels (pip's find-links, which hold the CPU build of torch), since uv does not read pip's
# config. Where uv cannot be had or fails, pip installs the same pins.
find_links() {
  { .venv/bin/python -m pip config list 2>/dev/null | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p"
    printf '%s\n' "${PIP_FIND_LINKS:-}"; } | tr ' ' '\n' | sort -u | while read -r d; do
    [ -n "$d" ] && [ -d "$d" ] && printf -- '--find-links\n%s\n' "$d"
  done
}
install_with_uv() {
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt uv >/dev/null 2>&1 \
    || return 1
  mapfile -t links < <(find_links)
  .venv/bin/uv pip install -q --python .venv/bin/python "${links[@]}" -c constraints.txt -e ".[dev]"
}
if ! install_with_uv; then
  echo "setup: uv was not available or failed; installing with pip (slower)" >&2
  .venv/bin/python -m pip install -q --no-compile --disable-pip-version-check -c constraints.txt -e ".[dev]"
fi
# Byte-compile what the product and its tests import, once per set of pins (the stamp names
# them): this machine may set PYTHONDONTWRITEBYTECODE, and then every process would compile
# torch, ray and optuna again (about 5 s each). Importing the entry points with writing allowed
# compiles exactly the modules they load (about 4,000 of the 17,000 installed), in two processes
# side by side; compiling everything took 58 s on 2 cores, this about 30 s. A module left out
# is compiled in memory when imported, as without this step.
STAMP=".venv/.compiled-$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)"
warm() {
  env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -c '
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        pass  # a module that fails to import here fails again, with its message, where used
' "$@"
}
if [ ! -f "$STAMP" ]; then
  warm torch torch.onnx torch._dynamo torch.utils.flop_counter onnx onnxruntime ray ray.tune ray.train &
  warm plotly.graph_objs plotly.io pandas scipy.stats scipy.optimize sympy sklearn.datasets \
       matplotlib.pyplot PIL.Image optuna optuna.visualization optuna.visualization.matplotlib \
       sqlalchemy pytest hypothesis xdist &
  wait
  warm search.run search.report search.export search.train
  rm -f .venv/.compiled-* && touch "$STAMP"
fi

# Fashion-MNIST: the Debian package dataset-fashion-mnist holds the four official idx files.
# As root: install it. Otherwise: apt-get download + dpkg -x into the cache folder (no root).
# Neither working is not an error: say what to do, and setup still succeeds.
PKG=dataset-fashion-mnist
DEB_DIR=/usr/share/datasets/fashion-mnist
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/groupnas/fashion-mnist"
have_files() { [ -f "$1/train-images-idx3-ubyte.gz" ] && [ -f "$1/t10k-labels-idx1-ubyte.gz" ]; }
fashion_mnist() {
  if have_files "$DEB_DIR" || have_files "$CACHE"; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if apt-get install -y -q "$PKG" >/dev/null 2>&1 \
       || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$PKG" >/dev/null 2>&1; }; then
      have_files "$DEB_DIR" && { echo "setup: Fashion-MNIST installed ($PKG, $DEB_DIR)"; return 0; }
    fi
  fi
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    if (cd "$tmp" && apt-get download -q "$PKG" >/dev/null 2>&1) && dpkg -x "$tmp"/"$PKG"_*.deb "$tmp/x" 2>/dev/null \
       && have_files "$tmp/x$DEB_DIR"; then
      mkdir -p "$CACHE" && cp "$tmp/x$DEB_DIR"/*-ubyte.gz "$CACHE"/
      rm -rf "$tmp"
      echo "setup: Fashion-MNIST unpacked from $PKG into $CACHE (no root needed)"
      return 0
    fi
    rm -rf "$tmp"
  fi
  return 1
}
if ! fashion_mnist; then
  echo "setup: Fashion-MNIST is not available (needs root for 'apt-get install $PKG', or a working" \
       "'apt-get download $PKG')." >&2
  echo "setup: get the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist into" \
       "$CACHE (or any folder, then pass --data-dir FOLDER), or use --data digits, which needs nothing." >&2
fi
