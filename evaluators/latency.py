"""Measured inference latency: ``measure_latency(model, input_shape) -> LatencyResult``.

The model is timed on a private copy in eval mode under ``torch.inference_mode``, with a fixed
thread count (the caller's is restored afterwards), after a warm-up, in both memory formats
(NCHW ``contiguous`` and NHWC ``channels_last``: grouped and depthwise convs differ by up to
several times between them on CPU); the faster is reported with the format used.

Timing (nanoGPT ``bench.py`` style): each sample is the mean of ``inner`` back-to-back forward
passes, ``inner`` chosen so a sample lasts about ``min_sample_ms``. Samples are drawn until the
last ``window`` of them agree -- relative spread ``IQR / median <= tolerance`` -- and the
median and IQR of that window are reported; a burst of interference from other processes thus
delays the answer instead of skewing it. At the time cap (``max_seconds`` per format) the
window with the smallest spread is reported and ``converged`` is False. On CUDA each sample
is bracketed by CUDA events and synchronised.

One measurement at a time per machine: every measurement holds an exclusive ``fcntl`` file
lock (``$GROUPNAS_LATENCY_LOCK``, default ``<tempdir>/groupnas-latency.lock``); other code
that must not overlap a measurement reuses it through ``measurement_lock()``.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

__all__ = ["LatencyResult", "LatencyError", "LockBusy", "measure_latency", "measurement_lock", "compute_slot",
           "lock_path", "FORMATS"]

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
LOCK_ENV = "GROUPNAS_LATENCY_LOCK"


class LatencyError(RuntimeError):
    """The measurement cannot run as asked (e.g. ``device="cuda"`` without a GPU)."""


class LockBusy(LatencyError):
    """Another process holds the measurement lock and we were asked not to wait (longer)."""


@dataclass(frozen=True)
class LatencyResult:
    """Per-forward latency of one batch: median and IQR over the ``runs`` accepted samples, ms.

    ``cv`` is the robust coefficient of variation ``(IQR / 1.349) / median``; ``inner`` the
    forward passes averaged per sample; ``drawn`` the samples taken in all (earlier, noisier
    windows are discarded); ``converged`` whether the tolerance was met before the time cap;
    ``formats`` maps every memory format tried to its median; ``node`` is the host name.
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- the lock
#
# A writer-preferring reader/writer lock over two files. A measurement takes the gate, then the
# lock file, both exclusively: it waits for compute steps in flight to end, and new ones wait
# at the gate meanwhile. A compute step (``compute_slot``: one training batch of a trial) takes
# the gate shared and the lock file shared, and lets the gate go: steps of many trials run
# together, but never while a measurement on this machine is timing.

def lock_path() -> str:
    """The lock file: ``$GROUPNAS_LATENCY_LOCK`` or ``<tempdir>/groupnas-latency.lock``."""
    return os.environ.get(LOCK_ENV) or os.path.join(tempfile.gettempdir(), "groupnas-latency.lock")


_guard = threading.RLock()
_held: dict[str, Any] = {"pid": None, "depth": 0, "fd": None}


@contextlib.contextmanager
def measurement_lock(blocking: bool = True, timeout: float | None = None) -> Iterator[None]:
    """Hold the machine-wide latency lock (exclusive ``flock``) for the ``with`` body.

    Re-entrant within a process (a measurement inside a held lock does not deadlock).
    ``blocking=False``: raise ``LockBusy`` at once if another process holds it; ``timeout``:
    wait at most that many seconds, then raise ``LockBusy``.
    """
    if not _guard.acquire(blocking=blocking, timeout=-1 if timeout is None or not blocking else timeout):
        raise LockBusy(f"latency lock {lock_path()} is held by another thread of this process")
    try:
        if _held["pid"] != os.getpid():  # fresh process (or forked child): nothing held here
            _held.update(pid=os.getpid(), depth=0, fd=None)
        if _held["depth"] == 0:
            _held["fd"] = _acquire_file_lock(blocking, timeout)
        _held["depth"] += 1
        try:
            yield
        finally:
            _held["depth"] -= 1
            if _held["depth"] == 0:
                fd, _held["fd"] = _held["fd"], None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
    finally:
        _guard.release()


@contextlib.contextmanager
def compute_slot() -> Iterator[None]:
    """Hold a shared slot for one short compute step (a training batch).

    No latency measurement on this machine runs while any slot is held, and a waiting
    measurement keeps new slots from starting. Inside this process's own measurement the slot
    is a no-op. A lock file that cannot be opened makes the slot a no-op too (training must
    not fail for it).
    """
    if _held["pid"] == os.getpid() and _held["depth"] > 0:
        yield
        return
    try:
        gate = _flock_path(_gate_path(), fcntl.LOCK_SH, True, None)
    except LatencyError:
        yield
        return
    try:
        fd = _flock_path(lock_path(), fcntl.LOCK_SH, True, None)
    finally:
        fcntl.flock(gate, fcntl.LOCK_UN)
        os.close(gate)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire_file_lock(blocking: bool, timeout: float | None) -> int:
    """Exclusive lock on the gate (stops new compute slots), then on the lock file itself."""
    gate = _flock_path(_gate_path(), fcntl.LOCK_EX, blocking, timeout)
    try:
        return _flock_path(lock_path(), fcntl.LOCK_EX, blocking, timeout)
    finally:
        fcntl.flock(gate, fcntl.LOCK_UN)
        os.close(gate)


