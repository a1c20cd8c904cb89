"""The protocol that learned-grouping ops (CondenseNet, FLGC, DGC) follow.

A learned op trains in a relaxed or masked form and is turned into a fast inference module
at the end. The training proxy drives it through three hooks and never needs to know which
op it is:

- ``schedule(progress)``: called after each epoch with the fraction of training done
  (0 < progress <= 1); an op condenses, anneals or hardens on its own schedule here.
- ``regularizer()``: an extra loss term (group lasso, gate budget) or ``None``.
- ``condense()``: the inference module, a plain index selection / permutation plus a real
  group convolution, that gives the same outputs as the trained module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class LearnedOp(nn.Module):
    """Base class of ops whose grouping is learned during training."""

    def schedule(self, progress: float) -> None:  # pragma: no cover - overridden
        """Advance the op's own training schedule; ``progress`` is in (0, 1]."""

    def regularizer(self) -> torch.Tensor | None:
        """An extra loss term, or ``None``."""
        return None

    def condense(self) -> nn.Module:
        """The inference module with the same outputs as this one."""
        raise NotImplementedError

    def fold_bn(self, bn: nn.BatchNorm2d) -> nn.Module:
        """``bn(condense()(x))`` with the BN folded in (``spaces.inference``)."""
        condensed: Any = self.condense()  # every condensed form has its fold_bn
        return condensed.fold_bn(bn)
