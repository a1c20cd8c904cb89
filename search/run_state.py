"""Whether a run folder's search is in progress, finished, or was killed.

``search.run`` writes a marker ``.running-<host>-<pid>.json`` into the run folder when it starts
and removes it when it stops by itself (budget done, timeout, Ctrl-C). A marker whose process is
gone therefore means the search was killed (or crashed); ``describe`` says so, and also names
trials left RUNNING by a process of this machine that is gone (runs made before the marker, or a
worker killed alone). A process is identified by its pid and its start time (``/proc``), so a
reused pid is not taken for the run. Cost: one small file per running ``search.run``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

__all__ = ["mark_started", "mark_stopped", "describe", "MARKER_PREFIX"]

MARKER_PREFIX = ".running-"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None if unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _start_time(pid)
    return start is None or now is None or now == start


def _marker(run_dir: Path, pid: int | None = None) -> Path:
    return run_dir / f"{MARKER_PREFIX}{socket.gethostname()}-{pid or os.getpid()}.json"


def _markers(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(run_dir.glob(MARKER_PREFIX + "*.json")):
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(p.read_text())
            if isinstance(doc, dict) and isinstance(doc.get("pid"), int):
                out.append(dict(doc, path=p))
    return out


def mark_started(run_dir: str | Path) -> Path:
    """Write this process's marker (and drop the markers of this machine's dead runs: a resumed
    run takes over from them)."""
    run_dir = Path(run_dir)
    host = socket.gethostname()
    for m in _markers(run_dir):
        if m.get("host") == host and not _alive(m["pid"], m.get("start")):
            with contextlib.suppress(OSError):
                m["path"].unlink()
    path = _marker(run_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "host": host, "start": _start_time(os.getpid()),
                               "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    os.replace(tmp, path)
    return path


def mark_stopped(run_dir: str | Path) -> None:
    """Remove this process's marker: the search stopped by itself."""
    with contextlib.suppress(OSError):
        _marker(Path(run_dir)).unlink()


def _left_running(study: Any, host: str) -> list[int]:
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name != "RUNNING":
            continue
        w_host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if w_host == host and pid.isdigit() and not _alive(int(pid)):
            out.append(t.number)
    return out


def describe(run_dir: str | Path, study: Any = None) -> str | None:
    """A line on the state of the run's search, or None when it finished by itself."""
    run_dir = Path(run_dir)
    host = socket.gethostname()
    lines = []
    resume = f"continue it with python -m search.run --resume {run_dir}"
    for m in _markers(run_dir):
        since = f"started {m.get('started', '?')}"
        if m.get("host") != host:
            lines.append(f"note: a search of this run on {m.get('host')} (pid {m['pid']}, {since}) has not "
                         "finished: it is still running there, or was killed")
        elif _alive(m["pid"], m.get("start")):
            lines.append(f"note: the search is still in progress (pid {m['pid']}, {since}): "
                         "this shows the trials finished so far")
        else:
            lines.append(f"note: this run was killed: its search (pid {m['pid']}, {since}) stopped without "
                         f"finishing. Every finished trial is kept; {resume}")
    stale = _left_running(study, host) if study is not None else []
    if stale:
        lines.append(f"note: trial(s) {', '.join(map(str, stale))} were left running by a process that is gone "
                     f"(killed): they are retried on resume; {resume}")
    return "\n".join(lines) or None
