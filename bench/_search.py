"""Shared by the search benchmarks: run ``search.run`` in-process and read its study back."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_search(args: list[str], quiet: bool = True) -> tuple[Path, float]:
    """Run ``search.run`` with ``args``; returns (run folder, wall seconds of main())."""
    from search.run import main

    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        code = main(args)
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"search.run {' '.join(args)} exited {code}:\n{out.getvalue()}")
    i = args.index("--out")
    return Path(args[i + 1]) / args[args.index("--name") + 1], wall


def load(run_dir: Path) -> tuple[Any, dict]:
    from search.runfolder import load_run

    _, study, config = load_run(run_dir)
    return study, config
