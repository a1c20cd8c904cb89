"""One worker of the Optuna backend: the ask/evaluate/tell loop (``worker_loop``) and one trial
(``run_trial``); ``optuna_backend`` runs it in this process or ``optuna_workers`` in N processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from .. import optuna_adapter as ota
from ..config import RunConfig
from ..hooks import NO_HOOKS, Hooks
from ..interrupts import Interrupts, file_lock
from ..objective import evaluate_arch
from ..pruning import FrontPruner, Pruned
from ..settings import Settings
from ..study import budget_used, cores_per_worker, load_study, sampler_for, space_of, worker_tag
from ..trials import (
    done_trials,
    front_members,
    previous,
    record_arch,
    tell_complete,
    tell_failed,
    tell_interrupted,
    tell_pruned,
    tell_repeat,
)

__all__ = ["run_trial", "worker_loop"]


def run_trial(study: optuna.Study, trial: optuna.trial.Trial, space: Any, settings: Settings,
              interrupts: Interrupts | None = None, hooks: Hooks = NO_HOOKS) -> TrialState:
    """Evaluate one asked trial and tell the study; returns the state it was told."""
    start = time.perf_counter()
    interrupts = interrupts or Interrupts()
    trial.set_user_attr("worker", worker_tag())
    try:
        arch = space.sample(trial)
        sha = record_arch(trial, space, arch)
        done = done_trials(study)
        prev = previous(done, sha, trial.number)
        with interrupts.interruptible():
            hooks.trial_started(trial.number)
            if prev is None:
                # baselines are always evaluated in full: the front is judged against them
                prune = settings.prune and not trial.user_attrs.get("baseline")
                pruner = FrontPruner(settings.objectives, front_members(done), prune, settings.prune_margin)
                figures = evaluate_arch(arch, settings, report=pruner.report)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        if prev is not None:  # same canonical Arch already evaluated: reuse, do not train again
            return tell_repeat(study, trial, prev)
        return tell_complete(study, trial, figures, settings.objectives)
    except Pruned as p:
        trial.set_user_attr("seconds", time.perf_counter() - start)
        return tell_pruned(study, trial, p.figures, p.reason)
    except KeyboardInterrupt:
        tell_interrupted(study, trial, "interrupted (Ctrl-C); retried on --resume")
        raise
    except Exception as err:  # a trial that raises is recorded as failed; the search goes on
        trial.set_user_attr("seconds", time.perf_counter() - start)
        return tell_failed(study, trial, f"{type(err).__name__}: {err}")


def worker_loop(run_dir: Path, config: RunConfig, storage: Any, worker_index: int = 0,
                deadline: float | None = None,
                on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
                interrupts: Interrupts | None = None, hooks: Hooks = NO_HOOKS) -> int:
    """Ask/evaluate/tell until the budget, the deadline or Ctrl-C; returns trials run here."""
    settings = config.settings.with_train_threads(cores_per_worker(config.workers))
    space = space_of(config)
    study = load_study(storage, config.study_name, sampler_for(config, space, worker_index))
    interrupts = interrupts or Interrupts()
    lock = run_dir / ".ask.lock"
    ran = 0
    while not interrupts.stop:
        if deadline is not None and time.time() >= deadline:
            break
        with file_lock(lock):
            if budget_used(study.get_trials(deepcopy=False)) >= config.total_trials:
                break
            trial = study.ask()
        try:
            run_trial(study, trial, space, settings, interrupts, hooks)
        except KeyboardInterrupt:
            break
        ran += 1
        if on_trial is not None:
            on_trial(study, ota.fresh(study, trial))
    return ran


