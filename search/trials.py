"""What a trial records, the same for both backends (the study is the single source of truth).

``record_arch`` (canonical Arch JSON, its SHA-1, layer choices), ``previous`` (the repeat
lookup: an Arch already evaluated is not trained again), ``tell_repeat`` (copy its figures and
outcome), ``set_figures`` (the one list ``FIGURES``), ``front_members`` (the completed trials
handed to ``search.pruning.FrontPruner``), ``tell_*`` for the three outcomes, and the two
progress lines (``trial_line``, ``progress_line``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from .objectives import FIGURES, values as objective_values
from .pruning import Member, front_of
from .study import requeue

__all__ = ["FIGURES", "record_arch", "done_trials", "previous", "front_members", "set_figures", "tell_repeat",
           "tell_complete", "tell_pruned", "tell_failed", "tell_interrupted", "trial_line", "progress_line"]

REASON_CHARS = 2000


def record_arch(trial: optuna.trial.Trial, space: Any, arch: Any) -> str:
    """Record the Arch on the trial; returns its SHA-1 (the repeat key)."""
    text = arch.to_json()
    sha = hashlib.sha1(text.encode()).hexdigest()
    trial.set_user_attr("arch", text)
    trial.set_user_attr("arch_sha1", sha)
    trial.set_user_attr("choices", dict(space.layer_choices(arch)))
    return sha


def done_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def previous(trials: Sequence[FrozenTrial], sha: str, number: int) -> FrozenTrial | None:
    """The earlier evaluation (not itself a repeat) of the Arch with hash ``sha``, if any."""
    for t in trials:
        if t.number != number and t.user_attrs.get("arch_sha1") == sha and t.user_attrs.get("repeat_of") is None \
                and t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            return t
    return None


def front_members(done: Sequence[FrozenTrial], objectives: Sequence[str] | None = None) -> list[Member]:
    """Completed trials (repeats left out) as the pruner sees them; only the front if ``objectives``."""
    members = [Member(t.number, {k: t.user_attrs[k] for k in FIGURES if k in t.user_attrs}) for t in done
               if t.state == TrialState.COMPLETE and t.user_attrs.get("repeat_of") is None]
    return members if objectives is None else front_of(members, objectives)


def set_figures(trial: optuna.trial.Trial, figures: Mapping[str, Any]) -> None:
    for key in FIGURES:
        if figures.get(key) is not None:
            trial.set_user_attr(key, figures[key])


def tell_complete(study: optuna.Study, trial: optuna.trial.Trial, figures: Mapping[str, Any],
                  objectives: Sequence[str]) -> TrialState:
    set_figures(trial, figures)
    study.tell(trial, objective_values(figures, objectives))
    return TrialState.COMPLETE


def tell_pruned(study: optuna.Study, trial: optuna.trial.Trial, figures: Mapping[str, Any], reason: str) -> TrialState:
    set_figures(trial, figures)
    trial.set_user_attr("prune_reason", reason)
    study.tell(trial, state=TrialState.PRUNED)
    return TrialState.PRUNED


def tell_failed(study: optuna.Study, trial: optuna.trial.Trial, reason: str, interrupted: bool = False) -> TrialState:
    trial.set_user_attr("fail_reason", reason[:REASON_CHARS])
    if interrupted:
        trial.set_user_attr("interrupted", True)
    study.tell(trial, state=TrialState.FAIL)
    return TrialState.FAIL


def tell_interrupted(study: optuna.Study, trial: optuna.trial.Trial, reason: str) -> None:
    """FAIL, not counted towards the budget, and its parameters queued again."""
    tell_failed(study, trial, reason, interrupted=True)
    requeue(study, trial)


def tell_repeat(study: optuna.Study, trial: optuna.trial.Trial, prev: FrozenTrial) -> TrialState:
    """Reuse ``prev``'s figures and outcome for ``trial`` (the same canonical Arch; its own ``seconds``)."""
    set_figures(trial, {k: v for k, v in prev.user_attrs.items() if k != "seconds"})
    trial.set_user_attr("repeat_of", prev.number)
    if prev.state == TrialState.COMPLETE:
        study.tell(trial, list(prev.values))
        return TrialState.COMPLETE
    trial.set_user_attr("prune_reason", f"repeat of pruned trial {prev.number}: "
                        + str(prev.user_attrs.get("prune_reason", "")))
    study.tell(trial, state=TrialState.PRUNED)
    return TrialState.PRUNED


def trial_line(t: FrozenTrial) -> str:
    """``trial 3 complete: accuracy 0.9120, 0.413 ms, 12,345 params``."""
    a = t.user_attrs
    s = f"trial {t.number} {t.state.name.lower()}"
    if a.get("accuracy") is not None:
        s += f": accuracy {a['accuracy']:.4f}"
    if a.get("latency_ms") is not None:
        s += f", {a['latency_ms']:.3f} ms"
    if a.get("params") is not None:
        s += f", {a['params']:,} params"
    if a.get("baseline"):
        s += f" [baseline {a['baseline']}]"
    if a.get("repeat_of") is not None:
        s += f" (repeat of trial {a['repeat_of']})"
    for key in ("prune_reason", "fail_reason"):
        if a.get(key):
            s += f" ({a[key]})"
    return s


def progress_line(study: optuna.Study, objectives: Sequence[str], total: int, workers: int,
                  deadline: float | None, proxy: str = "train") -> str:
    """The run's progress line (``search.progress``); interrupted trials do not count as done."""
    from .progress import summarise

    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get("interrupted")]
    return summarise(trials, objectives, total, workers, deadline, counted=counted, proxy=proxy).line()
