"""Samplers for the search: ``make_sampler(name, *, seed, n_trials, space, price=None, worker_id=0)``.

- ``screened`` (default): priced candidate screening (``search.sampling_screen``). After a
  few random start-up trials it draws many candidates (mutations of the front and fresh
  random ones), prices each before training (params and MACs from ``evaluators.cost``, plus
  ``price(arch)`` when given, e.g. a latency predictor), predicts accuracy and latency with a
  tree ensemble fitted on every trial so far (pruned ones included, through their accuracy at
  the epoch they stopped), and trains the candidate with the largest expected hypervolume
  improvement (Emmerich et al. 2006, EHVI; the ensemble's trees are the samples).
- ``tpe``: Optuna's multi-objective TPE (Ozaki et al. 2020, MOTPE), multivariate and grouped,
  so that the define-by-run parameters of ``mixed`` are modelled per family.
- ``nsga2``: Optuna's NSGA-II (Deb et al. 2002) with a population sized for the budget
  (about five generations: ``n_trials // 5``, between 4 and 50).
- ``gp``: Optuna's ``GPSampler`` (log-EHVI for several objectives); it models only the
  parameters every trial has, the others are drawn at random.
- ``random``: ``RandomSampler``, the honest baseline.

Random streams: every sampler but ``random`` mixes its name into the seed, so that with the
same ``--seed`` it does not replay random search's draws; ``worker_id`` (an int or a string,
e.g. ``"host:pid"``) is mixed into every sampler's seed but ``worker_id=0`` leaves it as is,
so one process keeps its ``--seed``; ``screened`` also mixes in the trial number, so two
processes on one shared study never draw the same stream.
"""

from __future__ import annotations

from typing import Any, Callable

import optuna

from .sampling_base import mix_seed, tpe

__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "make_sampler", "mix_seed", "population_for", "startup_for", "tpe"]

SAMPLERS = ("screened", "tpe", "nsga2", "gp", "random")
DEFAULT_SAMPLER = "screened"

Price = Callable[[Any], float]


def population_for(n_trials: int) -> int:
    """NSGA-II population for a budget: about five generations, between 4 and 50."""
    return max(4, min(50, int(n_trials) // 5))


def startup_for(n_trials: int) -> int:
    """Random start-up trials of the model-based samplers: a sixth of the budget, 4 to 10."""
    return max(4, min(10, int(n_trials) // 6))


def _seed(name: str, seed: int, worker_id: Any) -> int:
    if name == "random":
        return seed if worker_id in (0, None) else mix_seed(seed, "worker", worker_id)
    return mix_seed(seed, name) if worker_id in (0, None) else mix_seed(seed, name, "worker", worker_id)


def make_sampler(name: str, *, seed: int, n_trials: int, space: Any = None, price: Price | None = None,
                 worker_id: Any = 0, population: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` (see ``SAMPLERS``) for a budget of ``n_trials`` searched trials.

    ``space``: the ``spaces.Space`` (needed by ``screened``, which builds and prices
    candidates). ``price(arch) -> float``: an extra cost known before training (e.g. predicted
    latency), used as a feature by ``screened``. ``worker_id``: distinct per worker process.
    ``population``: NSGA-II's population (``--population``; default ``population_for(n_trials)``).
    """
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    s = _seed(name, seed, worker_id)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=s)
    if name == "tpe":
        return tpe(s, startup_for(n_trials))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population or population_for(n_trials), seed=s)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=s, n_startup_trials=startup_for(n_trials),
                                         independent_sampler=optuna.samplers.RandomSampler(seed=s))
    if name == "screened":
        from .sampling_screen import ScreenedSampler

        if space is None:
            raise ValueError("the screened sampler needs the space (make_sampler(..., space=space))")
        return ScreenedSampler(space, seed=s, n_startup=startup_for(n_trials), price=price)
    raise ValueError(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)}")
