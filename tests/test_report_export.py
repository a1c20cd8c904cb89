"""Report, export and pruning on synthetic studies (no training): checked against brute force."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from search.cli_errors import CliError
from search.export import pick
from search.pareto import knee_index
from search.pruning import FrontPruner, Member, Pruned
from search.runfolder import JOURNAL, collect, open_storage, tie_groups, write_config, write_outputs

optuna.logging.set_verbosity(optuna.logging.WARNING)


def brute_front(points: list[tuple[float, float]]) -> set[int]:
    return {i for i, p in enumerate(points)
            if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)}


def synthetic_run(run_dir: Path, n: int = 60, seed: int = 0) -> tuple[list, dict]:
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"storage": JOURNAL, "study_name": "s", "objectives": ["accuracy", "latency"], "proxy": "train",
              "space": "fake", "backbone": "small"}
    write_config(run_dir, config)
    study = optuna.create_study(storage=open_storage(JOURNAL, run_dir), study_name="s",
                                directions=["maximize", "minimize"])
    pts = []
    from spaces import get_backbone

    arch = get_backbone("small").to_json()
    for i in range(n):
        acc, lat = float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.2, 2.0))
        pts.append((acc, lat))
        attrs = {"accuracy": acc, "latency_ms": lat, "latency_iqr_ms": 0.01, "params": 1000 + i, "macs": 10 ** 6,
                 "arch": arch, "choices": {"layer0": f"g{i % 3}"}}
        if i < 2:
            attrs["baseline"] = f"base{i}"
        study.add_trial(create_trial(values=[acc, lat], params={"x": i % 3},
                                     distributions={"x": CategoricalDistribution([0, 1, 2])}, user_attrs=attrs))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "boom"}))
    return pts, config


def test_collect_front_hv_knee(tmp_path: Path) -> None:
    pts, config = synthetic_run(tmp_path)
    study = optuna.load_study(study_name="s", storage=open_storage(JOURNAL, tmp_path))
    data = collect(study, config)
    assert {r["number"] for r in data.front} == brute_front(pts)
    front = [pts[r["number"]] for r in data.front]
    mins = np.array([(-a, l) for a, l in front])
    assert data.knee["number"] == data.front[knee_index(mins)]["number"]
    assert data.ref[0] == 0.0 and data.ref[1] > max(p[1] for p in pts)
    # hypervolume of a staircase, computed by rectangles
    f = sorted(front, key=lambda p: p[1])
    hv = sum(a * (nxt[1] - p[1]) for (a, _), p, nxt in zip(f, f, f[1:] + [(0, data.ref[1])]))
    assert data.hv == pytest.approx(hv)
    written = write_outputs(tmp_path, study, config)
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["knee"] == written.knee["number"] and doc["trials"]["FAIL"] == 1
    assert {b["name"] for b in doc["baselines"]} == {"base0", "base1"}
    for m in doc["members"]:
        dominated = {b["name"] for b in doc["baselines"]
                     if m["values"]["accuracy"] >= b["values"]["accuracy"]
                     and m["values"]["latency"] <= b["values"]["latency"]
                     and m["trial"] != b["trial"]}
        assert set(m["dominates_baselines"]) == dominated


def test_export_picks(tmp_path: Path) -> None:
    pts, config = synthetic_run(tmp_path, seed=3)
    study = optuna.load_study(study_name="s", storage=open_storage(JOURNAL, tmp_path))
    data = collect(study, config)
    front = brute_front(pts)
    best = max(front, key=lambda i: pts[i][0])
    fast = min(front, key=lambda i: pts[i][1])
    assert pick(data, "max-accuracy")["number"] == best
    assert pick(data, "fastest")["number"] == fast
    limit = sorted(pts[i][1] for i in front)[1]
    expect = max((i for i in front if pts[i][1] <= limit), key=lambda i: pts[i][0])
    assert pick(data, f"latency<={limit}")["number"] == expect
    assert pick(data, "trial:5")["number"] == 5
    for bad in ("latency<=0.0001", "trial:1000", "middle", f"trial:{len(pts)}"):
        with pytest.raises(CliError):
            pick(data, bad)


def test_ties_follow_measured_spread() -> None:
    rows = [{"number": i, "attrs": {"latency_ms": lat, "latency_iqr_ms": iqr}}
            for i, (lat, iqr) in enumerate([(1.0, 0.05), (1.03, 0.01), (1.5, 0.01), (1.505, 0.01), (2.0, 0.0)])]
    assert tie_groups(rows) == {0: 1, 1: 1, 2: 2, 3: 2}


def test_pruner_rules() -> None:
    members = [Member(0, {"accuracy": 0.9, "latency_ms": 1.0, "latency_iqr_ms": 0.05, "acc_epochs": [0.6, 0.8, 0.9]}),
               Member(1, {"accuracy": 0.8, "latency_ms": 0.5, "latency_iqr_ms": 0.05, "acc_epochs": [0.5, 0.7, 0.8]})]
    p = FrontPruner(["accuracy", "latency"], members, margin=0.01)
    # slower than the best-accuracy trial, but the candidate could still beat its accuracy
    # (0.9 + margin): kept
    assert p.before_training({"latency_ms": 1.5, "latency_iqr_ms": 0.05}) is None
    # at the ceiling (accuracy 1.0) nothing slower can reach the front: skipped beyond both
    # spreads, kept within them (noise could reverse the order)
    top = [Member(2, {"accuracy": 1.0, "latency_ms": 1.0, "latency_iqr_ms": 0.05}), *members]
    ceiling = FrontPruner(["accuracy", "latency"], top, margin=0.01)
    assert "trial 2" in ceiling.before_training({"latency_ms": 1.5, "latency_iqr_ms": 0.05})
    assert ceiling.before_training({"latency_ms": 1.08, "latency_iqr_ms": 0.05}) is None
    # a margin of 0 is the literal rule: the best accuracy seen so far
    assert FrontPruner(["accuracy", "latency"], members, margin=0.0).before_training(
        {"latency_ms": 1.5, "latency_iqr_ms": 0.05})
    # latency unknown before training (learned op): cannot decide
    assert p.before_training({"macs": 10}) is None
    # per epoch: behind a no-slower front member at the same epoch -> stopped
    assert p.at_epoch({"latency_ms": 0.6, "latency_iqr_ms": 0.01, "acc_epochs": [0.4]}, 1)
    # ahead of every comparable member -> kept; faster than every member -> nothing to compare
    assert p.at_epoch({"latency_ms": 0.6, "latency_iqr_ms": 0.01, "acc_epochs": [0.55]}, 1) is None
    assert p.at_epoch({"latency_ms": 0.3, "latency_iqr_ms": 0.01, "acc_epochs": [0.1]}, 1) is None
    with pytest.raises(Pruned) as info:
        p.report("epoch", {"latency_ms": 1.2, "latency_iqr_ms": 0.01, "acc_epochs": [0.6, 0.7]})
    assert "trial 0" in info.value.reason and info.value.figures["acc_epochs"] == [0.6, 0.7]
    assert FrontPruner(["accuracy", "latency"], members, enabled=False).before_training(
        {"latency_ms": 9.0, "latency_iqr_ms": 0.0}) is None


@pytest.mark.parametrize("objectives, unit, absent", [
    (["accuracy", "latency"], r"\dms ", "params"),
    (["accuracy", "params"], r"\dk params ", r"\dms"),
    (["macs", "accuracy"], r"\dM MACs ", r"\dms"),
])
def test_progress_line_labels_the_cost_objective(objectives: list[str], unit: str, absent: str) -> None:
    from search.progress import summarise

    a = objectives.index("accuracy")
    cost = {"latency": [1.0, 0.5, 1.5], "params": [12000, 3000, 50000], "macs": [2e6, 1e6, 3e6]}[objectives[1 - a]]
    acc = [0.9, 0.7, 0.8]   # the third is dominated by the first in every case
    trials = []
    for c, x in zip(cost, acc):
        values = [x, c] if a == 0 else [c, x]
        trials.append(create_trial(values=values))
    line = summarise(trials, objectives, total=5).line()
    assert "[3/5]" in line and "front 2" in line
    best = line.split("best acc: ")[1].split(" |")[0]
    assert re.search(unit, best) and not re.search(absent, best), best
    parts = best.split(", ")
    assert len(parts) == 2 and parts[0].endswith("0.700") and parts[1].endswith("0.900")
