"""End to end: ``search.run`` on a tiny budget, then report and export.

The runs that must be real processes (the main run, a SIGKILL, two workers) are subprocesses;
report, export, resume and the bad-input checks call the same ``main`` in-process through
``run_cli`` (same parsing, same exit codes, same one-line errors) to keep the suite fast.
Budget per run: a few trials, 1 epoch on 120 digits, 0.05 s latency budget.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path
from typing import Callable

import optuna
import pytest
import torch
from polling import wait_until
from search_cli import TINY, lock_env, popen, run

from search import export as export_cmd, report as report_cmd, run as run_cmd
from search.cli_errors import run_cli
from search.runfolder import load_run
from search.sampling import DEFAULT_SAMPLER
from spaces.fold import ort_group_channels

optuna.logging.set_verbosity(optuna.logging.WARNING)


def trials_of(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    _, study, _ = load_run(run_dir)
    return study.get_trials(deepcopy=False)


def call(capsys: pytest.CaptureFixture, main: Callable[..., int], *args: str) -> tuple[int, str, str]:
    """``main(args)`` through ``run_cli`` in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_cli(main, list(args), prog="test")
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real ``python -m search.run`` on the groups space: two worker processes on one storage,
    and a trial (number 2) that raises on purpose."""
    tmp = tmp_path_factory.mktemp("run")
    res = run("search.run", "--space", "groups", "--trials", "5", "--no-baselines", "--workers", "2", *TINY,
              "--out", str(tmp), "--name", "r1",
              extra_env=lock_env(tmp), hooks={"fail": [2], "sleep": 1})
    assert res.returncode == 0, res.stdout + res.stderr
    return tmp / "r1", res.stdout


def test_run_folder_contents(finished_run: tuple[Path, str]) -> None:
    run_dir, out = finished_run
    for name in ("study.journal", "config.json", "trials.csv", "pareto.json", "pareto.png", "pareto.html",
                 "hypervolume.png", "layers.png", "best/arch.json"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["machine"]["cpu"] and config["machine"]["versions"]["optuna"] == optuna.__version__
    assert config["machine"]["ort_group_channels"] == ort_group_channels()  # the export's group width
    assert config["settings"]["epochs"] == 1 and config["sampler"] == DEFAULT_SAMPLER and config["baselines"] == []
    trials = trials_of(run_dir)
    assert config["workers"] == 2
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]     # none lost, none extra
    assert all(t.state.is_finished() for t in trials)
    # the failing trial is FAIL with its reason, and the search went on past it
    failed = trials[2]
    assert failed.state.name == "FAIL" and "deliberate failure" in failed.user_attrs["fail_reason"]
    assert trials[0].state.name == "COMPLETE"       # nothing completed to prune it against
    assert sum(t.state.name == "FAIL" for t in trials) == 1
    for t in trials:
        if t.state.name == "COMPLETE":
            a = t.user_attrs
            for key in ("arch", "accuracy", "latency_ms", "latency_iqr_ms", "threads", "memory_format",
                        "params", "macs", "seconds", "acc_epochs", "choices"):
                assert key in a, key
            assert t.values == [a["accuracy"], a["latency_ms"]]
            assert a["acc_epochs"] == [a["accuracy"]]   # 1 epoch: the final accuracy is epoch 1's
        if t.state.name == "PRUNED":
            assert t.user_attrs["prune_reason"]
    rows = list(csv.DictReader((run_dir / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [t.number for t in trials]
    assert rows[2]["state"] == "FAIL" and "deliberate failure" in rows[2]["fail_reason"]
    # pareto.json: the front of the completed trials (brute force), each with an Arch
    doc = json.loads((run_dir / "pareto.json").read_text())
    done = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs.get("repeat_of") is None]
    pts = [(-t.values[0], t.values[1]) for t in done]
    expect = {t.number for t, p in zip(done, pts)
              if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in pts)}
    assert {m["trial"] for m in doc["members"]} == expect
    assert all(m["arch"]["layers"] for m in doc["members"])
    assert doc["knee"] in expect
    knee = next(m for m in doc["members"] if m["trial"] == doc["knee"])
    assert json.loads((run_dir / "best" / "arch.json").read_text()) == knee["arch"]
    # progress lines and the final table
    assert "[5/5]" in out and "ms" in out and "Pareto front" in out and "hypervolume" in out


def test_two_workers_share_one_storage(finished_run: tuple[Path, str]) -> None:
    """Both worker processes of the fixture's run took trials; each trial ran once, in one worker."""
    run_dir, _ = finished_run
    trials = trials_of(run_dir)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2
    shas = [t.user_attrs["arch_sha1"] for t in trials if t.user_attrs.get("repeat_of") is None]
    for t in trials:   # a repeat points at an earlier evaluation of the same Arch, never at itself
        if t.user_attrs.get("repeat_of") is not None:
            assert t.user_attrs["arch_sha1"] in shas and t.user_attrs["repeat_of"] != t.number


