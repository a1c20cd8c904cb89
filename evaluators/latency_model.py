"""Predicted latency: ``predict_latency(arch, input_shape, batch_size, threads, runtime) -> ms``.

A network's latency is predicted as the sum of its layers' measured costs plus a fitted
correction, the approach of nn-Meter (Zhang et al., MobiSys 2021: per-kernel latencies on the
device, summed), which has no feature for grouped convolutions, so the kernels here are this
project's own units: stem, every block (its layers, shortcut and merge, as built) and the head,
each keyed by its spec and input shape, and timed in the network's inference form
(``spaces.inference_model``: BN and permutations folded), which is what trials time.

Per-layer costs are measured on this machine lazily -- the first time a layer is needed --
with the reference-relative timer (``evaluators.interleave``: the layer alone, interleaved with
the reference network at the network's input shape, both memory formats on torch) and kept as
ratios to the reference and ms (x the calibrated ``ref_ms``) in a per-machine table,
``$GROUPNAS_CACHE_DIR/latency-table.json`` (see ``evaluators.calibration``), reused across runs.
A network is priced in the memory format whose layer sum is smaller: ``S = min_f sum_l t_l,f``.

Correction (``fit_correction``): least squares in relative error (rows weighted by
1/measured; minimum-norm ``numpy.linalg.lstsq``) of the measured latency on ``[S, 1, S_op]`` --
the layer sum, a constant (framework overhead per call) and per op family the summed cost of
its layers (a block's cost split evenly among its layers' ops; a per-family scale for what a
sum of isolated units misses: caches warm across layers, fused graphs on onnxruntime), the
family terms shrunk by a ridge penalty towards ``a S + b`` whose strength is chosen by
leave-one-out error on the fit set. Fitted per setting on archs the caller measured, stored in the same table;
without a fit the prediction is ``S``. ``predict_latency`` never measures a network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .calibration import (
    CALIBRATION_FILE,
    cache_dir,
    calibrate,
    calibration_key,
    get_calibration,
    read_json_cache,
    write_json_cache,
)
from .interleave import time_pairs
from .reference import REFERENCE_NAME, reference_network

__all__ = ["TABLE_FILE", "arch_at_shape", "predict_latency", "fit_correction", "layer_sum", "features", "unit_keys",
           "unit_families", "arch_families", "RIDGES",
           "table_path"]

TABLE_FILE = "latency-table.json"
_memo: dict[str, dict[str, Any]] = {}  # table path -> document, this process


def table_path(override: str | None = None) -> Path:
    return cache_dir(override) / TABLE_FILE


def _setting(runtime: str, threads: int, batch: int, shape: tuple[int, ...]) -> str:
    """The calibration key plus the inference form's version: units timed in an older form of
    the network (``spaces.INFERENCE_FORM_VERSION``) are timed again, not reused."""
    from spaces.inference import INFERENCE_FORM_VERSION

    return f"{calibration_key(runtime, 'cpu', threads, batch, shape, REFERENCE_NAME)}|form{INFERENCE_FORM_VERSION}"


def arch_at_shape(arch: Any, shape: tuple[int, int, int] | None) -> Any:
    """``arch`` with its input shape replaced (the nets are fully convolutional; a GDC head is
    rebuilt for the new feature map): what is timed at a deployment shape."""
    if shape is None or tuple(shape) == tuple(arch.input_shape):
        return arch
    return dataclasses.replace(arch, input_shape=tuple(int(v) for v in shape))


def unit_keys(arch: Any, batch: int) -> list[tuple[str, str, int]]:
    """(key, kind, index) per stem / block / head of ``arch``; the key is the unit's spec, its
    input shape (and batch): equal keys cost the same. A block is the unit (its layers, shortcut
    and merge run as one module), so format-2 archs are priced as they are built."""
    shapes = [tuple(arch.input_shape), *arch.feature_shapes()]
    out = [(json.dumps({"stem": arch.stem.to_dict(), "in": shapes[0], "b": batch}, sort_keys=True), "stem", 0)]
    for i, block in enumerate(arch.blocks):
        out.append((json.dumps({"block": block.to_dict(), "in": shapes[i + 1], "b": batch}, sort_keys=True),
                    "block", i))
    out.append((json.dumps({"head": arch.head.to_dict(), "in": shapes[-1], "k": arch.num_classes, "b": batch},
                           sort_keys=True), "head", 0))
    return out


def unit_families(arch: Any) -> list[dict[str, float]]:
    """Per unit of ``unit_keys``, the share of its cost given to each op family: the stem's op,
    a block's cost split evenly among its layers' ops, and ``head``."""
    out: list[dict[str, float]] = [{arch.stem.op: 1.0}]
    for block in arch.blocks:
        share: dict[str, float] = {}
        for layer in block.layers:
            share[layer.op] = share.get(layer.op, 0.0) + 1.0 / len(block.layers)
        out.append(share)
    return [*out, {"head": 1.0}]


def arch_families(arch: Any) -> set[str]:
    """The op families of ``arch``'s stem and layers."""
    return {f for share in unit_families(arch) for f in share} - {"head"}


