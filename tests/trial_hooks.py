"""Test-only hooks injected into ``search.run.main(argv, hooks=...)`` (never read from the environment).

``TrialHook`` is picklable (a frozen dataclass in an importable module), so it reaches spawned
``--workers`` processes and Ray trials; ``python -m hooked_run JSON ARGS...`` is the one
entry point that runs ``search.run`` with it in a subprocess (``search_cli.run(..., hooks=)``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrialHook:
    """At the start of each evaluation: sleep; raise for trials in ``fail``; kill the worker
    process the first time it runs a trial in ``die`` (a marker file in ``die_dir``)."""

    fail: tuple[int, ...] = ()
    sleep: float = 0.0
    die: tuple[int, ...] = ()
    die_dir: str | None = None

    def __call__(self, number: int) -> None:
        if self.sleep:
            time.sleep(self.sleep)
        if number in self.die and self.die_dir:
            marker = Path(self.die_dir) / f"died-{number}"
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
        if number in self.fail:
            raise RuntimeError(f"deliberate failure of trial {number} (test hook)")
