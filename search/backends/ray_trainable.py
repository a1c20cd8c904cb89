"""Worker side of the Ray backend: one Tune trial evaluates one Arch.

``trainable`` rebuilds the Arch with ``space.arch_from_params(config)``, calls the engine-free
``search.objective.evaluate_arch`` with a hook that reports each epoch's accuracy to Tune
(``--scheduler asha`` stops bad trials on it) and runs ``search.pruning.FrontPruner`` on the
front the driver sent, and reports one final result holding every figure as JSON. A trial
that raises is reported as failed with its reason; the experiment goes on.
"""

from __future__ import annotations

import json
import math
import socket
import time
from typing import Any

from ..config import RunConfig
from ..hooks import NO_HOOKS, Hooks
from ..objectives import FIGURES, OBJECTIVES
from ..study import space_of, worker_tag

__all__ = ["trainable", "result", "META"]

META = "_groupnas"          # config key of the driver -> trainable message (not a search parameter)


def result(figures: dict[str, Any], objectives: tuple[str, ...] | list[str], **extra: Any) -> dict[str, Any]:
    """A Tune result: every objective's key (NaN while unknown) plus the figures as JSON."""
    out: dict[str, Any] = {OBJECTIVES[o].key: float(figures.get(OBJECTIVES[o].key, math.nan)) for o in objectives}
    out["figures"] = json.dumps({k: figures[k] for k in FIGURES if k in figures}, default=float)
    out.update(extra)
    return out


def trainable(config: dict[str, Any], run: RunConfig, cpus_per_trial: float, hooks: Hooks = NO_HOOKS) -> None:
    """One Tune trial: evaluate the Arch of ``config`` and report per epoch, then the figures."""
    from ray import tune

    from ..objective import evaluate_arch
    from ..pruning import FrontPruner, Member, Pruned

    meta = config[META]
    number = int(meta["number"])
    objectives = run.objectives
    start = time.perf_counter()
    if meta.get("error"):  # sampling failed in the driver: record it as this trial's failure
        tune.report(result({}, objectives, final=True, status="failed", reason=meta["error"]))
        return
    if meta.get("repeat_of") is not None:  # figures are copied from the earlier trial by the driver
        tune.report(result({}, objectives, final=True, status="repeat", reason=""))
        return
    settings = run.settings.with_train_threads(max(1, int(cpus_per_trial)))
    params = {k: v for k, v in config.items() if k != META}
    pruner = FrontPruner(objectives, [Member(int(n), f) for n, f in meta.get("members", [])],
                         settings.prune and not meta.get("baseline"), settings.prune_margin)

    def hook(stage: str, figures: dict[str, Any]) -> None:
        pruner.report(stage, figures)
        if stage == "epoch":  # the last epoch's accuracy comes with the final result
            tune.report(result(dict(figures, accuracy=figures["acc_epochs"][-1]), objectives,
                               final=False, epoch=len(figures["acc_epochs"])))

    figures: dict[str, Any] = {}
    try:
        hooks.trial_started(number)
        arch = space_of(run).arch_from_params(params)
        figures = evaluate_arch(arch, settings, report=hook)
        status, reason = "complete", ""
    except Pruned as p:
        figures, status, reason = p.figures, "pruned", p.reason
        if figures.get("acc_epochs"):
            figures.setdefault("accuracy", figures["acc_epochs"][-1])
    except Exception as err:  # a trial that raises is recorded as failed; the search goes on
        status, reason = "failed", f"{type(err).__name__}: {err}"[:2000]
    figures = {**figures, "node": figures.get("node") or socket.gethostname()}
    tune.report(result(figures, objectives, final=True, status=status, reason=reason,
                       seconds=time.perf_counter() - start, worker=worker_tag()))