def _load(path: Path) -> dict[str, Any]:
    if str(path) not in _memo:
        doc = read_json_cache(path)
        for part in ("units", "fits"):
            if not isinstance(doc.get(part), dict):
                doc[part] = {}
        _memo[str(path)] = doc
    return _memo[str(path)]


def _lock() -> Any:
    from .machine_lock import measurement_lock

    return measurement_lock()


def _measure_units(arch: Any, missing: list[tuple[str, str, int]], setting: str, runtime: str, threads: int,
                   batch: int, path: Path, seconds: float) -> None:
    """Time the ``missing`` units of ``arch`` (one round) and store them in the table."""
    from spaces import build_model, inference_model

    model = inference_model(build_model(arch, seed=0)).eval()  # the form trials time
    shapes = [tuple(arch.input_shape), *arch.feature_shapes()]
    mods: dict[str, Callable[[int], nn.Module]] = {"stem": lambda i: model.get_submodule("stem"),
                                                   "block": lambda i: model.get_submodule(f"layers.{i}"),
                                                   "head": lambda i: model.get_submodule("head")}
    fmts = ("contiguous",) if runtime == "onnxruntime" else ("contiguous", "channels_last")
    gen = torch.Generator().manual_seed(0)
    fns: dict[str, Any] = {}
    from .latency import _ort_fn, _torch_fn

    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="groupnas-units-"))
        for j, (_, kind, i) in enumerate(missing):
            shape = shapes[0] if kind == "stem" else shapes[-1] if kind == "head" else shapes[i + 1]
            x = torch.randn((batch, *shape), generator=gen)
            for f in fmts:
                fns[f"{j}|{f}"] = (_ort_fn(mods[kind](i), x, shape, threads, "cpu", folder, f"u{j}")
                                   if runtime == "onnxruntime" else _torch_fn(mods[kind](i), x, f, torch.device("cpu")))
        xr = torch.randn((batch, *shapes[0]), generator=gen)
        ref = reference_network(shapes[0])
        ref_fn = (_ort_fn(ref, xr, shapes[0], threads, "cpu", folder, "ref") if runtime == "onnxruntime"
                  else _torch_fn(ref, xr, "contiguous", torch.device("cpu")))
        old = torch.get_num_threads()
        stack.enter_context(_lock())
        try:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                cal = get_calibration(setting, lambda: calibrate(ref_fn), path.parent / CALIBRATION_FILE)
                stats = time_pairs(fns, ref_fn, max_seconds=seconds * len(fns), warmup_s=0.05)
        finally:
            torch.set_num_threads(old)
        doc = _load(path)
        fresh = read_json_cache(path)  # merge with what other processes stored meanwhile
        if isinstance(fresh.get("units"), dict):
            doc["units"].update({k: v for k, v in fresh["units"].items() if k not in doc["units"]})
        for j, (key, _, _) in enumerate(missing):
            ratios = {f: stats[f"{j}|{f}"].ratio for f in fmts}
            ms = {f: r * cal["ref_ms"] for f, r in ratios.items()}
            doc["units"][f"{setting}|{key}"] = {"ratio": ratios, "ms": ms}
        write_json_cache(path, doc)


def layer_sum(arch: Any, input_shape: tuple[int, int, int] | None = None, batch_size: int = 1, threads: int = 1,
              runtime: str = "torch", *, cache: str | None = None, seconds: float = 0.3) -> float:
    """``S``: the smaller over memory formats of the summed layer costs, ms (measures missing layers)."""
    arch = arch_at_shape(arch, input_shape)
    setting = _setting(runtime, threads, batch_size, tuple(arch.input_shape))
    path = table_path(cache)
    doc = _load(path)
    keys = unit_keys(arch, batch_size)
    missing = list({k: (k, kind, i) for k, kind, i in keys if f"{setting}|{k}" not in doc["units"]}.values())
    if missing:
        _measure_units(arch, missing, setting, runtime, threads, batch_size, path, seconds)
    entries = [doc["units"][f"{setting}|{k}"]["ms"] for k, _, _ in keys]
    return min(sum(e[f] for e in entries) for f in entries[0])


def features(arch: Any, families: Sequence[str], input_shape: tuple[int, int, int] | None = None,
             batch_size: int = 1, threads: int = 1, runtime: str = "torch", *, cache: str | None = None) -> np.ndarray:
    """``[S, 1, S_family...]`` of ``arch``: the layer sum, a constant, and per op family the summed
    cost of its layers of that family (in the format that prices ``S``)."""
    arch = arch_at_shape(arch, input_shape)
    s = layer_sum(arch, None, batch_size, threads, runtime, cache=cache)
    setting = _setting(runtime, threads, batch_size, tuple(arch.input_shape))
    units = _load(table_path(cache))["units"]
    keys = unit_keys(arch, batch_size)
    entries = [units[f"{setting}|{k}"]["ms"] for k, _, _ in keys]
    fmt = min(entries[0], key=lambda f: sum(e[f] for e in entries))
    per = {f: 0.0 for f in families}
    for share, e in zip(unit_families(arch), entries):
        for op, frac in share.items():
            if op in per:
                per[op] += frac * e[fmt]
    return np.array([s, 1.0, *per.values()], dtype=np.float64)


