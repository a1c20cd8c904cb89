"""Measured inference latency that reproduces across processes: ``measure_latency`` / ``measure_round``.

What is timed: a private eval-mode copy of the model under ``torch.inference_mode`` with a
fixed thread count (the caller's is restored), on ``runtime="torch"`` (eager PyTorch, both
memory formats NCHW ``contiguous`` and NHWC ``channels_last`` tried, the faster reported) or
``runtime="onnxruntime"`` (the model exported to ONNX, ``evaluators.onnx_runtime``, run in an
``InferenceSession`` with ``intra_op_num_threads = threads``, NCHW).

How: interleaved with the fixed reference network (``evaluators.reference``) in pairs --
candidate sample, reference sample, ... -- until the last ``window`` per-pair ratios agree
within ``tolerance`` (``IQR / median``), the minimums settle, or the time cap; ``ref_ratio``
is ``min(candidate samples) / min(reference samples)`` over all pairs (``evaluators.interleave``
says why the minimum: it survives a heavily loaded machine where the median does not).
Milliseconds are ``median_ms = ref_ratio * ref_ms``, where ``ref_ms`` is the per-machine
calibration of the reference for the same runtime / device / threads / batch / shape, measured
once and cached outside the run (``evaluators.calibration``, ``$GROUPNAS_CACHE_DIR``). Machine
drift between processes or over minutes hits candidate and reference alike and cancels in the
ratio; ``raw_ms`` keeps the absolute median of the candidate's own samples. On CUDA every
sample is synchronised.

``measure_round(models, ...)`` times many models in ONE interleaved round (rotating order),
so that figures meant to be compared (the front and the baselines at the end of a run) come
from the same window. Every measurement holds the machine-wide lock (``measurement_lock``,
``compute_slot``, ``lock_path`` live in ``evaluators.machine_lock`` and are re-exported).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import socket
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .affinity import pinned
from .calibration import calibrate, calibration_info, calibration_key, get_calibration
from .interleave import PairStats, quartiles, time_pairs
from .machine_lock import LOCK_ENV, LatencyError, LockBusy, compute_slot, lock_path, measurement_lock
from .reference import REFERENCE_NAME, reference_network

__all__ = ["LatencyResult", "LatencyError", "LockBusy", "measure_latency", "measure_round", "calibration_info",
           "measurement_lock", "compute_slot", "lock_path", "FORMATS", "RUNTIMES", "LOCK_ENV"]

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
RUNTIMES = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyResult:
    """Per-forward latency of one batch, ms: ``median_ms = ref_ratio * ref_ms`` (the name is kept
    for compatibility; it is the reference-relative figure, see the module doc).

    ``spread`` is ``IQR / median`` of the per-pair ratios, ``iqr_ms = spread * median_ms``,
    ``cv`` the robust coefficient of variation ``spread / 1.349``;
    ``runs`` the pairs drawn (all used); ``inner`` the calls averaged per sample; ``converged``
    whether the last ``window`` ratios met the tolerance before the time cap; ``formats`` maps
    every memory format tried to its median ms; ``raw_ms`` the candidate's absolute median
    in its pairs (absolute, drifts with the machine); ``calibration`` the cache key of ``ref_ms``.
    """

    median_ms: float
    iqr_ms: float
    runs: int
    threads: int
    memory_format: str
    device: str
    batch_size: int = 1
    cv: float = 0.0
    inner: int = 1
    converged: bool = True
    drawn: int = 0
    node: str = ""
    formats: dict[str, float] = field(default_factory=dict)
    runtime: str = "torch"
    input_shape: tuple[int, ...] = ()
    ref_ratio: float = 0.0
    ref_ms: float = 0.0
    spread: float = 0.0
    raw_ms: float = 0.0
    reference: str = REFERENCE_NAME
    calibration: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    def record(self) -> dict[str, Any]:
        """The flat fields a trial record stores (``search.objective``'s ``latency_*`` attrs)."""
        return {"latency_ms": self.median_ms, "latency_iqr_ms": self.iqr_ms, "latency_runs": self.runs,
                "threads": self.threads, "memory_format": self.memory_format, "node": self.node,
                "latency_batch": self.batch_size, "latency_shape": list(self.input_shape),
                "latency_runtime": self.runtime, "latency_ref_ratio": self.ref_ratio, "latency_ref_ms": self.ref_ms,
                "latency_spread": self.spread, "latency_converged": self.converged,
                "latency_calibration": self.calibration}


def _device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LatencyError("device='cuda' asked for but no CUDA GPU is available to torch; "
                           "use device='cpu'")
    return dev


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check(input_shape: Any, batch_size: Any, threads: Any, runtime: Any, formats: Any, window: Any,
           max_runs: Any, max_seconds: Any, tolerance: Any) -> None:
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape)):
        raise ValueError(f"input_shape must be (C, H, W) positive integers, got {input_shape!r}")
    for name, value in (("batch_size", batch_size), ("window", window), ("max_runs", max_runs)):
        _positive_int(name, value)
    if threads is not None:
        try:
            _positive_int("threads", threads)
        except ValueError:
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}") from None
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"formats must be a non-empty subset of {tuple(FORMATS)}, got {formats!r}")
    for name, value in (("max_seconds", max_seconds), ("tolerance", tolerance)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")


def _torch_fn(model: nn.Module, x: torch.Tensor, fmt: str, dev: torch.device) -> Callable[[], Any]:
    work = copy.deepcopy(model).to(dev).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    work = work.to(memory_format=FORMATS[fmt])  # type: ignore[call-overload]  # torch's stub lacks it
    xf = x.contiguous(memory_format=FORMATS[fmt])
    return lambda: work(xf)


def _ort_fn(model: nn.Module, x: torch.Tensor, input_shape: tuple[int, ...], threads: int, device: str,
            folder: str, name: str) -> Callable[[], Any]:
    from .onnx_runtime import INPUT, export_onnx, ort_session

    path = Path(folder) / f"{name}.onnx"
    export_onnx(model, input_shape, path)
    session = ort_session(path, threads=threads, device=device)
    feed = {INPUT: x.cpu().contiguous().numpy()}
    return lambda: session.run(None, feed)


def _reference_name(reference: nn.Module | None) -> str:
    if reference is None:
        return REFERENCE_NAME
    digest = hashlib.sha1(repr(reference).encode()).hexdigest()[:10]
    return f"custom-{type(reference).__name__}-{digest}"


def measure_round(models: Mapping[str, nn.Module], input_shape: tuple[int, int, int], batch_size: int = 1,
                  threads: int | None = None, *, runtime: str = "torch", device: str = "cpu",
                  formats: tuple[str, ...] = ("contiguous", "channels_last"), warmup_s: float = 0.1,
                  min_sample_ms: float = 1.0, window: int = 20, max_runs: int = 2000, max_seconds: float = 2.0,
                  tolerance: float = 0.04, lock: bool = True, lock_timeout: float | None = None,
                  reference: nn.Module | None = None, calibrate_seconds: float = 3.0,
                  cache_dir: str | None = None) -> dict[str, LatencyResult]:
    """Time every model of ``models`` in one interleaved round against the reference (module doc).

    ``max_seconds`` is the time cap per model and memory format (the round's cap is that times
    their number). ``reference``: another reference network (tests); ``cache_dir``: another
    calibration cache folder than ``$GROUPNAS_CACHE_DIR``. The callers' models are not changed.
    """
    _check(input_shape, batch_size, threads, runtime, formats, window, max_runs, max_seconds, tolerance)
    if not models:
        raise ValueError("measure_round needs at least one model")
    dev = _device(device)
    c, h, w = (int(v) for v in input_shape)
    shape = (c, h, w)
    x0 = torch.randn((batch_size, *shape), generator=torch.Generator().manual_seed(0)).to(dev)
    old_threads = torch.get_num_threads()
    n_threads = threads if threads is not None else old_threads
    fmts = ("contiguous",) if runtime == "onnxruntime" else tuple(dict.fromkeys(formats))
    ref_model = reference if reference is not None else reference_network(shape)
    ref_name = _reference_name(reference)
    key = calibration_key(runtime, str(dev), n_threads, batch_size, shape, ref_name)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" and runtime == "torch" else None
    cal_path = str(Path(cache_dir) / "latency-calibration.json") if cache_dir else None

    guard = measurement_lock(timeout=lock_timeout) if lock else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="groupnas-latency-") as folder:
        if runtime == "onnxruntime":
            fns = {(n, "contiguous"): _ort_fn(m, x0, shape, n_threads, str(dev), folder, f"m{i}")
                   for i, (n, m) in enumerate(models.items())}
            ref_fn = _ort_fn(ref_model, x0, shape, n_threads, str(dev), folder, "reference")
        else:
            fns = {(n, f): _torch_fn(m, x0, f, dev) for n, m in models.items() for f in fmts}
            ref_fn = _torch_fn(ref_model, x0, "contiguous", dev)
        with guard, pinned(n_threads):  # one core for the whole window (evaluators.affinity)
            try:
                torch.set_num_threads(n_threads)
                with torch.inference_mode():
                    cal = get_calibration(key, lambda: calibrate(ref_fn, calibrate_seconds, sync=sync), cal_path)
                    labels = {f"{i}": k for i, k in enumerate(fns)}
                    stats = time_pairs({i: fns[k] for i, k in labels.items()}, ref_fn, sync=sync,
                                       warmup_s=warmup_s, min_sample_ms=min_sample_ms, window=window,
                                       max_pairs=max(max_runs, window), max_seconds=max_seconds * len(fns),
                                       tolerance=tolerance)
            finally:
                torch.set_num_threads(old_threads)
    per_key = {labels[i]: s for i, s in stats.items()}
    ref_ms = float(cal["ref_ms"])
    node = socket.gethostname()
    out: dict[str, LatencyResult] = {}
    for name in models:
        by_fmt = {f: per_key[(name, f)] for f in fmts}
        best = min(by_fmt, key=lambda f: by_fmt[f].ratio)
        out[name] = _result(by_fmt[best], best, {f: s.ratio * ref_ms for f, s in by_fmt.items()}, ref_ms, key,
                            n_threads, str(dev), batch_size, runtime, shape, node, ref_name)
    return out


