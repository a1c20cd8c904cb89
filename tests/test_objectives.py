"""One objective registry: the progress line and the report agree, and every figure reaches the files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import create_trial

from search.objectives import FIGURES, OBJECTIVES, reference, to_min
from search.progress import summarise
from search.runfolder import JOURNAL, collect, open_storage, write_outputs

optuna.logging.set_verbosity(optuna.logging.WARNING)

POINTS = [(12.0, 1.0), (30.0, 2.0), (45.0, 4.0), (20.0, 3.0)]   # zero-cost scores are not in [0, 1]


def _study(storage=None) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    for acc, lat in POINTS:
        study.add_trial(create_trial(values=[acc, lat], user_attrs={"accuracy": acc, "latency_ms": lat,
                                                                    "latency_batch": 8, "latency_runs": 99}))
    return study


@pytest.mark.parametrize("proxy", ["train", "synflow"])
def test_progress_line_and_report_use_one_reference_point(proxy: str) -> None:
    study = _study()
    config = {"objectives": ["accuracy", "latency"], "proxy": proxy}
    report_hv = collect(study, config).hv
    line_hv = summarise(study.get_trials(), ["accuracy", "latency"], total=4, proxy=proxy).hv
    assert report_hv == pytest.approx(line_hv)
    # by hand: front (45, 4), (30, 2), (12, 1); reference latency 4 + 0.1 * 3 = 4.3
    acc_ref = 0.0 if proxy == "train" else 12.0 - 0.1 * (45.0 - 12.0)
    hv = (45 - acc_ref) * (4.3 - 4) + (30 - acc_ref) * (4 - 2) + (12 - acc_ref) * (2 - 1)
    assert report_hv == pytest.approx(hv)


def test_reference_rule_in_natural_units() -> None:
    pts = to_min([[0.9, 1.0], [0.5, 3.0]], ["accuracy", "latency"])
    assert list(pts[0]) == [-0.9, 1.0]
    assert list(reference(pts, ["accuracy", "latency"], "train")) == pytest.approx([0.0, 3.2])
    assert OBJECTIVES["latency"].fmt(0.4134) == "0.413ms" and OBJECTIVES["params"].fmt(12300) == "12.3k params"


def test_every_figure_reaches_trials_csv_and_pareto_json(tmp_path: Path) -> None:
    """The latency batch and run count were dropped before the figures had one list."""
    study = _study(open_storage(JOURNAL, tmp_path))
    config = {"objectives": ["accuracy", "latency"], "proxy": "train", "storage": JOURNAL, "study_name": "s"}
    write_outputs(tmp_path, study, config)
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert set(FIGURES) <= set(rows[0]) and rows[0]["latency_batch"] == "8" and rows[0]["latency_runs"] == "99"
    member = json.loads((tmp_path / "pareto.json").read_text())["members"][0]
    assert member["figures"]["latency_batch"] == 8
