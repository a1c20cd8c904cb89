"""``python -m hooked_run '{"fail": [2], "sleep": 1}' ARGS...``: ``search.run`` with a ``TrialHook``."""

from __future__ import annotations

import functools
import json
import sys

from trial_hooks import TrialHook

from search import run
from search.cli_errors import run_cli
from search.hooks import Hooks


def hooks_from(spec: dict) -> Hooks:
    return Hooks(before_trial=TrialHook(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}))


if __name__ == "__main__":
    run_cli(functools.partial(run.main, hooks=hooks_from(json.loads(sys.argv[1]))), sys.argv[2:], prog="search.run")
