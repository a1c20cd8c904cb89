"""bench/proxy_correlation --resume: a run killed after some archs ends with the same figures as
one that was never stopped, and a file of other settings is refused with one error line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from search_cli import ROOT, env

TINY = ["--data", "digits", "--n", "3", "--ref-epochs", "1", "--train-examples", "300", "--proxy-limit", "400",
        "--proxy-val", "150", "--threads", "1", "--batch", "16"]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/proxy_correlation.py", *TINY, "--out", str(out), *extra],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)


def _cut(doc: dict, keep: int) -> dict:
    """``doc`` as a run killed after ``keep`` archs left it (per-arch lists cut, no table yet)."""
    cut = dict(doc, table=None, reference_noise=None)
    cut["references"] = [r[:keep] for r in doc["references"]]
    cut["reference"] = cut["references"][0]
    cut["values"] = {k: v[:keep] for k, v in doc["values"].items()}
    return cut


@pytest.mark.slow
def test_a_resumed_run_ends_where_an_unbroken_one_does(tmp_path):
    whole = tmp_path / "whole.json"
    res = _run(whole)
    assert res.returncode == 0, res.stderr[-2000:]
    done = json.loads(whole.read_text())
    assert len(done["reference"]) == 3 and done["table"]

    killed = tmp_path / "killed.json"
    killed.write_text(json.dumps(_cut(done, 1)))
    res = _run(killed, "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming: reference seeds done [1], proxies done 1, of 3 archs" in res.stdout
    assert "arch 1/3" not in res.stdout  # the saved arch is not trained again
    back = json.loads(killed.read_text())
    assert back["references"] == done["references"]  # training is seeded per arch: same numbers
    for name, v in done["values"].items():
        assert back["values"][name] == pytest.approx(v, nan_ok=True), name
    for name, row in done["table"].items():
        assert back["table"][name]["spearman"] == pytest.approx(row["spearman"], nan_ok=True), name

    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(_cut(done, 1), settings={**done["settings"], "ref_epochs": 9})))
    res = _run(other, "--resume")
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith("error:") and "Traceback" not in res.stderr
