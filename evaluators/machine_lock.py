"""The machine-wide latency lock and the compute slots that yield to it.

One measurement at a time per machine: every measurement holds an exclusive ``fcntl`` file
lock (``$GROUPNAS_LATENCY_LOCK``, default ``<tempdir>/groupnas-latency.lock``); other code
that must not overlap a measurement reuses it through ``measurement_lock()``. A training step
holds a shared ``compute_slot()``: steps of many trials run together, never while a
measurement on this machine is timing (a writer-preferring reader/writer lock over two files).
Re-exported by ``evaluators.latency``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from typing import Any, Iterator

__all__ = ["LatencyError", "LockBusy", "measurement_lock", "compute_slot", "lock_path", "LOCK_ENV"]

LOCK_ENV = "GROUPNAS_LATENCY_LOCK"


class LatencyError(RuntimeError):
    """The measurement cannot run as asked (e.g. ``device="cuda"`` without a GPU)."""


class LockBusy(LatencyError):
    """Another process holds the measurement lock and we were asked not to wait (longer)."""


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
