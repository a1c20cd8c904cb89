"""Polling helpers shared by the tests that watch processes and run folders (Linux ``/proc``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable


def wait_until(pred: Callable[[], bool], timeout: float = 120.0, interval: float = 0.25) -> None:
    """Return once ``pred()`` is true; ``AssertionError`` after ``timeout`` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def alive(pid: int) -> bool:
    """Running, not a zombie (a reparented child may wait for a reaper that never comes)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
