"""``search.run --backend ray`` on a real Ray cluster that the test starts on loopback.

One module-scoped cluster (``ray start --head``, 2 CPUs); runs are tiny (1 epoch on 200
digits, 0.1 s latency budget). The searcher's bookkeeping (ASHA stop, dead worker, interrupt)
is also checked directly on an in-memory study, without Ray.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from search_cli import TINY, env, popen, run

from search.runfolder import load_run

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    from ray_cluster import start_cluster

    tmp = tmp_path_factory.mktemp("raycluster")
    c = start_cluster(env(GROUPNAS_LATENCY_LOCK=str(tmp / "latency.lock")), tmp / "ray.log")
    try:
        yield c
    finally:
        c.stop()


def _front(trials: list[Any]) -> set[int]:
    """Brute-force non-dominated set of the completed trials (accuracy up, latency down)."""
    done = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs.get("repeat_of") is None]
    pts = {t.number: (-t.values[0], t.values[1]) for t in done}
    return {n for n, p in pts.items() if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in pts.values())}


@pytest.fixture(scope="module")
def ray_run(cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """Baselines + 2 trials on the cluster; trial 3 raises, trial 5's worker dies once."""
    tmp = tmp_path_factory.mktemp("rayrun")
    died = tmp / "died"
    died.mkdir()
    res = run("search.run", "--space", "groups", "--backend", "ray", "--address", cluster.address, "--trials", "2",
              "--workers", "2", *TINY, "--out", str(tmp), "--name", "r",
              extra_env={"GROUPNAS_LATENCY_LOCK": str(tmp / "latency.lock")},
              hooks={"fail": [3], "die": [5], "die_dir": str(died)}, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    return tmp / "r", res.stdout, died


def test_ray_run_folder(ray_run: tuple[Path, str, Path]) -> None:
    run_dir, out, died = ray_run
    for name in ("study.journal", "config.json", "trials.csv", "pareto.json", "pareto.png", "pareto.html",
                 "hypervolume.png", "layers.png", "best/arch.json"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["backend"] == "ray" and config["ray"]["address"].startswith("127.0.0.1:")
    _, study, _ = load_run(run_dir)
    trials = study.get_trials(deepcopy=False)
    n_base = len(config["baselines"])
    assert sorted(t.number for t in trials) == list(range(n_base + 2))         # none lost, none extra
    assert all(t.state.is_finished() for t in trials)
    assert [t.user_attrs.get("baseline") for t in trials[:n_base]] == config["baselines"]
    # the raising trial is FAIL with its reason; the others went on
    assert trials[3].state.name == "FAIL" and "deliberate failure" in trials[3].user_attrs["fail_reason"]
    # the worker running trial 5 died once (os._exit); Tune retried it and it completed
    assert (died / "died-5").is_file() and trials[5].state.name in ("COMPLETE", "PRUNED")
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) >= 3
    for t in complete:
        a = t.user_attrs
        for key in ("arch", "choices", "accuracy", "latency_ms", "latency_iqr_ms", "params", "macs", "acc_epochs",
                    "seconds", "node", "worker"):
            assert key in a, (t.number, key)
        assert t.values == [a["accuracy"], a["latency_ms"]]
        assert len(a["acc_epochs"]) == 1 and a["accuracy"] == a["acc_epochs"][-1]
        arch = t.user_attrs["arch"]           # the Arch recorded is the one its parameters build
        from spaces import get_space

        space = get_space("groups", input_shape=tuple(config["input_shape"]), num_classes=config["num_classes"])
        assert space.arch_from_params(t.params).to_json() == arch
    # Ray's own results live in the run folder, one trial folder per Tune trial
    tune_dirs = list((run_dir / "ray").glob("tune-1/trial-*"))
    assert {int(p.name.split("-")[1]) for p in tune_dirs} == {t.number for t in trials}
    doc = json.loads((run_dir / "pareto.json").read_text())
    assert {m["trial"] for m in doc["members"]} == _front(trials)
    assert "Pareto front" in out and "ray: joined 127.0.0.1:" in out


def test_ray_report_and_export(ray_run: tuple[Path, str, Path], tmp_path: Path) -> None:
    from spaces import build_model, load_arch

    run_dir, _, _ = ray_run
    before = json.loads((run_dir / "pareto.json").read_text())
    for name in ("pareto.json", "pareto.png", "trials.csv"):
        (run_dir / name).unlink()
    res = run("search.report", str(run_dir))
    assert res.returncode == 0, res.stderr
    assert json.loads((run_dir / "pareto.json").read_text())["members"] == before["members"]
    assert (run_dir / "pareto.png").is_file() and (run_dir / "trials.csv").is_file()
    out = tmp_path / "knee.json"
    res = run("search.export", str(run_dir), "--pick", "knee", "--out", str(out))
    assert res.returncode == 0, res.stderr
    knee = next(m for m in before["members"] if m["trial"] == before["knee"])
    assert json.loads(out.read_text()) == knee["arch"]
    arch = load_arch(out)
    with torch.no_grad():
        y = build_model(arch).eval()(torch.randn(2, *arch.input_shape))
    assert y.shape == (2, arch.num_classes)


@pytest.mark.slow
def test_ray_interrupt_and_resume(cluster, tmp_path: Path) -> None:
    """Ctrl-C mid-run keeps finished trials and queues the unfinished; --resume completes the budget."""
    extra = {"GROUPNAS_LATENCY_LOCK": str(tmp_path / "latency.lock")}
    proc = popen("--space", "groups", "--backend", "ray", "--address", cluster.address, "--trials", "4",
                 "--no-baselines", "--workers", "1", *TINY, "--out", str(tmp_path), "--name", "k", extra_env=extra,
                 hooks={"sleep": 2})
    run_dir = tmp_path / "k"

    def finished() -> int:
        try:
            return sum(t.state.is_finished() for t in load_run(run_dir)[1].get_trials(deepcopy=False))
        except Exception:
            return 0

    end = time.time() + 300
    while finished() < 1 and time.time() < end and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out
    assert "--resume" in out
    trials = load_run(run_dir)[1].get_trials(deepcopy=False)
    assert not any(t.state.name == "RUNNING" for t in trials)
    before = {t.number: (t.state.name, t.values) for t in trials if t.state.is_finished()}
    assert any(s == "COMPLETE" for s, _ in before.values())
    res = run("search.run", "--resume", str(run_dir),
              extra_env={"GROUPNAS_LATENCY_LOCK": extra["GROUPNAS_LATENCY_LOCK"]},
              timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    after = {t.number: t for t in load_run(run_dir)[1].get_trials(deepcopy=False)}
    for n, (state, values) in before.items():  # nothing finished was lost or changed
        assert after[n].state.name == state and after[n].values == values
    counted = [t for t in after.values() if t.state.is_finished() and not t.user_attrs.get("interrupted")]
    assert len(counted) == 4 and not any(t.state.name == "RUNNING" for t in after.values())
    for t in after.values():  # every interrupted trial was queued again and re-run
        if t.user_attrs.get("interrupted"):
            assert any(u.user_attrs.get("retry_of") == t.number for u in after.values())
    assert len(list((run_dir / "ray").glob("tune-*"))) == 2


# ----------------------------------------------------------------------------- no Ray needed

class _FakeSpace:
    """The real ``groups`` space behind the three methods ``StudySearch`` uses (no Ray needed)."""

    def __init__(self) -> None:
        from spaces import get_space

        self.inner = get_space("groups")

    def sample(self, trial: Any) -> Any:
        return self.inner.sample(trial)

    def arch_from_params(self, params: dict[str, Any]) -> Any:
        return self.inner.arch_from_params(params)

    def layer_choices(self, arch: Any) -> dict[str, str]:
        return self.inner.layer_choices(arch)


def _searcher() -> Any:
    from search.backends.ray_backend import StudySearch
    from search.config import RunConfig
    from search.settings import Settings

    storage = optuna.storages.InMemoryStorage()
    settings = Settings()
    optuna.create_study(storage=storage, study_name="s", directions=settings.directions)
    config = RunConfig(space="groups", backbone="small", settings=settings, input_shape=(1, 8, 8), num_classes=10,
                       study_name="s", sampler="random")
    return StudySearch(_FakeSpace(), config, storage)


def _final(status: str, **figures: Any) -> dict[str, Any]:
    return {"final": True, "status": status, "reason": "why", "figures": json.dumps(figures), "seconds": 1.5,
            "accuracy": figures.get("accuracy", float("nan")), "latency_ms": figures.get("latency_ms", float("nan"))}


def test_searcher_maps_results_to_study_states() -> None:
    from search.backends.ray_backend import META

    s = _searcher()
    configs = {tid: s.suggest(tid) for tid in ("a", "b", "c", "d", "e")}
    assert [c[META]["number"] for c in configs.values()] == [0, 1, 2, 3, 4]
    s.on_trial_complete("a", _final("complete", accuracy=0.5, latency_ms=1.25, params=10, acc_epochs=[0.5]))
    s.on_trial_complete("b", _final("pruned", accuracy=0.1, params=10))
    # ASHA stopped "c" after its first epoch: the last result is an interim one
    s.on_trial_complete("c", {"final": False, "epoch": 1, "accuracy": 0.2, "latency_ms": 2.0,
                              "figures": json.dumps({"acc_epochs": [0.2]})})
    s.on_trial_complete("d", error=True)        # worker died after its retries
    s.fail_errored("d", "worker died: boom")
    left = s.close(interrupted=True)            # "e" never finished: interrupted and queued again
    t = s.study.get_trials(deepcopy=False)
    assert t[0].state.name == "COMPLETE" and t[0].values == [0.5, 1.25] and t[0].user_attrs["seconds"] == 1.5
    assert t[1].state.name == "PRUNED" and t[1].user_attrs["prune_reason"] == "why"
    assert t[2].state.name == "PRUNED" and "ASHA" in t[2].user_attrs["prune_reason"]
    assert t[2].user_attrs["acc_epochs"] == [0.2]
    assert t[3].state.name == "FAIL" and t[3].user_attrs["fail_reason"] == "worker died: boom"
    assert left == [4] and t[4].state.name == "FAIL" and t[4].user_attrs["interrupted"]
    assert t[5].state.name == "WAITING" and t[5].system_attrs["fixed_params"] == t[4].params
    assert t[5].user_attrs["retry_of"] == 4
    for tr in t[:5]:  # every trial records its Arch as the space builds it from its parameters
        assert tr.user_attrs["arch"] == s.space.arch_from_params(tr.params).to_json()


def test_searcher_reuses_a_repeated_arch() -> None:
    from search.backends.ray_backend import META

    s = _searcher()
    first = s.suggest("a")
    s.on_trial_complete("a", _final("complete", accuracy=0.5, latency_ms=1.25, params=7))
    params = {k: v for k, v in first.items() if k != META}
    s.study.enqueue_trial(params)               # the same Arch again
    again = s.suggest("b")
    assert again[META]["repeat_of"] == 0
    s.on_trial_complete("b", _final("repeat"))
    t = s.study.get_trials(deepcopy=False)[1]
    assert t.state.name == "COMPLETE" and t.values == [0.5, 1.25] and t.user_attrs["repeat_of"] == 0
    assert t.user_attrs["params"] == 7
    # the completed trials handed to the next trial's pruner hold the completed trial's figures
    third = s.suggest("c")
    assert [m[0] for m in third[META]["members"]] == [0]
    assert third[META]["members"][0][1]["params"] == 7


def test_bad_ray_options(tmp_path: Path) -> None:
    res = run("search.run", "--backend", "ray", "--scheduler", "hyperband", "--trials", "1", *TINY,
              "--out", str(tmp_path))
    assert res.returncode != 0 and "Traceback" not in res.stderr and "--scheduler" in res.stderr
    res = run("search.run", "--space", "groups", "--backend", "ray", "--address", "127.0.0.1:1", "--trials", "1",
              *TINY, "--out", str(tmp_path), "--name", "bad", timeout=120)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    assert "cannot join the Ray cluster" in res.stderr


def test_searcher_hands_the_pruner_every_completed_trial_not_only_the_front() -> None:
    """The at-epoch rule takes its typical gain from every completed curve (search.pruning)."""
    from search.backends.ray_backend import META

    s = _searcher()
    s.suggest("a"), s.suggest("b")
    s.on_trial_complete("a", _final("complete", accuracy=0.9, latency_ms=1.0, acc_epochs=[0.7, 0.9]))
    s.on_trial_complete("b", _final("complete", accuracy=0.8, latency_ms=2.0, acc_epochs=[0.6, 0.8]))  # dominated
    assert _front(s.study.get_trials(deepcopy=False)) == {0}
    third = s.suggest("c")
    assert sorted(m[0] for m in third[META]["members"]) == [0, 1]
