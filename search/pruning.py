"""Pruning for a multi-objective search (Optuna's pruners need a single objective).

Two rules, both judged against the trials already completed in the study:

1. **Before training** (``FrontPruner.before_training``): params, MACs and -- for
   architectures without learned ops -- latency are known before any training. Give the
   candidate the best accuracy seen so far plus ``margin`` (at most 1) and its latency minus
   its measured spread (IQR):
   if a completed trial still dominates that optimistic point (with its latency plus its
   spread), the candidate cannot reach the front and is skipped. When an objective is unknown
   before training (latency of a learned op) the rule cannot decide and keeps the candidate.
2. **During training** (``FrontPruner.at_epoch``): at epoch ``e < E`` the candidate is stopped
   when, even after gaining from epoch ``e`` to the end as much as the typical completed trial
   did, its accuracy would stay more than ``margin`` below the last-epoch accuracy of a current
   front member of comparable cost -- one no worse in every cost objective (its latency at most
   the candidate's plus the candidate's spread; MACs stand in for latency when the candidate's
   latency is only known after condensing). Such a member is on course to dominate it. The
   gain granted is the larger of the member's own gain from epoch ``e`` and the
   ``gain_quantile`` (median) of the gains of every completed trial that trained past ``e``
   (when at least ``MIN_CURVES`` did). Comparing epoch-``e`` accuracies alone (the member's own
   gain) misjudges nets whose curves differ in shape: a member that learns fast and levels
   off stops slower starters that end above it (on an unpruned ``mixed`` run it stopped 31 of
   34 trials, 7 of them wrongly; this rule 19, 2 wrongly: ``bench/pruning.py --audit``). The
   rule is never stricter than that comparison.

A pruned trial keeps its figures and intermediate accuracies; its reason says which rule and
which trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .objectives import OBJECTIVES, to_min, values
from .pareto import pareto_mask

__all__ = ["Pruned", "Member", "FrontPruner", "front_of", "GAIN_QUANTILE", "MIN_CURVES"]


class Pruned(Exception):
    """Stop this trial: ``reason`` says why; ``figures`` holds what was measured so far."""

    def __init__(self, reason: str, figures: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.figures: dict[str, Any] = dict(figures or {})


COST_KEYS = {name: o.key for name, o in OBJECTIVES.items() if name != "accuracy"}
GAIN_QUANTILE = 0.5   # the gain from epoch e to the end granted to a candidate: the completed trials' median
MIN_CURVES = 3        # completed trials past epoch e needed before their gains are used


@dataclass(frozen=True)
class Member:
    """A completed trial as the pruner sees it."""

    number: int
    figures: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.figures.get(key)


def front_of(members: Sequence[Member], objectives: Sequence[str]) -> list[Member]:
    """The non-dominated members over ``objectives`` (members lacking an objective left out)."""
    usable = [m for m in members if all(OBJECTIVES[o].key in m.figures for o in objectives)]
    if not usable:
        return []
    pts = to_min([values(m.figures, objectives) for m in usable], objectives)
    return [m for m, keep in zip(usable, pareto_mask(pts)) if keep]


class FrontPruner:
    """The two rules above for one trial; ``report`` is ``evaluate_arch``'s hook."""

    def __init__(self, objectives: Sequence[str], completed: Sequence[Member], enabled: bool = True,
                 margin: float = 0.01, gain_quantile: float | None = GAIN_QUANTILE) -> None:
        """``completed``: every completed trial (the gains come from all of them, not only the
        front); ``gain_quantile`` None compares epoch-e accuracies alone (the member's own gain)."""
        self.objectives = list(objectives)
        self.completed = [m for m in completed if m.get("accuracy") is not None]
        self.enabled = enabled and "accuracy" in self.objectives and len(self.objectives) > 1
        self.margin = margin
        self.gain_quantile = gain_quantile
        self._front: list[Member] | None = None
        self._gains: dict[int, float | None] = {}

    @property
    def front(self) -> list[Member]:
        if self._front is None:
            self._front = front_of(self.completed, self.objectives)
        return self._front

    def _costs(self) -> list[str]:
        return [o for o in self.objectives if o != "accuracy"]

    def before_training(self, fig: dict[str, Any]) -> str | None:
        """Reason to skip the candidate before training, or None."""
        if not self.enabled or not self.completed:
            return None
        costs = self._costs()
        if any(COST_KEYS[o] not in fig for o in costs):
            return None  # an objective is unknown before training: cannot decide
        # The candidate's optimistic accuracy is the best seen plus the margin (capped at 1):
        # with only "the best seen", a fast trial that holds the best accuracy on a saturated
        # data set (digits: ~0.986) would skip every slower candidate before it could show a
        # higher accuracy. So this rule fires only where the ceiling is really reached.
        best_acc = min(1.0, max(float(m.get("accuracy")) for m in self.completed) + self.margin)
        for m in self.completed:
            acc = float(m.get("accuracy"))
            if acc < best_acc:
                continue
            le, lt = True, False
            for o in costs:
                key = COST_KEYS[o]
                mine, theirs = float(fig[key]), m.get(key)
                if theirs is None:
                    le = False
                    break
                theirs = float(theirs)
                if o == "latency":
                    mine -= float(fig.get("latency_iqr_ms", 0.0))
                    theirs += float(m.get("latency_iqr_ms") or 0.0)
                le &= theirs <= mine
                lt |= theirs < mine
            if le and lt:
                return (f"pre-training skip: trial {m.number} (accuracy {acc:.4f}, the best seen) "
                        f"is already no worse in {', '.join(costs)}")
        return None

    def _comparable(self, m: Member, fig: dict[str, Any]) -> bool:
        for o in self._costs():
            key = COST_KEYS[o]
            if o == "latency" and "latency_ms" not in fig:
                key = "macs"  # latency of a learned op is known after condensing only
                if m.get(key) is None or fig.get(key) is None or float(m.get(key)) > float(fig[key]):
                    return False
                continue
            theirs, mine = m.get(key), fig.get(key)
            if theirs is None or mine is None:
                return False
            slack = float(fig.get("latency_iqr_ms", 0.0)) if o == "latency" else 0.0
            if float(theirs) > float(mine) + slack:
                return False
        return True

    def at_epoch(self, fig: dict[str, Any], epoch: int) -> str | None:
        """Reason to stop the candidate after ``epoch`` (1-based), or None."""
        if not self.enabled:
            return None
        hit = self.stopper(fig, epoch)
        if hit is None:
            return None
        m, gain = hit
        acc, curve = float(fig["acc_epochs"][epoch - 1]), m.get("acc_epochs")
        return (f"stopped at epoch {epoch}: accuracy {acc:.4f} + a gain of {gain:.4f} to the end "
                f"< {float(curve[-1]):.4f} - {self.margin}, front member trial {m.number}'s last epoch "
                f"(at epoch {epoch} it had {float(curve[epoch - 1]):.4f}), at no higher cost")

    def stopper(self, fig: dict[str, Any], epoch: int) -> tuple[Member, float] | None:
        """(the front member on course to dominate the candidate, the gain granted to it), or None."""
        acc = float(fig["acc_epochs"][epoch - 1])
        typical = self.typical_gain(epoch)
        for m in self.front:
            curve = m.get("acc_epochs") or []
            if len(curve) < epoch or not self._comparable(m, fig):
                continue
            final = float(curve[-1])  # the curve's own scale (val split), not the trial's extra-scored accuracy
            gain = max(final - float(curve[epoch - 1]), typical if typical is not None else -1.0)
            if acc + gain < final - self.margin:
                return m, gain
        return None

    def typical_gain(self, epoch: int) -> float | None:
        """The ``gain_quantile`` of (last-epoch - epoch-``epoch``) accuracy over the completed
        trials that trained past ``epoch``; None with fewer than ``MIN_CURVES`` of them."""
        if epoch not in self._gains:
            gains = [float(c[-1]) - float(c[epoch - 1]) for m in self.completed
                     if len(c := (m.get("acc_epochs") or [])) > epoch]
            self._gains[epoch] = None if self.gain_quantile is None or len(gains) < MIN_CURVES else \
                float(np.quantile(gains, self.gain_quantile))
        return self._gains[epoch]

    def report(self, stage: str, figures: dict[str, Any]) -> None:
        """``evaluate_arch`` hook: raise ``Pruned`` when a rule fires."""
        if stage == "costs":
            why = self.before_training(figures)
        elif stage == "epoch":
            why = self.at_epoch(figures, len(figures["acc_epochs"]))
        else:
            why = None
        if why:
            raise Pruned(why, figures)
