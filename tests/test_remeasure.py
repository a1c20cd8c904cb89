"""search.remeasure / search.targets on a tiny run folder (an Optuna study built here, tiny nets).

The run folder is a real one (journal storage, config.json, pareto.json written by
``search.runfolder.write_outputs``) whose trials carry small architectures of different costs;
fronts per target are checked against a brute-force dominance test written here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from search.cli_errors import CliError
from search.runfolder import JOURNAL, open_storage, write_config, write_outputs
from search.targets import front_on_target, fronts, load_targets, merge_targets, stable_members, target_name
from spaces import Arch, HeadSpec, LayerSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]


def tiny_arch(width: int, groups: int, shuffle: bool = False) -> Arch:
    """A 3-layer net on 1x16x16 inputs: fast to build, export and time."""
    stem = LayerSpec("conv", width, 3, 1)
    op = "group" if groups > 1 else "conv"
    params = {"groups": groups, "shuffle": shuffle} if groups > 1 else {}
    layers = (LayerSpec(op, width, 3, 2, params=params), LayerSpec(op, 2 * width, 3, 2, params=params))
    return Arch((1, 16, 16), 10, stem, layers, HeadSpec("gap"))


#: (accuracy, search latency ms, arch, baseline name)
TRIALS = [
    (0.90, 0.50, tiny_arch(32, 1), "dense"),
    (0.85, 0.30, tiny_arch(32, 4), "group-g4"),
    (0.80, 0.20, tiny_arch(16, 4, True), None),
    (0.70, 0.40, tiny_arch(16, 1), None),       # dominated in the search
    (0.60, 0.10, tiny_arch(8, 2), None),
]


def tiny_run(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"storage": JOURNAL, "study_name": "tiny", "objectives": ["accuracy", "latency"], "proxy": "train",
              "space": "groups", "backbone": "tiny", "settings": {"seed": 0}}
    write_config(run_dir, config)
    study = optuna.create_study(storage=open_storage(JOURNAL, run_dir), study_name="tiny",
                                directions=["maximize", "minimize"])
    for i, (acc, lat, arch, base) in enumerate(TRIALS):
        attrs = {"accuracy": acc, "latency_ms": lat, "latency_iqr_ms": 0.001, "params": 1000, "macs": 10 ** 5,
                 "arch": arch.to_json(), "choices": {"layer0": f"t{i}"}}
        if base:
            attrs["baseline"] = base
        study.add_trial(create_trial(values=[acc, lat], params={"x": i % 2},
                                     distributions={"x": CategoricalDistribution([0, 1])}, user_attrs=attrs))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "boom"}))
    write_outputs(run_dir, study, config)
    return run_dir


def brute_front(points: dict[int, tuple[float, float]]) -> list[int]:
    """Members that no other member beats: accuracy >= and latency <=, one strictly."""
    return sorted(n for n, (a, l) in points.items()
                  if not any(a2 >= a and l2 <= l and (a2, l2) != (a, l) for m, (a2, l2) in points.items() if m != n))


@pytest.fixture(scope="module")
def remeasured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = tiny_run(tmp_path_factory.mktemp("remeasure") / "run")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT),
               GROUPNAS_LATENCY_LOCK=str(run_dir.parent / "latency.lock"))
    res = subprocess.run([sys.executable, "-m", "search.remeasure", str(run_dir), "--threads", "1", "--batch", "1,4",
                          "--runtime", "torch,onnxruntime", "--seconds", "0.1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return run_dir, res.stdout


def test_targets_file_follows_the_contract(remeasured: tuple[Path, str]) -> None:
    run_dir, out = remeasured
    doc = json.loads((run_dir / "targets.json").read_text())
    names = {target_name(rt, "cpu", 1, b) for rt in ("torch", "onnxruntime") for b in (1, 4)}
    assert set(doc["targets"]) == names
    pareto = json.loads((run_dir / "pareto.json").read_text())
    expected = {m["trial"] for m in pareto["members"]} | {b["trial"] for b in pareto["baselines"]}
    assert expected == {0, 1, 2, 4}            # front (0, 1, 2, 4) + baselines (0, 1); 3 is dominated
    for t in doc["targets"].values():
        assert t["runtime"] in ("torch", "onnxruntime") and t["device"] == "cpu" and t["threads"] == 1
        assert t["batch"] in (1, 4) and isinstance(t["node"], str) and t["node"]
        assert {int(k) for k in t["members"]} == expected
        for m in t["members"].values():
            assert m["median_ms"] > 0 and m["iqr_ms"] >= 0 and m["memory_format"] in ("contiguous", "channels_last")
        if t["runtime"] == "onnxruntime":
            assert all(m["memory_format"] == "contiguous" for m in t["members"].values())
    # a batch of 4 takes longer than a batch of 1 for the biggest net, on both runtimes
    for rt in ("torch", "onnxruntime"):
        b1 = doc["targets"][target_name(rt, "cpu", 1, 1)]["members"]["0"]["median_ms"]
        b4 = doc["targets"][target_name(rt, "cpu", 1, 4)]["members"]["0"]["median_ms"]
        assert b4 > b1
    assert "on the front of every target" in out and "torch-cpu-t1-b4" in out


def test_fronts_match_brute_force(remeasured: tuple[Path, str]) -> None:
    run_dir, _ = remeasured
    targets = load_targets(run_dir)
    acc = {i: t[0] for i, t in enumerate(TRIALS)}
    all_fronts = fronts(run_dir)
    for name, t in targets.items():
        pts = {int(k): (acc[int(k)], m["median_ms"]) for k, m in t["members"].items()}
        assert front_on_target(run_dir, name) == brute_front(pts) == all_fronts[name]
    stable = set.intersection(*(set(brute_front({int(k): (acc[int(k)], m["median_ms"])
                                                 for k, m in t["members"].items()})) for t in targets.values()))
    assert stable_members(run_dir) == sorted(stable)
    with pytest.raises(CliError, match="unknown target"):
        front_on_target(run_dir, "tpu-t1-b1")


def test_front_uses_target_latency_not_search_latency(tmp_path: Path) -> None:
    """A hand-written targets.json where the search's fastest member is the slowest on one target."""
    run_dir = tiny_run(tmp_path / "run")
    lat = {"0": 1.0, "1": 0.8, "2": 0.6, "4": 5.0}                 # trial 4 slow here: dominated by 2
    doc = {"targets": {"a": {"runtime": "torch", "device": "cpu", "threads": 1, "batch": 1, "node": "x",
                             "members": {k: {"median_ms": v, "iqr_ms": 0.0, "memory_format": "contiguous"}
                                         for k, v in lat.items()}},
                       "b": {"runtime": "onnxruntime", "device": "cpu", "threads": 1, "batch": 1, "node": "x",
                             "members": {k: {"median_ms": v, "iqr_ms": 0.0, "memory_format": "contiguous"}
                                         for k, v in {"0": 0.3, "1": 0.4, "2": 0.5, "4": 0.1}.items()}}}}
    (run_dir / "targets.json").write_text(json.dumps(doc))
    assert front_on_target(run_dir, "a") == [0, 1, 2]
    assert front_on_target(run_dir, "b") == [0, 4]               # 0 is most accurate and now faster than 1, 2
    assert stable_members(run_dir) == [0]
    # merging keeps other targets and other members, new figures win
    merged = merge_targets(load_targets(run_dir), {"a": dict(doc["targets"]["a"], members={"4": {"median_ms": 0.05}})})
    assert set(merged) == {"a", "b"} and merged["a"]["members"]["4"]["median_ms"] == 0.05
    assert merged["a"]["members"]["0"]["median_ms"] == 1.0


