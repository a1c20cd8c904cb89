"""``--workers 2``: the workers stop when the main process is killed, and Ctrl-C to the main
process alone stops them and finishes as a one-worker run does (issue 15, processes)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from polling import alive
from search_cli import TINY, popen

from search.runfolder import load_run


def _trials(run_dir: Path) -> list:
    try:
        return load_run(run_dir)[1].get_trials(deepcopy=False)
    except Exception:
        return []


def _start_two_busy_workers(tmp_path: Path) -> tuple[object, Path, set[int]]:
    proc = popen("--space", "groups", "--trials", "6", "--no-baselines", "--workers", "2", *TINY,
                 "--out", str(tmp_path), "--name", "w", extra_env={"GROUPNAS_LATENCY_LOCK": str(tmp_path / "l")},
                 hooks={"sleep": 30})
    run_dir = tmp_path / "w"
    end = time.time() + 180
    pids: set[int] = set()
    while time.time() < end and proc.poll() is None:
        pids = {int(t.user_attrs["worker"].rpartition(":")[2]) for t in _trials(run_dir)
                if t.state.name == "RUNNING" and "arch" in t.user_attrs}
        if len(pids) == 2:
            break
        time.sleep(0.5)
    assert len(pids) == 2, "both workers should be running a trial"
    return proc, run_dir, pids


def _wait_gone(pids: set[int], timeout: float = 20.0) -> set[int]:
    end = time.time() + timeout
    while time.time() < end and any(alive(p) for p in pids):
        time.sleep(0.25)
    return {p for p in pids if alive(p)}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_stop_when_the_main_process_is_killed(tmp_path: Path) -> None:
    proc, run_dir, pids = _start_two_busy_workers(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _wait_gone(pids), "workers outlived their killed parent"
    trials = _trials(run_dir)
    # an orderly stop: the trials they were running are told FAIL (interrupted) and queued again
    assert not any(t.state.name == "RUNNING" for t in trials)
    assert sum(bool(t.user_attrs.get("interrupted")) for t in trials) == 2
    assert sum(t.user_attrs.get("retry_of") is not None for t in trials) == 2


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_ctrl_c_to_the_main_process_stops_the_workers(tmp_path: Path) -> None:
    proc, run_dir, pids = _start_two_busy_workers(tmp_path)
    os.kill(proc.pid, signal.SIGINT)            # the main process alone, as a supervisor sends it
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "--resume" in out
    assert not _wait_gone(pids, timeout=5.0)
    trials = _trials(run_dir)
    assert not any(t.state.name == "RUNNING" for t in trials)
    assert sum(bool(t.user_attrs.get("interrupted")) for t in trials) == 2