def _result(s: PairStats, fmt: str, formats: dict[str, float], ref_ms: float, key: str, threads: int,
            device: str, batch_size: int, runtime: str, shape: tuple[int, ...], node: str,
            ref_name: str) -> LatencyResult:
    q1, med, q3 = quartiles(list(s.ratios))
    spread = (q3 - q1) / med if med > 0 else 0.0
    ratio = s.ratio
    return LatencyResult(
        median_ms=ratio * ref_ms, iqr_ms=spread * ratio * ref_ms, runs=len(s.ratios), threads=threads,
        memory_format=fmt, device=device, batch_size=batch_size, cv=spread / 1.349, inner=s.inner,
        converged=s.converged,
        drawn=len(s.ratios), node=node, formats=formats, runtime=runtime, input_shape=shape, ref_ratio=ratio,
        ref_ms=ref_ms, spread=spread, raw_ms=statistics.median(s.cand_ms), reference=ref_name, calibration=key)


def measure_latency(model: nn.Module, input_shape: tuple[int, int, int], batch_size: int = 1,
                    threads: int | None = None, device: str = "cpu", *, runtime: str = "torch",
                    **options: Any) -> LatencyResult:
    """Median forward time of ``model`` on a ``(batch_size, *input_shape)`` batch, in ms.

    ``threads``: intra-op threads for the measurement (default: torch's current count),
    recorded and restored. ``runtime``: ``"torch"`` or ``"onnxruntime"``. Other options as
    ``measure_round`` (``formats``, ``max_seconds`` per format, ``tolerance``, ``window``,
    ``lock=False`` for callers that serialise measurements themselves, ``lock_timeout``, ...).
    """
    return measure_round({"model": model}, input_shape, batch_size, threads, runtime=runtime, device=device,
                         **options)["model"]