def test_merge_on_second_remeasure_and_report_target(remeasured: tuple[Path, str], capsys) -> None:
    from search import remeasure, report

    run_dir, _ = remeasured
    before = load_targets(run_dir)
    assert remeasure.main([str(run_dir), "--threads", "2", "--batch", "1", "--runtime", "torch",
                           "--seconds", "0.05"]) == 0
    after = load_targets(run_dir)
    assert set(after) == set(before) | {"torch-cpu-t2-b1"}
    assert after["torch-cpu-t1-b1"] == before["torch-cpu-t1-b1"]
    assert after["torch-cpu-t2-b1"]["threads"] == 2
    capsys.readouterr()
    assert report.main([str(run_dir), "--target", "onnxruntime-cpu-t1-b1"]) == 0
    out = capsys.readouterr().out
    assert "target onnxruntime-cpu-t1-b1" in out and "on the front of every target" in out
    doc = json.loads((run_dir / "pareto-onnxruntime-cpu-t1-b1.json").read_text())
    assert sorted(m["trial"] for m in doc["members"]) == front_on_target(run_dir, "onnxruntime-cpu-t1-b1")


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "no CUDA GPU"),
    (["--runtime", "tensorrt"], "unknown runtime 'tensorrt'"),
    (["--threads", "0"], "--threads must be a comma list of positive integers"),
    (["--batch", "x"], "--batch must be a comma list"),
])
def test_bad_inputs_give_one_clear_message(tmp_path: Path, args: list[str], message: str, capsys) -> None:
    from search.cli_errors import run_cli
    from search.remeasure import main

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(run_dir), *args], prog="search.remeasure")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_missing_run_and_missing_targets(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "search.remeasure", str(tmp_path / "nope")], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "does not exist" in res.stderr
    with pytest.raises(CliError, match="run python -m search.remeasure"):
        load_targets(tmp_path)


