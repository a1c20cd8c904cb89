"""Shared by the search benchmarks: run a search in-process and read its figures back.

``run_search`` runs ``search.run`` (for the samplers its ``--sampler`` accepts); ``run_study``
drives an in-memory Optuna study with ``search.sampling.make_sampler`` and the product's own
trial (``run_trial``: the same objective, dedup and front pruning) and the product's latency
price (``search.study.settings_price``), so that any sampler of
``search.sampling`` can be compared while the command-line wiring catches up.
"""

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


def run_study(sampler: str, cli: list[str], trials: int, baselines: bool = True,
              printer: Any = None, seconds: float | None = None) -> dict[str, Any]:
    """Search ``trials`` trials (plus the baselines) with ``make_sampler(sampler, ...)``; with
    ``seconds``, no trial starts once that much wall time has passed (baselines included).

    ``cli``: ``search.run`` options (``--space``, ``--data``, ``--seed``, ...), parsed by its own
    parser, so every setting left out is the product's default (data, latency shape, runtime).
    Returns {"points": [(accuracy, latency)] of completed trials, "base": {name: (acc, lat)},
    "params": [params of every trial, in order], "wall": seconds, "n": completed count}.
    """
    import optuna
    from optuna.trial import TrialState

    from search.backends.optuna_loop import run_trial
    from search.options import build_parser, validate
    from search.run import trial_setup
    from search.sampling import make_sampler
    from search.study import enqueue_baselines, settings_price

    args = build_parser().parse_args(cli)
    validate(args)
    _, settings, space = trial_setup(args)
    study = optuna.create_study(directions=settings.directions,
                                sampler=make_sampler(sampler, seed=settings.seed, n_trials=trials, space=space,
                                                     price=settings_price(settings)))
    study.set_user_attr("objectives", list(settings.objectives))
    n_base = len(enqueue_baselines(study, space)) if baselines else 0
    start = time.perf_counter()
    for _ in range(trials + n_base):
        if seconds is not None and time.perf_counter() - start >= seconds:
            break
        trial = study.ask()
        state = run_trial(study, trial, space, settings)
        if printer is not None:
            printer(f"  {sampler} trial {trial.number}: {state.name.lower()}")
    wall = time.perf_counter() - start
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    base = {t.user_attrs["baseline"]: tuple(t.values) for t in done if t.user_attrs.get("baseline")}
    return {"points": [tuple(t.values) for t in done], "base": base, "wall": wall, "n": len(done),
            "params": [dict(t.params) for t in study.trials if not t.user_attrs.get("baseline")],
            "states": [t.state.name for t in study.trials],
            "reasons": [str(t.user_attrs.get("prune_reason", "")) for t in study.trials],
            "latency": [t.user_attrs.get("latency_ms") for t in study.trials]}
