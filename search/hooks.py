"""Hooks that a caller (the tests) injects into a search: ``search.run.main(argv, hooks=...)``.

Production code never looks for hooks anywhere else (no environment variables): the object is
handed down explicitly, pickled into spawned ``--workers`` processes and into Ray trials, so
its callables must be importable module-level objects.

- ``before_trial(number)``: called in the evaluating process at the start of each evaluation,
  inside the interruptible part (a test makes a trial slow, raise, or kill its worker).
- ``worker_init()``: called first in each spawned worker process (e.g. to register a space
  that lives outside ``spaces``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["Hooks", "NO_HOOKS"]


@dataclass(frozen=True)
class Hooks:
    before_trial: Callable[[int], None] | None = None
    worker_init: Callable[[], None] | None = None

    def trial_started(self, number: int) -> None:
        if self.before_trial is not None:
            self.before_trial(number)

    def worker_started(self) -> None:
        if self.worker_init is not None:
            self.worker_init()


NO_HOOKS = Hooks()