@pytest.mark.slow
def test_end_to_end_on_a_real_tiny_search(tmp_path: Path) -> None:
    """search.run -> search.export -> search.train -> search.remeasure -> search.report --target."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), GROUPNAS_LATENCY_LOCK=str(tmp_path / "lock"))

    def cli(*args: str) -> str:
        res = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    cli("search.run", "--space", "groups", "--trials", "2", "--epochs", "1", "--data-limit", "200",
        "--latency-seconds", "0.1", "--out", str(tmp_path), "--name", "r")
    run_dir = tmp_path / "r"
    cli("search.export", str(run_dir), "--pick", "knee", "--out", str(tmp_path / "knee.json"))
    cli("search.train", str(tmp_path / "knee.json"), "--epochs", "1", "--data-limit", "200", "--threads", "1")
    assert (tmp_path / "knee-trained" / "model.onnx").is_file()
    out = cli("search.remeasure", str(run_dir), "--threads", "1", "--batch", "1,2", "--runtime", "torch,onnxruntime",
              "--seconds", "0.05")
    targets = load_targets(run_dir)
    pareto = json.loads((run_dir / "pareto.json").read_text())
    expected = {str(m["trial"]) for m in pareto["members"]} | {str(b["trial"]) for b in pareto["baselines"]}
    assert len(targets) == 4 and all(set(t["members"]) == expected for t in targets.values())
    assert "on the front of every target" in out
    report = cli("search.report", str(run_dir), "--target", "onnxruntime-cpu-t1-b2")
    assert "target onnxruntime-cpu-t1-b2" in report


def test_latency_shape_parsing():
    from search.cli_errors import CliError
    from search.remeasure import at_shape, parse_shape

    assert parse_shape("1x224x224") == (1, 224, 224) and parse_shape("112x96", channels=3) == (3, 112, 96)
    for bad in ("224", "1x0x4", "ax2x2", "1x2x3x4"):
        with pytest.raises(CliError, match="CxHxW"):
            parse_shape(bad)
    with pytest.raises(CliError, match="3 input channels"):
        parse_shape("1x64x64", channels=3)
    moved = json.loads(at_shape('{"input_shape": [1, 8, 8], "x": 1}', (1, 64, 64)))
    assert moved == {"input_shape": [1, 64, 64], "x": 1}
