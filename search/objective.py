"""One trial, independent of any search engine: ``evaluate_arch(arch, settings, report) -> figures``.

sample (the backend's job) -> build -> params and MACs -> constraints -> [latency, for
architectures without learned ops: it does not depend on the weights] -> ``report("costs")``
(the pre-training dominance skip lives there) -> proxy accuracy, ``report("epoch")`` after
each epoch (per-epoch pruning) -> condensed model: params and MACs of what would be deployed
(learned ops: after condensing) -> figures. Latency is always timed on
``spaces.inference_model(model)`` (learned ops condensed, BN and permutations folded: the
form a user ships).

``report(stage, figures)`` may raise ``search.pruning.Pruned`` to stop the trial; the
figures gathered so far travel with the exception. Nothing here imports Optuna, so the Optuna
and the Ray backends share it.

Objectives (``search.objectives.OBJECTIVES``): accuracy (maximise; the validation accuracy of the short
training, or the zero-cost score with ``--proxy NAME``), latency (median ms of a forward at
``latency_batch``, minimise), params and macs (minimise; multiply-adds of one example, the
unit papers call FLOPs).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from .objectives import values as objective_values
from .pruning import Pruned
from .settings import Settings

__all__ = ["Settings", "evaluate_arch", "objective_values", "get_data", "constraint_violation", "latency_shape",
           "latency_figures"]


_DATA_CACHE: dict[tuple, Any] = {}


def get_data(settings: Settings) -> Any:
    """The data set of ``settings``, loaded once per process."""
    from evaluators.data import load_data

    key = (settings.data, settings.data_dir, settings.seed, settings.data_limit, settings.val_examples)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_data(settings.data, settings.data_dir, seed=settings.seed,
                                     limit=settings.data_limit, val_examples=settings.val_examples)
    return _DATA_CACHE[key]


def constraint_violation(figures: dict[str, Any], settings: Settings) -> str | None:
    """The first constraint that ``figures`` break, as a sentence; None when all hold."""
    checks = (("params", settings.max_params, "--max-params"), ("macs", settings.max_macs, "--max-macs"),
              ("latency_ms", settings.max_latency_ms, "--max-latency-ms"))
    for key, limit, flag in checks:
        if limit is not None and key in figures and figures[key] > limit:
            return f"constraint: {key} {figures[key]:.6g} > {flag} {limit:.6g}"
    return None


def _emit(report: Callable[[str, dict[str, Any]], None] | None, stage: str, figures: dict[str, Any]) -> None:
    if report is not None:
        report(stage, figures)


def latency_shape(arch: Any, settings: Settings) -> tuple[int, int, int]:
    """The input the latency is for: ``settings.latency_shape``, else the arch's own."""
    return tuple(settings.latency_shape or arch.input_shape)


def latency_figures(model: torch.nn.Module, arch: Any, settings: Settings, learned: bool = False) -> dict[str, Any]:
    """Latency figures at the deployment shape and runtime (``LatencyResult.record()``), timed on
    ``spaces.inference_model(model)``; or ``predict_latency`` with ``settings.latency == "predicted"``.
    ``learned``: ``model`` is a trained condensed net, timed as it is (its structure came from training)."""
    shape = latency_shape(arch, settings)
    if settings.latency == "predicted":
        from evaluators.latency_model import predict_latency

        ms = predict_latency(arch, input_shape=shape, batch_size=settings.latency_batch,
                             threads=settings.threads, runtime=settings.runtime)
        return {"latency_ms": float(ms), "latency_source": "predicted", "latency_shape": list(shape),
                "latency_runtime": settings.runtime, "latency_batch": settings.latency_batch,
                "threads": settings.threads}
    from evaluators.latency import measure_latency
    from spaces import inference_model

    if shape != tuple(arch.input_shape) and not learned:
        # a fixed structure's latency does not depend on the weights: build it at the timed size
        # (exact for every head, e.g. MobileFaceNet's global depthwise conv sized to the map)
        from evaluators.latency_model import arch_at_shape
        from spaces.build import build_model

        model = build_model(arch_at_shape(arch, shape), seed=settings.seed)
    budget = float(settings.latency_seconds)  # shared by the two memory formats (torch)
    per_format = budget if settings.runtime == "onnxruntime" else budget / 2
    res = measure_latency(inference_model(model), shape, batch_size=settings.latency_batch,
                          threads=settings.threads, runtime=settings.runtime, max_seconds=per_format,
                          warmup_s=min(0.1, budget / 10))
    return {**res.record(), "latency_source": "measured"}


def _costs(model: torch.nn.Module, arch: Any) -> dict[str, Any]:
    from evaluators.cost import count_macs, count_params

    return {"params": int(count_params(model)), "macs": int(count_macs(model, tuple(arch.input_shape)))}


def evaluate_arch(arch: Any, settings: Settings,
                  report: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Evaluate one ``Arch``; returns its figures (see the module docstring).

    Raises ``Pruned`` (with ``.figures``) when a constraint is broken or ``report`` says so.
    """
    from evaluators.data import check_arch_data
    from spaces.build import build_model, condense_model, learned_ops

    start = time.perf_counter()
    figures: dict[str, Any] = {"proxy": settings.proxy}
    try:
        data = get_data(settings)
        check_arch_data(arch, data)
        model = build_model(arch, seed=settings.seed)
        learned = bool(learned_ops(model))
        figures["learned"] = learned
        figures.update(_costs(model, arch))
        why = constraint_violation(figures, settings)
        if why:
            raise Pruned(why)
        if not learned:  # fixed structure: latency does not depend on the weights
            figures.update(latency_figures(model, arch, settings))
            why = constraint_violation(figures, settings)
            if why:
                raise Pruned(why)
        _emit(report, "costs", figures)

        if settings.proxy == "train":
            from evaluators.train_proxy import train

            figures["acc_epochs"] = []

            def on_epoch(epoch: int, accuracy: float) -> None:
                figures["acc_epochs"].append(float(accuracy))
                if epoch < settings.epochs:
                    _emit(report, "epoch", figures)

            result = train(model, data, epochs=settings.epochs, lr=settings.lr,
                           batch_size=settings.batch_size, seed=settings.seed, report=on_epoch,
                           threads=settings.train_threads)
            figures["accuracy"] = float(result.accuracy)
            inference = result.model if result.model is not None else condense_model(model)
        else:
            from evaluators.zero_cost import SCORES

            n = min(settings.zero_cost_batch, len(data.train.y))
            score = float(SCORES[settings.proxy](model, data.train.x[:n], data.train.y[:n]))
            if not math.isfinite(score):
                raise ValueError(f"zero-cost score {settings.proxy} is {score}")
            figures["accuracy"] = score
            inference = condense_model(model)

        if learned:  # price and time the condensed network, the one that would be deployed
            figures.update(_costs(inference, arch))
            figures.update(latency_figures(inference, arch, settings, learned=True))
            why = constraint_violation(figures, settings)
            if why:
                raise Pruned(why)
    except Pruned as p:
        figures["eval_seconds"] = time.perf_counter() - start
        p.figures = {**figures, **p.figures}
        raise
    figures["eval_seconds"] = time.perf_counter() - start
    return figures
