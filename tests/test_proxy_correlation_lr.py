"""bench/proxy_correlation --proxy-lr: each learning-rate arm is the default proxy trained at
another peak learning rate, and nothing else differs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from search_cli import ROOT, env
from test_proxy_correlation_resume import TINY

from evaluators.train_proxy import DEFAULT_EPOCHS, DEFAULT_LR


def _run(out, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/proxy_correlation.py", *TINY, "--out", str(out), *extra],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)


def test_a_learning_rate_arm_at_the_default_rate_is_the_default_proxy(tmp_path):
    out = tmp_path / "lr.json"
    res = _run(out, "--proxy-lr", str(DEFAULT_LR), "--proxy-lr", "0.01")
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(out.read_text())
    default = doc["values"][f"train-{DEFAULT_EPOCHS}ep"]
    same = doc["values"][f"train-{DEFAULT_EPOCHS}ep-lr{DEFAULT_LR:g}"]
    low = doc["values"][f"train-{DEFAULT_EPOCHS}ep-lr0.01"]
    assert len(default) == len(same) == len(low) == 3
    assert same == pytest.approx(default, abs=1e-12)  # same seed, init, data: the same training
    assert low != pytest.approx(default, abs=1e-6)  # a tenth of the rate trains another net
    assert doc["settings"]["proxy_lrs"] == [DEFAULT_LR, 0.01]
    assert f"train-{DEFAULT_EPOCHS}ep-lr0.01" in doc["table"]


def test_a_learning_rate_that_is_not_positive_is_one_error_line(tmp_path):
    res = _run(tmp_path / "bad.json", "--proxy-lr", "0")
    assert res.returncode != 0
    assert "error: --proxy-lr must be a positive number" in res.stderr.strip().splitlines()[-1]
    assert "Traceback" not in res.stderr
