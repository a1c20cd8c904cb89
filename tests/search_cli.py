"""Run the search commands as subprocesses (shared by the search tests).

``TINY``: the smallest budget that still runs every stage of a trial (1 epoch on 120 digits,
a 0.05 s latency budget; no confirmation round: ``tests/test_confirm.py`` runs it). Every run
gets one torch thread and a per-test latency lock.
``hooks={...}`` runs ``search.run`` through ``tests/hooked_run.py`` with a ``TrialHook``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY = ["--data", "digits", "--epochs", "1", "--data-limit", "120", "--latency-seconds", "0.05", "--seed", "0",
        "--confirm-epochs", "0"]


def lock_env(folder: Path) -> dict[str, str]:
    """A latency lock of the test's own (``GROUPNAS_LATENCY_LOCK`` in ``folder``), so that parallel
    test workers do not queue behind one another's measurements."""
    return {"GROUPNAS_LATENCY_LOCK": str(folder / "latency.lock")}


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"}, **extra)
    return e


def _argv(module: str, args: tuple[str, ...], hooks: dict[str, Any] | None) -> list[str]:
    if hooks is None:
        return [sys.executable, "-m", module, *args]
    assert module == "search.run", "hooks go to search.run only"
    return [sys.executable, "-m", "hooked_run", json.dumps(hooks), *args]


def run(module: str, *args: str, timeout: float = 300, extra_env: dict[str, str] | None = None,
        hooks: dict[str, Any] | None = None) -> subprocess.CompletedProcess:
    """``python -m module args`` in the repository root; output captured as text."""
    return subprocess.run(_argv(module, args, hooks), cwd=ROOT, env=env(**(extra_env or {})),
                          capture_output=True, text=True, timeout=timeout)


def popen(*args: str, extra_env: dict[str, str] | None = None, hooks: dict[str, Any] | None = None,
          **kw: Any) -> subprocess.Popen:
    """``python -m search.run args`` started in the background (stdout and stderr merged)."""
    return subprocess.Popen(_argv("search.run", args, hooks), cwd=ROOT, env=env(**(extra_env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
