"""Ctrl-C that never tears a storage write, and the run folder's cross-process lock.

``Interrupts``: SIGINT raises ``KeyboardInterrupt`` only inside ``interruptible()`` (the
evaluation of a trial); elsewhere it only sets ``stop``, so the loop ends after the write in
progress. ``file_lock``: an exclusive ``flock`` on a file of the run folder (the budget check
and ``study.ask()`` of local workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from pathlib import Path
from typing import Any, Iterator

__all__ = ["Interrupts", "file_lock"]


class Interrupts:
    """SIGINT raises KeyboardInterrupt only inside ``interruptible()``; elsewhere it sets ``stop``."""

    def __init__(self) -> None:
        self.stop = False
        self.inside = False

    def handler(self, signum: int, frame: Any) -> None:
        self.stop = True
        if self.inside:
            self.inside = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.stop:
            raise KeyboardInterrupt
        self.inside = True
        try:
            yield
        finally:
            self.inside = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        try:
            old = signal.signal(signal.SIGINT, self.handler)
        except ValueError:  # not the main thread: leave signals alone
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
