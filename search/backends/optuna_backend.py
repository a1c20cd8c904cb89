"""The Optuna backend: ask/tell loop over one study, in one or several local processes.

Every worker runs the same loop on the shared storage: take a machine-local lock on the
run folder, count the trials that count towards the budget (``search.study.budget_used``),
``study.ask()`` if there is room, release the lock, evaluate with
``search.objective.evaluate_arch`` (the shared, engine-free trial), tell the study
(``search.trials``). The lock makes the budget exact across local workers (no trial created
beyond it); the storage (Optuna's journal file by default) makes creation and updates safe
across processes, so no trial is lost or duplicated. Latency measurements never overlap:
``evaluate_arch`` measures through ``evaluators.latency``, which holds the machine-wide lock.

Ctrl-C: SIGINT interrupts an evaluation (the trial is told FAIL with ``interrupted=True``, so
it does not count towards the budget, and queued again) but never a storage write; the loop
then stops. With ``--workers N`` the parent forwards it to the workers
(``search.backends.optuna_workers``). After a SIGKILL, ``search.study.recover_stale`` marks the
dead process's RUNNING trials FAIL and enqueues their parameters again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import optuna

from ..config import RunConfig
from ..hooks import NO_HOOKS, Hooks
from ..interrupts import Interrupts
from ..study import load_study
from ..trials import progress_line, trial_line
from .optuna_loop import run_trial, worker_loop

__all__ = ["run_trial", "worker_loop", "run_search"]


def run_search(run_dir: Path, config: RunConfig, storage: Any, deadline: float | None,
               printer: Callable[[str], None] = print, hooks: Hooks = NO_HOOKS) -> bool:
    """Run the search with ``config.workers`` processes; returns False if interrupted."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    interrupts = Interrupts()

    def line(study: optuna.Study) -> str:
        return progress_line(study, config.objectives, config.total_trials, config.workers, deadline, config.proxy)

    with interrupts.installed():
        if config.workers == 1:
            def on_trial(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
                printer(trial_line(t))
                printer(line(study))

            worker_loop(run_dir, config, storage, 0, deadline, on_trial, interrupts, hooks)
            return not interrupts.stop
        from .optuna_workers import run_workers

        study = load_study(storage, config.study_name)
        return run_workers(run_dir, config, deadline, interrupts, hooks, lambda: printer(line(study)),
                           lambda: sum(t.state.is_finished() for t in study.get_trials(deepcopy=False)))
