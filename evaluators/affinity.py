"""Keep a single-threaded measurement on one core for its whole window.

On a VM the scheduler moves a thread between vCPUs, and two vCPUs need not run alike (a busy
sibling hyper-thread, another guest on the host core). A net timed partly on one and partly on
the other lands between two levels, and which mix a process gets differs from one process to
the next. Measured here (``bench/latency_repro.py --shape 3x224x224 --runtime onnxruntime``, 18
nets, 3 processes): median CV across processes 5.5-8.7 % unpinned, 1.3-4.9 % with the processes
pinned by ``taskset``. ``pinned(1)`` pins only the calling thread, to the core it is on, and
puts the old affinity back afterwards; more threads (torch's or onnxruntime's own pools) are
left to the scheduler.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

__all__ = ["pinned", "current_cpu"]


def current_cpu() -> int | None:
    """The core the calling thread runs on now (``/proc/thread-self/stat``, field 39), or None."""
    try:
        with open("/proc/thread-self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[36])  # fields after the command name start at field 3
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def pinned(threads: int) -> Iterator[int | None]:
    """Within the block the calling thread runs on one core (yielded), when ``threads`` is 1 and
    it may run on more than one; otherwise (or where affinity cannot be set) nothing changes and
    None is yielded."""
    try:
        allowed = os.sched_getaffinity(0) if threads == 1 and hasattr(os, "sched_setaffinity") else set()
        cpu = current_cpu()
        cpu = cpu if cpu in allowed else min(allowed, default=None)
        if len(allowed) < 2 or cpu is None:
            cpu = None
        else:
            os.sched_setaffinity(0, {cpu})
    except OSError:
        cpu = None
    try:
        yield cpu
    finally:
        if cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, allowed)
