#!/usr/bin/env bash
# Creates .venv and installs the project with the pinned versions of constraints.txt, then makes
# Fashion-MNIST available (the default data of search.run). Idempotent: a second call only checks.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip byte-compiles the ~1.8 GB of packages on one core (about 85 s here); compileall spreads the
# same work over every core (58 s on 2). Files it cannot compile (templates, Python-2 test data in
# some packages) are skipped, as pip skips them.
.venv/bin/python -m pip install -q --no-compile --disable-pip-version-check -c constraints.txt -e ".[dev]"
# Done once per set of pins (the stamp names them), so a second call stays a quick check.
STAMP=".venv/.compiled-$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
  .venv/bin/python -m compileall -j 0 -q .venv/lib > /dev/null 2>&1 || true
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
