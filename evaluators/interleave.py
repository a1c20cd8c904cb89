"""Reference-relative timing: candidates timed in pairs with a fixed reference network.

On a shared or throttling CPU the absolute time of a forward pass drifts by tens of percent
between processes and over minutes (other jobs, turbo and thermal limits, VM steal), but
drifts that last longer than a few milliseconds hit two networks timed back to back alike.
So each *pair* is one sample of the candidate followed at once by one sample of the
reference, and the figure is the median over pairs of ``t_candidate / t_reference``: the same
idea as interleaved A/B benchmarking (e.g. Google Benchmark's ``--benchmark_enable_random_
interleaving``), made relative. A sample is the mean of ``inner`` back-to-back calls, ``inner``
chosen in the warm-up so that a sample lasts about ``min_sample_ms``.

``time_pairs(candidates, reference)`` times several candidates in one round-robin (the order
rotates every round) until, for each, the last ``window`` ratios agree -- ``IQR / median <=
tolerance`` -- or the time cap is hit. A converged candidate leaves the rotation.

The reported ratio is ``min(candidate samples) / min(reference samples)`` over all pairs.
Measured on this 2-core machine shared by six busy engineers (load average 5-7), the median
of per-pair ratios fell apart (median CV across processes 60 %: when most samples are hit by
preemption, the median is a preempted sample) while the ratio of minimums kept 8 % (18 % at
worst); at low load both gave 2.5-3 %. Interference only ever adds time, so the fastest
sample of each, drawn in the same window, is each one's own speed at the machine's current
clock. Convergence: the last ``window`` per-pair ratios agree within ``tolerance``, or neither
running minimum moved by more than ``tolerance / 4`` during the last ``window`` pairs.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["PairStats", "time_pairs", "quartiles", "time_calls"]


@dataclass(frozen=True)
class PairStats:
    """Per-pair ratios and the absolute ms per call of candidate and reference in each pair."""

    ratios: tuple[float, ...]
    cand_ms: tuple[float, ...]
    ref_ms: tuple[float, ...]
    inner: int
    ref_inner: int
    converged: bool

    @property
    def ratio(self) -> float:
        """``min(candidate) / min(reference)`` over the pairs of the window."""
        return min(self.cand_ms) / min(self.ref_ms)

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> float:
        """``IQR / median`` of the ratios (0 for a single pair)."""
        q1, med, q3 = quartiles(list(self.ratios))
        return (q3 - q1) / med if med > 0 else 0.0


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(Q1, median, Q3), inclusive method; a single value is all three."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def time_calls(fn: Callable[[], Any], n: int, sync: Callable[[], None] | None = None) -> float:
    """Milliseconds per call of ``n`` back-to-back calls of ``fn`` (``sync`` after, e.g. CUDA)."""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    if sync is not None:
        sync()
    return (time.perf_counter_ns() - t0) / 1e6 / n


def _inner(fn: Callable[[], Any], warmup_s: float, min_sample_ms: float, sync: Callable[[], None] | None) -> int:
    """Warm ``fn`` up (allocator, kernel choice, caches) and size its samples."""
    one = time_calls(fn, 1, sync)
    t_end = time.perf_counter() + warmup_s
    while time.perf_counter() < t_end:
        one = min(one, time_calls(fn, 1, sync))
    return max(1, int(min_sample_ms / max(one, 1e-3)))


def time_pairs(candidates: Mapping[str, Callable[[], Any]], reference: Callable[[], Any], *,
               sync: Callable[[], None] | None = None, warmup_s: float = 0.1, min_sample_ms: float = 1.0,
               window: int = 20, max_pairs: int = 2000, max_seconds: float = 2.0,
               tolerance: float = 0.04) -> dict[str, PairStats]:
    """Time every candidate against ``reference`` in interleaved pairs (see the module doc).

    ``max_seconds`` caps the whole round; callers scale it with the number of candidates.
    """
    ref_inner = _inner(reference, warmup_s, min_sample_ms, sync)
    inner = {name: _inner(fn, warmup_s, min_sample_ms, sync) for name, fn in candidates.items()}
    ratios: dict[str, list[float]] = {n: [] for n in candidates}
    cand: dict[str, list[float]] = {n: [] for n in candidates}
    ref: dict[str, list[float]] = {n: [] for n in candidates}
    done: dict[str, bool] = {n: False for n in candidates}
    order = list(candidates)
    t_cap = time.perf_counter() + max_seconds
    k = 0
    while True:
        active = [n for n in order[k % len(order):] + order[:k % len(order)] if not done[n]]
        k += 1
        for name in active:
            c = time_calls(candidates[name], inner[name], sync)
            r = time_calls(reference, ref_inner, sync)
            cand[name].append(c)
            ref[name].append(r)
            ratios[name].append(c / r if r > 0 else float("inf"))
            done[name] = (_window_ok(ratios[name], window, tolerance) or len(ratios[name]) >= max_pairs
                          or _minimum_settled(cand[name], ref[name], window, tolerance / 4))
        if all(done.values()) or time.perf_counter() >= t_cap:
            break
    return {n: PairStats(tuple(ratios[n]), tuple(cand[n]), tuple(ref[n]), inner[n], ref_inner,
                         _window_ok(ratios[n], window, tolerance)
                         or _minimum_settled(cand[n], ref[n], window, tolerance / 4)) for n in candidates}


def _minimum_settled(cand: list[float], ref: list[float], window: int, rel: float) -> bool:
    """Neither running minimum improved by more than ``rel`` during the last ``window`` pairs."""
    if len(cand) < 2 * window:
        return False
    return all(min(v[-window:]) >= (1 - rel) * min(v[:-window]) for v in (cand, ref))


def _window_ok(values: list[float], window: int, tolerance: float) -> bool:
    if len(values) < window:
        return False
    q1, med, q3 = quartiles(values[-window:])
    return med > 0 and (q3 - q1) / med <= tolerance
