"""``--workers N`` of the Optuna backend: N spawned processes on one storage, tied to the parent.

Each worker runs ``optuna_loop.worker_loop`` quietly (the parent prints progress). A worker
stops when its parent dies, however it dies (SIGKILL included): ``prctl(PR_SET_PDEATHSIG,
SIGINT)`` on Linux, and a watchdog thread that sees the parent pid change on any system; both
end in SIGINT, i.e. the same orderly stop as Ctrl-C (the running trial is told FAIL,
interrupted, and queued again), then ``os._exit`` after ``GRACE_S`` if that did not finish.
SIGINT to the parent alone (a supervisor's Ctrl-C) is forwarded to every worker, and the parent
returns as a single-worker run does.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from ..config import RunConfig
from ..hooks import Hooks
from ..interrupts import Interrupts

__all__ = ["run_workers", "die_with_parent", "GRACE_S"]

PR_SET_PDEATHSIG = 1
GRACE_S = 30.0
POLL_S = 0.5


def die_with_parent(parent: int, grace_s: float = GRACE_S) -> None:
    """SIGINT this process when ``parent`` is gone; exit after ``grace_s`` more."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGINT), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watchdog alone
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(grace_s)
        os._exit(130)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_entry(run_dir: str, config: RunConfig, worker_index: int, deadline: float | None, hooks: Hooks,
                  parent: int) -> None:
    """Entry point of a spawned worker process."""
    import optuna

    from ..storage import open_storage
    from .optuna_loop import worker_loop

    die_with_parent(parent)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    hooks.worker_started()
    interrupts = Interrupts()
    with interrupts.installed():
        storage = open_storage(config.storage, Path(run_dir))
        worker_loop(Path(run_dir), config, storage, worker_index, deadline, interrupts=interrupts, hooks=hooks)


def run_workers(run_dir: Path, config: RunConfig, deadline: float | None, interrupts: Interrupts, hooks: Hooks,
                progress: Callable[[], None], finished: Callable[[], int]) -> bool:
    """Start ``config.workers`` processes, print ``progress()`` when ``finished()`` changes, wait;
    False if interrupted. A worker that crashed raises ``RuntimeError``."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_entry, args=(str(run_dir), config, i, deadline, hooks, os.getpid()),
                         daemon=False) for i in range(config.workers)]
    for p in procs:
        p.start()
    forwarded_at: float | None = None
    last = -1
    while any(p.is_alive() for p in procs):
        time.sleep(POLL_S)
        if interrupts.stop and forwarded_at is None:
            forwarded_at = time.time()
            for p in procs:
                if p.is_alive() and p.pid is not None:
                    os.kill(p.pid, signal.SIGINT)
        if forwarded_at is not None and time.time() - forwarded_at > GRACE_S:
            for p in procs:
                p.kill()
        n = finished()
        if n != last:
            last = n
            progress()
    for p in procs:
        p.join()
    progress()
    crashed = [f"worker {i} exited with code {p.exitcode}" for i, p in enumerate(procs)
               if p.exitcode not in (0, None) and not interrupts.stop]
    if crashed:
        raise RuntimeError("; ".join(crashed) + " (see its traceback above)")
    return not interrupts.stop