def test_baselines_enqueued_and_labelled(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Baselines run first, labelled, with their own parameters; the table says which ones a member beats.

    Zero-cost proxy (no training) to keep it quick; in-process; pruning on (baselines are exempt).
    """
    import spaces
    from search.export import pick
    from search.runfolder import collect, dominated_baselines

    code, out, _ = call(capsys, run_cmd.main, "--space", "decomp", "--trials", "1", "--proxy", "grad_norm",
                        *TINY, "--out", str(tmp_path), "--name", "b")
    assert code == 0
    run_dir, study, config = load_run(tmp_path / "b")
    data0 = spaces.get_space("decomp", input_shape=config["input_shape"], num_classes=config["num_classes"])
    expected = data0.baseline_params()
    trials = study.get_trials(deepcopy=False)
    assert config["baselines"] == list(expected) and len(trials) == len(expected) + 1
    for t, (name, params) in zip(trials, expected.items()):
        assert t.user_attrs["baseline"] == name and t.params == params
        assert t.state.name == "COMPLETE", t.user_attrs.get("prune_reason")   # baselines are never pruned
        assert json.loads(t.user_attrs["arch"]) == json.loads(data0.baselines()[name].to_json())
    assert "baseline" not in trials[-1].user_attrs
    doc = json.loads((run_dir / "pareto.json").read_text())
    assert {b["name"] for b in doc["baselines"]} == set(expected)
    # "dominates" against a direct comparison of the objective values; latency: the end-of-run
    # round in which the front and the baselines were re-timed together (final_latency.json)
    final = json.loads((run_dir / "final_latency.json").read_text())["members"]
    data = collect(study, config, run_dir=run_dir)
    by_name = {b["baseline"]: b for b in data.baselines}
    assert doc["retimed"] and all(b["retimed"] for b in doc["baselines"])
    for b in by_name.values():
        assert b["values"]["latency"] == final[str(b["number"])]["latency_ms"]
    for m in doc["members"]:
        assert m["retimed"] and m["values"]["latency"] == m["final_latency_ms"] == final[str(m["trial"])]["latency_ms"]
        a, l = m["values"]["accuracy"], m["values"]["latency"]
        beaten = {n for n, b in by_name.items() if b["number"] != m["trial"] and a >= b["values"]["accuracy"]
                  and l <= b["values"]["latency"] and (a, l) != (b["values"]["accuracy"], b["values"]["latency"])}
        assert set(m["dominates_baselines"]) == beaten
        row = next(r for r in data.front if r["number"] == m["trial"])
        assert set(dominated_baselines(data, row)) == beaten
        # export --pick trial:N of a front member carries the same re-timed figures
        assert pick(data, f"trial:{m['trial']}")["values"]["latency"] == final[str(m["trial"])]["latency_ms"]
    for name in expected:   # every baseline that is on the front is labelled in the table
        if any(m["baseline"] == name for m in doc["members"]):
            assert f"[{name}]" in out
    assert "baseline" in out


def test_report_regenerates_from_storage(finished_run: tuple[Path, str], capsys: pytest.CaptureFixture) -> None:
    run_dir, _ = finished_run
    before = json.loads((run_dir / "pareto.json").read_text())
    for name in ("pareto.json", "pareto.png", "pareto.html", "trials.csv", "layers.png", "hypervolume.png"):
        (run_dir / name).unlink()
    code, out, err = call(capsys, report_cmd.main, str(run_dir))
    assert code == 0, err
    assert "Pareto front" in out
    assert json.loads((run_dir / "pareto.json").read_text())["members"] == before["members"]
    for name in ("pareto.png", "layers.png", "hypervolume.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (run_dir / name).stat().st_size > 1000
    html = (run_dir / "pareto.html").read_text()
    assert "layer0" in html and "trial " in html


def test_export_builds_and_runs(finished_run: tuple[Path, str], tmp_path: Path,
                                capsys: pytest.CaptureFixture) -> None:
    from spaces import build_model, load_arch

    run_dir, _ = finished_run
    doc = json.loads((run_dir / "pareto.json").read_text())
    for pick in ("knee", "max-accuracy", "fastest"):
        out = tmp_path / f"{pick}.json"
        code, _, err = call(capsys, export_cmd.main, str(run_dir), "--pick", pick, "--out", str(out))
        assert code == 0, err
        arch = load_arch(out)
        model = build_model(arch).eval()
        with torch.no_grad():
            y = model(torch.randn(2, *arch.input_shape))
        assert y.shape == (2, arch.num_classes)
    knee = next(m for m in doc["members"] if m["trial"] == doc["knee"])
    assert json.loads((tmp_path / "knee.json").read_text()) == knee["arch"]
    best = max(doc["members"], key=lambda m: m["values"]["accuracy"])
    assert json.loads((tmp_path / "max-accuracy.json").read_text()) == best["arch"]
    fastest = min(doc["members"], key=lambda m: m["values"]["latency"])
    limit = fastest["values"]["latency"] + 1e-9
    code, _, _ = call(capsys, export_cmd.main, str(run_dir), "--pick", f"latency<={limit}",
                      "--out", str(tmp_path / "lat.json"))
    assert code == 0 and json.loads((tmp_path / "lat.json").read_text()) == fastest["arch"]
    code, _, err = call(capsys, export_cmd.main, str(run_dir), "--pick", "front", "--out", str(tmp_path / "front"))
    assert code == 0, err
    index = json.loads((tmp_path / "front" / "index.json").read_text())
    assert {i["trial"] for i in index} == {m["trial"] for m in doc["members"]}
    for i in index:
        load_arch(tmp_path / "front" / i["file"])


def _bad(code: int, err: str) -> None:
    assert code == 2
    assert "Traceback" not in err, err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "error" in lines[0], err


@pytest.mark.parametrize("args, words", [
    (["--space", "nope"], "unknown space"),
    (["--sampler", "grid"], "unknown sampler"),
    (["--objectives", "accuracy,energy"], "unknown objective"),
    (["--data", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--storage", "nosuchdb://x/y"], "cannot open storage"),
    (["--proxy", "magic"], "unknown proxy"),
    (["--trials", "0"], "--trials must be positive"),
    (["--val-examples", "0"], "--val-examples must be positive"),
    # issue 15: every option has a stated range
    (["--threads", "100000"], "--threads must be at most"),
    (["--seed", "-1"], "--seed must be between 0 and"),
    (["--seed", str(2**40)], "--seed must be between 0 and"),
    (["--population", "1"], "--population must be at least 2"),
    (["--latency-batch", str(10**9)], "--latency-batch must be at most"),
    (["--prune-margin", "nan"], "--prune-margin must be a finite number"),
    (["--workers", "100000"], "--workers must be at most"),
    (["--name", "../x"], "--name must be a plain folder name"),
    (["--name", "/tmp/x"], "--name must be a plain folder name"),
    (["--name", "a/b"], "--name must be a plain folder name"),
    (["--timeout", "nan"], "--timeout must be positive"),
    # issue 12: latency shape, runtime, mode; issue 14: data names
    (["--latency-shape", "1x224"], "--latency-shape must be CxHxW"),
    (["--latency-shape", "3x224x224"], "take 1 input channels"),
    (["--runtime", "tvm"], "unknown runtime"),
    (["--latency", "guessed"], "--latency must be measured or predicted"),
    (["--data", "imagenet"], "unknown data"),
])
def test_bad_run_input(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], words: str) -> None:
    code, _, err = call(capsys, run_cmd.main, "--trials", "1", *TINY, "--out", str(tmp_path), *args)
    _bad(code, err)
    assert words in err
    assert not any(tmp_path.iterdir()), "no run folder is created for bad input"


@pytest.mark.slow
def test_bad_input_is_one_line_from_the_shell(tmp_path: Path) -> None:
    """The real command line: exit status 2 and one line on stderr, no traceback."""
    res = run("search.run", "--space", "nope", "--out", str(tmp_path))
    _bad(res.returncode, res.stderr)
    assert "unknown space 'nope'" in res.stderr and "igc" in res.stderr


def test_bad_report_and_export_input(finished_run: tuple[Path, str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    run_dir, _ = finished_run
    code, _, err = call(capsys, report_cmd.main, str(tmp_path / "missing"))
    _bad(code, err)
    assert "does not exist" in err
    code, _, err = call(capsys, report_cmd.main, str(tmp_path))
    _bad(code, err)
    assert "holds no study" in err
    code, _, err = call(capsys, export_cmd.main, str(tmp_path / "missing"), "--pick", "knee", "--out", "x.json")
    _bad(code, err)
    code, _, err = call(capsys, export_cmd.main, str(run_dir), "--pick", "latency<=0.0000001",
                        "--out", str(tmp_path / "x.json"))
    _bad(code, err)
    assert "no front member" in err
    code, _, err = call(capsys, export_cmd.main, str(run_dir), "--pick", "trial:999", "--out", str(tmp_path / "x.json"))
    _bad(code, err)
    code, _, err = call(capsys, report_cmd.main, str(run_dir), "--target", "torch-cpu-t1-b1")
    _bad(code, err)
    assert "run search.remeasure first" in err
    assert not (tmp_path / "x.json").exists()


def _states(run_dir: Path) -> list[str]:
    """Trial states; a RUNNING trial counts only once it has sampled its Arch."""
    try:
        return [t.state.name for t in trials_of(run_dir) if t.state.name != "RUNNING" or "arch" in t.user_attrs]
    except Exception:
        return []


def _one_running_after_a_finished(run_dir: Path) -> bool:
    s = _states(run_dir)
    return s.count("RUNNING") == 1 and len(s) >= 2


def test_resume_after_sigkill(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    env = lock_env(tmp_path)
    args = ["--space", "groups", "--trials", "2", "--no-baselines", *TINY, "--out", str(tmp_path), "--name", "k"]
    proc = popen(*args, extra_env=env, hooks={"sleep": 1.2})
    run_dir = tmp_path / "k"
    try:
        wait_until(lambda: _one_running_after_a_finished(run_dir))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {t.number: (t.state.name, t.values) for t in trials_of(run_dir)}
    running = [n for n, (s, _) in before.items() if s == "RUNNING"]
    finished = {n: v for n, v in before.items() if v[0] in ("COMPLETE", "PRUNED", "FAIL")}
    assert len(running) == 1 and finished
    monkeypatch.setenv("GROUPNAS_LATENCY_LOCK", str(tmp_path / "latency.lock"))
    code, out, err = call(capsys, run_cmd.main, "--resume", str(run_dir))
    assert code == 0, out + err
    assert "marked failed" in out
    after = trials_of(run_dir)
    by_number = {t.number: t for t in after}
    for n, (state, values) in finished.items():  # nothing finished was lost or changed
        assert by_number[n].state.name == state and by_number[n].values == values
    stale = by_number[running[0]]
    assert stale.state.name == "FAIL" and stale.user_attrs["fail_reason"].startswith("stale")
    counted = [t for t in after if t.state.is_finished() and not t.user_attrs.get("interrupted")]
    assert len(counted) == 2 and not any(t.state.name == "RUNNING" for t in after)
    retry = [t for t in after if t.user_attrs.get("retry_of") == running[0]]
    assert len(retry) == 1 and retry[0].params == stale.params   # the killed trial's Arch is run again


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials(tmp_path: Path) -> None:
    env = lock_env(tmp_path)
    proc = popen("--space", "groups", "--trials", "4", "--no-baselines", *TINY, "--out", str(tmp_path),
                 "--name", "c", extra_env=env, hooks={"sleep": 2})
    run_dir = tmp_path / "c"
    wait_until(lambda: _one_running_after_a_finished(run_dir))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "--resume" in out
    trials = trials_of(run_dir)
    assert not any(t.state.name == "RUNNING" for t in trials)
    assert any(t.user_attrs.get("interrupted") for t in trials)
    assert (run_dir / "pareto.json").is_file()



@pytest.mark.parametrize("name", ["dgc-G4", pytest.param("condense-G4", marks=pytest.mark.slow),
                                  pytest.param("flgc-G4", marks=pytest.mark.slow)])
def test_learned_ops_are_priced_and_timed_condensed(name: str) -> None:
    """A learned-grouping trial reports the figures of the condensed network it would deploy:
    CondenseNet / FLGC / DGC at 4 groups cost exactly what a fixed 4-group conv net costs."""
    import spaces
    from evaluators.cost import count_macs, count_params
    from search.objective import Settings, evaluate_arch

    if "learned" not in spaces.SPACES:
        pytest.skip("no learned space in this checkout")
    torch.set_num_threads(1)
    space = spaces.get_space("learned", input_shape=(1, 32, 32), num_classes=10)
    base = space.baselines()
    fixed = spaces.build_model(base["group-g4"])
    expect = (count_params(fixed), count_macs(fixed, (1, 32, 32)))
    settings = Settings(epochs=1, data_limit=120, latency_seconds=0.05, prune=False)
    figures = evaluate_arch(base[name], settings)
    assert figures["learned"] is True
    assert (figures["params"], figures["macs"]) == expect, name
    assert figures["latency_ms"] > 0 and len(figures["acc_epochs"]) == 1


def test_timeout_stops_starting_trials_says_so_and_a_resumed_trial_budget_drops_it(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPNAS_LATENCY_LOCK", str(tmp_path / "latency.lock"))
    args = ["--space", "groups", "--trials", "200", "--timeout", "3", "--no-baselines", *TINY,
            "--out", str(tmp_path), "--name", "t"]
    code, out, err = call(capsys, run_cmd.main, *args)
    assert code == 0, out + err
    run_dir = tmp_path / "t"
    done = [t for t in trials_of(run_dir) if t.state.is_finished()]
    assert 0 < len(done) < 200
    assert f"--timeout 3 s reached: {len(done)} of 200 trials run" in out and "or 3 s (--timeout)" in out
    assert json.loads((run_dir / "config.json").read_text())["timeout"] == 3
    # --resume --trials N: the user's trial budget, no time cap carried over from the first run
    code, out, err = call(capsys, run_cmd.main, "--resume", str(run_dir), "--trials", str(len(done)))
    assert code == 0, out + err
    assert json.loads((run_dir / "config.json").read_text())["timeout"] is None and "reached" not in out
