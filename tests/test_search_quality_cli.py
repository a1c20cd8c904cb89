"""bench/search_quality hands its search options to every arm's search.run settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.search_quality import arm_cli, build_parser
from search.options import build_parser as run_parser, settings_from_args

ROOT = Path(__file__).resolve().parents[1]


def _arm_settings(argv: list[str]):
    return settings_from_args(run_parser().parse_args(arm_cli(build_parser().parse_args(argv))), channels=1)


def test_prune_margin_reaches_every_arm_and_defaults_to_search_runs():
    assert _arm_settings(["--prune-margin", "0.035"]).prune_margin == 0.035
    default = run_parser().parse_args([]).prune_margin
    assert _arm_settings([]).prune_margin == default


def test_the_arms_train_what_the_benchmark_says():
    s = _arm_settings(["--space", "mixed", "--epochs", "4", "--data-limit", "900"])
    assert (s.epochs, s.data_limit, s.data) == (4, 900, "fashion-mnist")
    quick = _arm_settings(["--quick"])
    assert (quick.epochs, quick.data_limit, quick.latency_seconds) == (2, 1500, 0.3)


def test_a_bad_prune_margin_is_one_error_line_before_any_arm_runs():
    res = subprocess.run([sys.executable, "bench/search_quality.py", "--prune-margin", "-1", "--seeds", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith("error: --prune-margin"), res.stderr
    assert "Traceback" not in res.stderr


def test_analyse_refuses_a_file_that_keep_did_not_write_in_one_error_line(tmp_path):
    for i, text in enumerate(["{not json", "[1]", "{}", '{"screened": [{"hv": 1}]}']):
        bad = tmp_path / f"bad{i}.json"
        bad.write_text(text)
        res = subprocess.run([sys.executable, "bench/search_quality.py", "--analyse", str(bad)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip().splitlines() == [res.stderr.strip()] and res.stderr.startswith("error: --analyse")
    res = subprocess.run([sys.executable, "bench/search_quality.py", "--analyse", str(tmp_path / "none.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and res.stderr.startswith("error: --analyse") and "No such file" in res.stderr
