"""The search benchmarks still run against the product's current API (slow: each trains nets).

``bench/search_quality.py`` drives the product's own trial loop; when ``search/`` was
restructured it stopped running and nobody noticed until its figures were wanted. This runs it
at its smallest: one seed, two searched trials per sampler, digits, accuracy and MACs (no
latency measurement), and checks the figures it prints.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from search_cli import ROOT, env, lock_env


@pytest.mark.slow
def test_search_quality_runs_both_samplers_and_prints_their_figures(tmp_path):
    keep = tmp_path / "runs.json"
    res = subprocess.run([sys.executable, "bench/search_quality.py", "--quick", "--seeds", "1", "--trials", "2",
                          "--data", "digits", "--objectives", "accuracy,macs", "--keep", str(keep)],
                         cwd=ROOT, env=env(**lock_env(tmp_path)), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for sampler in ("screened", "random"):
        line = rf"{sampler} seed 0: HV [0-9.]+ .* searched trials dominate \d+/6 baselines"
        assert re.search(line, res.stdout), res.stdout
    assert re.search(r"screened: architectures shared with random search at the same seed: \[\d\]", res.stdout)
    assert keep.is_file()