def _gate_path() -> str:
    return lock_path() + ".gate"


def _flock_path(path: str, mode: int, blocking: bool, timeout: float | None) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise LatencyError(f"cannot open the latency lock file {path} ({err}); set {LOCK_ENV} "
                           "to a writable path") from None
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            flags = mode if (blocking and deadline is None) else mode | fcntl.LOCK_NB
            fcntl.flock(fd, flags)
            return fd
        except BlockingIOError:
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                os.close(fd)
                waited = "" if not blocking else f" after {timeout} s"
                raise LockBusy(f"latency lock {path} is held by another process{waited}") from None
            time.sleep(0.01)


# ----------------------------------------------------------------------------- timing

def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


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


def _time_format(model: nn.Module, x: torch.Tensor, dev: torch.device, warmup_s: float,
                 min_sample_ms: float, window: int, max_runs: int, max_seconds: float,
                 tolerance: float) -> tuple[list[float], int, int, bool]:
    """The accepted window of samples (ms per forward), ``inner``, samples drawn, converged."""
    cuda = dev.type == "cuda"

    def run(n: int) -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                model(x)
            end.record()
            torch.cuda.synchronize(dev)
            return start.elapsed_time(end) / n
        t0 = time.perf_counter_ns()
        for _ in range(n):
            model(x)
        return (time.perf_counter_ns() - t0) / 1e6 / n

    # Warm-up (allocator, kernel selection, caches) and calibration of `inner`.
    t_end = time.perf_counter() + warmup_s
    one = run(1)
    while time.perf_counter() < t_end:
        one = min(one, run(1))
    inner = max(1, int(min_sample_ms / max(one, 1e-3)))
    samples: list[float] = []
    best: tuple[float, list[float]] = (float("inf"), [])
    t_cap = time.perf_counter() + max_seconds
    while len(samples) < max_runs:
        samples.append(run(inner))
        if len(samples) >= window:
            recent = samples[-window:]
            q1, med, q3 = _quartiles(recent)
            spread = (q3 - q1) / med if med > 0 else 0.0
            if spread <= tolerance:
                return recent, inner, len(samples), True
            if spread < best[0]:
                best = (spread, recent)
        if time.perf_counter() >= t_cap:
            break
    return (best[1] or samples), inner, len(samples), False


def measure_latency(model: nn.Module, input_shape: tuple[int, int, int], batch_size: int = 1,
                    threads: int | None = None, device: str = "cpu", *,
                    formats: tuple[str, ...] = ("contiguous", "channels_last"),
                    warmup_s: float = 0.1, min_sample_ms: float = 2.0, window: int = 20,
                    max_runs: int = 2000, max_seconds: float = 2.0, tolerance: float = 0.04,
                    lock: bool = True, lock_timeout: float | None = None) -> LatencyResult:
    """Median forward time of ``model`` on a ``(batch_size, *input_shape)`` batch, in ms.

    ``threads``: torch intra-op threads for the measurement (default: the current count),
    recorded in the result and restored afterwards. ``formats``: the memory formats tried;
    the fastest is reported. ``lock=False`` skips the machine-wide lock (only for callers that
    already serialise measurements some other way). The caller's model is not changed.
    """
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape)):
        raise ValueError(f"input_shape must be (C, H, W) positive integers, got {input_shape!r}")
    for name, value in (("batch_size", batch_size), ("window", window), ("max_runs", max_runs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    if not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"formats must be a non-empty subset of {tuple(FORMATS)}, got {formats!r}")
    for name, value in (("max_seconds", max_seconds), ("tolerance", tolerance)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    dev = _device(device)

    work = copy.deepcopy(model).to(dev).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn((batch_size, *input_shape), generator=gen).to(dev)

    old_threads = torch.get_num_threads()
    n_threads = threads if threads is not None else old_threads
    per_format: dict[str, tuple[list[float], int, int, bool]] = {}
    guard = measurement_lock(timeout=lock_timeout) if lock else contextlib.nullcontext()
    with guard:
        try:
            torch.set_num_threads(n_threads)
            with torch.inference_mode():
                for name in formats:
                    fmt = FORMATS[name]
                    work = work.to(memory_format=fmt)
                    x = x0.contiguous(memory_format=fmt)
                    per_format[name] = _time_format(work, x, dev, warmup_s, min_sample_ms, window,
                                                    max(max_runs, window), max_seconds, tolerance)
        finally:
            torch.set_num_threads(old_threads)

    medians = {name: statistics.median(s) for name, (s, _, _, _) in per_format.items()}
    best = min(medians, key=medians.__getitem__)
    samples, inner, drawn, converged = per_format[best]
    q1, med, q3 = _quartiles(samples)
    return LatencyResult(
        median_ms=med, iqr_ms=q3 - q1, runs=len(samples), threads=n_threads, memory_format=best,
        device=str(dev), batch_size=batch_size, cv=((q3 - q1) / 1.349) / med if med > 0 else 0.0,
        inner=inner, converged=converged, node=socket.gethostname(), formats=medians, drawn=drawn,
    )
