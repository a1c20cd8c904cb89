"""Seed mixing and the TPE configuration shared by ``search.sampling`` and ``search.sampling_screen``
(one module below both, so that neither imports the other back)."""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import optuna

__all__ = ["mix_seed", "tpe"]


def mix_seed(seed: int, *parts: Any) -> int:
    """A 32-bit seed from ``seed`` and ``parts`` (stable across processes and runs)."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def tpe(seed: int, n_startup: int) -> optuna.samplers.TPESampler:
    """Multivariate, grouped multi-objective TPE (``group`` is experimental in Optuna 5: quiet)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, multivariate=True, group=True,
                                          constant_liar=True)
