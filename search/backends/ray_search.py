"""Driver side of the Ray backend: ``StudySearch``, Ray's ``OptunaSearch`` over the run's study.

The space is the define-by-run ``space.sample(trial)``; the baselines are the study's enqueued
trials (``search.study.enqueue_baselines``), which ``study.ask()`` hands out first. On
``suggest`` it records the Arch (``search.trials.record_arch``) and the driver's ``host:pid``,
detects an Arch already evaluated (``repeat_of``: not trained again) and hands the trainable
the completed trials for ``search.pruning.FrontPruner``. On ``on_trial_complete`` it tells the
study COMPLETE, PRUNED (also a trial cut by ASHA) or FAIL through ``search.trials``; the study
is the single source of truth, ``search.report`` and ``search.export`` read it unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .. import optuna_adapter as ota
from ..config import RunConfig
from ..objectives import OBJECTIVES
from ..ray_adapter import StudyOptunaSearch
from ..study import sampler_for, worker_tag
from ..trials import (
    done_trials,
    front_members,
    previous,
    record_arch,
    set_figures,
    tell_complete,
    tell_failed,
    tell_interrupted,
    tell_pruned,
    tell_repeat,
)
from .ray_trainable import META

__all__ = ["StudySearch"]


class _DefineByRun:
    """Picklable define-by-run space for ``OptunaSearch``: ``space.sample(trial)``, no constants."""

    def __init__(self, space: Any) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        self.space.sample(trial)
        return None


class StudySearch(StudyOptunaSearch):
    """``OptunaSearch`` on the run's study that records what ``search.runfolder`` reads."""

    def __init__(self, space: Any, config: RunConfig, storage: Any, seed_offset: int = 0) -> None:
        self.objectives = list(config.objectives)
        super().__init__(space=_DefineByRun(space), metric=[OBJECTIVES[o].key for o in self.objectives],
                         mode=[OBJECTIVES[o].mode for o in self.objectives],
                         sampler=sampler_for(config, space, worker_id=seed_offset), storage=storage,
                         study_name=config.study_name)
        self.space = space
        self.prune = bool(config.settings.prune)
        self.worker = worker_tag()
        self.numbers: dict[str, int] = {}          # Tune trial id -> Optuna trial number
        self._errored: dict[str, Any] = {}         # Tune trial id -> Optuna trial, told on on_trial_error

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        error = None
        try:
            config = super().suggest(trial_id)
        except Exception as err:  # the space raised while sampling: fail this trial, keep going
            config, error = {}, f"sampling failed: {type(err).__name__}: {err}"[:2000]
        if config is None:
            return None
        ot_trial = self.optuna_trial(trial_id)
        self.numbers[trial_id] = ot_trial.number
        ot_trial.set_user_attr("worker", self.worker)
        meta: dict[str, Any] = {"number": ot_trial.number}
        if error is None:
            try:
                sha = record_arch(ot_trial, self.space, self.space.arch_from_params(dict(ot_trial.params)))
                done = done_trials(self.study)
                prev = previous(done, sha, ot_trial.number)
                if prev is not None:
                    meta["repeat_of"] = prev.number
                elif ot_trial.user_attrs.get("baseline"):
                    meta["baseline"] = True  # evaluated in full: the front is judged against it
                elif self.prune:
                    meta["members"] = [[m.number, m.figures] for m in front_members(done)]  # all: their gains count
            except Exception as err:
                error = f"{type(err).__name__}: {err}"[:2000]
        if error is not None:
            meta["error"] = error
        return {**config, META: meta}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        return None  # multi-objective: Optuna takes no intermediate values

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if self.is_done(trial_id) or not self.has_trial(trial_id):
            return
        ot_trial = self.optuna_trial(trial_id)
        self.mark_done(trial_id)
        if error:  # the worker died (after Tune's retries): told FAIL once the reason is known
            self._errored[trial_id] = ot_trial
            return
        self._tell(ot_trial, result or {})

    def _tell(self, ot_trial: optuna.trial.Trial, result: dict[str, Any]) -> None:
        figures = json.loads(result.get("figures") or "{}")
        for key in ("seconds", "worker"):
            if result.get(key) is not None:
                ot_trial.set_user_attr(key, result[key])
        status = result.get("status") if result.get("final") else "stopped"
        if status == "complete":
            tell_complete(self.study, ot_trial, figures, self.objectives)
        elif status == "repeat":
            sha = ota.fresh(self.study, ot_trial).user_attrs.get("arch_sha1", "")
            prev = previous(done_trials(self.study), sha, ot_trial.number)
            if prev is None:
                tell_failed(self.study, ot_trial, "repeat of a trial that is no longer in the study")
            else:
                tell_repeat(self.study, ot_trial, prev)
        elif status in ("pruned", "stopped"):
            reason = result.get("reason") or ""
            if status == "stopped":
                reason = (f"stopped by the ASHA scheduler at epoch {result.get('epoch')}: accuracy "
                          f"{result.get('accuracy', math.nan):.4f} below its rung's cutoff")
            tell_pruned(self.study, ot_trial, figures, reason)
        else:
            set_figures(ot_trial, figures)
            tell_failed(self.study, ot_trial, result.get("reason") or "the trial reported no final result")

    def fail_errored(self, trial_id: str, reason: str) -> None:
        """Tell FAIL for a trial whose worker died (called by the backend's ``on_trial_error``)."""
        ot_trial = self._errored.pop(trial_id, None)
        if ot_trial is not None:
            tell_failed(self.study, ot_trial, reason)

    def close(self, interrupted: bool) -> list[int]:
        """After ``fit``: fail what is left; an interrupted trial is queued again for ``--resume``."""
        for trial_id in list(self._errored):
            self.fail_errored(trial_id, "Ray trial errored (its worker died); see the Ray results folder")
        left = []
        for trial_id, ot_trial in self.optuna_trials():
            if self.is_done(trial_id) or ota.fresh(self.study, ot_trial).state != TrialState.RUNNING:
                continue
            tell_interrupted(self.study, ot_trial, "interrupted before it finished; retried on --resume")
            left.append(ot_trial.number)
        return left

    def save(self, checkpoint_path: str) -> None:
        # The Optuna study is the state; Tune's experiment checkpoint keeps only the id map.
        Path(checkpoint_path).write_text(json.dumps(self.numbers))

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("resume a Ray run with search.run --resume (the Optuna study holds the state)")