def _solve(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Least squares of ``y`` on ``x`` in relative terms (rows weighted by 1/y), the family
    columns (2:) shrunk by ``ridge`` (``inf``: dropped, i.e. ``a S + b``)."""
    w = 1.0 / y
    xw, yw = x * w[:, None], y * w
    if not np.isfinite(ridge) or x.shape[1] <= 2:
        coef = np.zeros(x.shape[1])
        coef[:2] = np.linalg.lstsq(xw[:, :2], yw, rcond=None)[0]
        return coef
    penalty = np.zeros(x.shape[1])
    penalty[2:] = ridge * len(y) * max(float(np.mean(xw[:, 2:] ** 2)), 1e-12)
    a = np.vstack([xw, np.diag(np.sqrt(penalty))])  # ridge as extra rows; lstsq keeps it minimum-norm
    return np.linalg.lstsq(a, np.concatenate([yw, np.zeros(x.shape[1])]), rcond=None)[0]


def _loo_error(x: np.ndarray, y: np.ndarray, ridge: float) -> float:
    """Median relative error of leave-one-out predictions."""
    errs = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        errs.append(abs(float(x[i] @ _solve(x[keep], y[keep], ridge)) - y[i]) / y[i])
    return float(np.median(errs))


RIDGES = (0.0, 0.1, 1.0, 10.0, float("inf"))


def fit_correction(archs: Sequence[Any], measured_ms: Sequence[float], input_shape: tuple[int, int, int] | None = None,
                   batch_size: int = 1, threads: int = 1, runtime: str = "torch", *,
                   cache: str | None = None, ridge: float | None = None) -> dict[str, Any]:
    """Fit the correction on ``archs`` and their measured latency; store and return it.

    The fit minimises relative error (rows weighted by 1/measured: a 4 ms net counts as much as
    a 100 ms one). ``ridge`` shrinks the per-family terms towards 0 (i.e. towards ``a S + b``),
    in units of their mean squared weighted feature times the number of archs; ``0``: plain
    least squares; ``inf``: ``a S + b`` only; None (default): the value of ``RIDGES`` with the
    smallest leave-one-out error on ``archs`` (so the choice never sees a held-out arch)."""
    if len(archs) != len(measured_ms) or len(archs) < 3:
        raise ValueError("fit_correction needs at least 3 archs, each with its measured latency")
    shape = tuple(arch_at_shape(archs[0], input_shape).input_shape)
    families = sorted({f for a in archs for f in arch_families(a)})
    x = np.stack([features(a, families, shape, batch_size, threads, runtime, cache=cache) for a in archs])
    y = np.asarray(measured_ms, dtype=np.float64)
    loo = {r: _loo_error(x, y, r) for r in RIDGES} if ridge is None else {}
    chosen = min(loo, key=lambda r: (loo[r], -r)) if ridge is None else ridge
    coef = _solve(x, y, chosen)
    fit = {"families": families, "coef": [float(c) for c in coef], "n": len(archs), "ridge": chosen,
           "loo_median_rel": {str(r): e for r, e in loo.items()},
           "residual_median_rel": float(np.median(np.abs(x @ coef - y) / y))}
    path = table_path(cache)
    doc = _load(path)
    doc["fits"][_setting(runtime, threads, batch_size, shape)] = fit
    write_json_cache(path, doc)
    return fit


def predict_latency(arch: Any, input_shape: tuple[int, int, int] | None = None, batch_size: int = 1,
                    threads: int = 1, runtime: str | None = None, *, cache: str | None = None) -> float:
    """Predicted ms of one forward of ``arch`` at ``input_shape`` (default: its own), on ``runtime``
    (default ``"torch"``): the fitted correction of the layer sum when one exists for this
    setting, else the layer sum itself (see the module doc)."""
    runtime = runtime or "torch"
    arch = arch_at_shape(arch, input_shape)
    fit = _load(table_path(cache))["fits"].get(_setting(runtime, threads, batch_size, tuple(arch.input_shape)))
    if not fit:
        return layer_sum(arch, None, batch_size, threads, runtime, cache=cache)
    x = features(arch, fit["families"], None, batch_size, threads, runtime, cache=cache)
    pred = float(x @ np.asarray(fit["coef"]))
    return max(pred, 0.05 * float(x[0]))  # never below a twentieth of the layer sum


def _clear_memo() -> None:
    """Forget the tables read in this process (tests)."""
    _memo.clear()
