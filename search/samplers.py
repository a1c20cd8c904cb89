"""The sampler factory of the study layer (one place; ``search.sampling`` may replace it).

``make_sampler(name, *, seed, n_trials, space, price=None, worker_id=0)`` is the team's
signature: each worker process (``worker_id``) gets its own seed so that parallel workers do
not ask for the same points. ``population`` (NSGA-II's, default ``n_trials / 4`` clipped to
[8, 50]) is an extra keyword of this implementation.
"""

from __future__ import annotations

from typing import Any

import optuna

__all__ = ["SAMPLERS", "make_sampler", "default_population"]

SAMPLERS = ("nsga2", "tpe", "random")


def default_population(n_trials: int) -> int:
    return max(8, min(50, int(n_trials) // 4))


def make_sampler(name: str, *, seed: int, n_trials: int, space: Any = None, price: Any = None,
                 worker_id: int = 0, population: int | None = None) -> optuna.samplers.BaseSampler:
    """Optuna's own samplers: NSGA-II (default), multi-objective TPE, or random search."""
    seed = int(seed) + 1000 * int(worker_id)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population or default_population(n_trials), seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)}")
