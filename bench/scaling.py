"""Scaling of the search engines on this machine: trials per minute, Ray start-up and per-trial overhead.

1. ``search.run`` on the ``groups`` space with a tiny real trial (1 epoch on 120 digits, 0.05 s
   latency budget, no baselines), with the Optuna backend and the Ray backend (local instance),
   1 and 2 concurrent trials. Throughput is measured from the study's own timestamps (first trial
   start to last trial end), so process and Ray start-up are excluded; the command's whole wall
   time is printed too.
2. Ray's start-up: ``ray.init`` of a local instance (loopback, no dashboard), as ``search.run
   --backend ray`` does it.
3. Per-trial overhead of Ray Tune: the same trivial trial (a few arithmetic operations) run K times
   inline with Optuna's ask/tell, and K times as Tune trials (``Tuner`` + Ray's ``OptunaSearch``,
   which the backend's ``StudySearch`` extends; one at a time, actors reused); overhead = the
   difference of the mean cycle time between consecutive trial starts. Target: under 1 s.

Usage: ``python bench/scaling.py [--quick] [--trials N]``. Figures depend on the machine and its
load: a shared machine inflates them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = ["--epochs", "1", "--data-limit", "120", "--latency-seconds", "0.05", "--seed", "0", "--no-baselines"]


def _study_span(run_dir: Path) -> tuple[int, float]:
    """(finished trials, seconds from the first trial's start to the last trial's end)."""
    from search.runfolder import load_run

    _, study, _ = load_run(run_dir)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.datetime_complete]
    if not done:
        return 0, float("nan")
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    return len(done), (end - start).total_seconds()


def search_throughput(backend: str, workers: int, trials: int, out: Path) -> dict[str, float]:
    name = f"{backend}-w{workers}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "GROUPNAS_LATENCY_LOCK": str(out / "latency.lock")}
    argv = [sys.executable, "-m", "search.run", "--space", "groups", "--backend", backend, "--workers", str(workers),
            "--trials", str(trials), *TINY, "--out", str(out), "--name", name]
    t0 = time.perf_counter()
    res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    n, span = _study_span(out / name)
    return {"trials": n, "span_s": span, "per_min": 60.0 * n / span, "wall_s": wall}


def ray_startup() -> float:
    import ray

    from search.backends.ray_backend import start_ray

    seconds = start_ray(None)
    ray.shutdown()
    return seconds


def _trivial(params: dict[str, float]) -> tuple[float, float]:
    x = float(params["x"])
    return -(x - 0.3) ** 2, abs(x)


def _space(trial) -> None:
    trial.suggest_float("x", 0.0, 1.0)


def _trainable(config: dict) -> None:
    from ray import tune

    a, b = _trivial(config)
    tune.report({"accuracy": a, "latency_ms": b})


def _cycle(study) -> float:
    starts = sorted(t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start)
    return (starts[-1] - starts[0]).total_seconds() / max(1, len(starts) - 1)


def overhead(k: int) -> dict[str, float]:
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from search.backends.ray_backend import start_ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    inline = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    t0 = time.perf_counter()
    for _ in range(k):
        trial = inline.ask()
        _space(trial)
        inline.tell(trial, list(_trivial(trial.params)))
    inline_s = (time.perf_counter() - t0) / k

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    start_ray(None)
    storage = optuna.storages.InMemoryStorage()
    search = OptunaSearch(space=_space, metric=["accuracy", "latency_ms"], mode=["max", "min"],
                          sampler=optuna.samplers.RandomSampler(seed=0), storage=storage, study_name="bench")
    with tempfile.TemporaryDirectory() as tmp:
        tuner = tune.Tuner(tune.with_resources(_trainable, {"cpu": 1}),
                           tune_config=tune.TuneConfig(search_alg=search, num_samples=k, max_concurrent_trials=1,
                                                       reuse_actors=True),
                           run_config=tune.RunConfig(storage_path=tmp, name="overhead", verbose=0))
        t0 = time.perf_counter()
        tuner.fit()
        fit_s = time.perf_counter() - t0
    ray.shutdown()
    study = optuna.load_study(study_name="bench", storage=storage)
    tune_cycle = _cycle(study)
    return {"inline_s": inline_s, "tune_cycle_s": tune_cycle, "overhead_s": tune_cycle - inline_s,
            "fit_s": fit_s, "k": k}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer trials (4 per search, 10 trivial)")
    p.add_argument("--trials", type=int, default=None, help="trials per search run (default 10; --quick 4)")
    args = p.parse_args()
    trials = args.trials or (4 if args.quick else 10)
    k = 10 if args.quick else 30
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} (a shared machine inflates times)")

    print(f"\nRay start-up (local instance, ray.init): {ray_startup():.2f} s")
    o = overhead(k)
    print(f"\nper-trial overhead over {o['k']} trivial trials, one at a time:")
    print(f"  inline (Optuna ask/tell)   {o['inline_s'] * 1000:9.1f} ms/trial")
    print(f"  Ray Tune (reused actors)   {o['tune_cycle_s'] * 1000:9.1f} ms/trial   (fit {o['fit_s']:.1f} s)")
    verdict = "meets" if o["overhead_s"] < 1.0 else "MISSES"
    print(f"  overhead                   {o['overhead_s'] * 1000:9.1f} ms/trial   ({verdict} the < 1 s target)")

    print(f"\nsearch.run, {trials} tiny real trials (groups space, 1 epoch on 120 digits):")
    print(f"  {'backend':8} {'concurrent':>10} {'trials':>6} {'span s':>8} {'trials/min':>10} {'wall s':>8}")
    rates: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("optuna", "ray"):
            for workers in (1, 2):
                r = search_throughput(backend, workers, trials, Path(tmp))
                rates[backend, workers] = r["per_min"]
                print(f"  {backend:8} {workers:>10} {r['trials']:>6} {r['span_s']:>8.1f} {r['per_min']:>10.1f} "
                      f"{r['wall_s']:>8.1f}", flush=True)
    extra = 60.0 / rates["ray", 1] - 60.0 / rates["optuna", 1]
    print(f"  Ray backend's extra time per real trial, one at a time: {extra:.2f} s "
          f"({'meets' if extra < 1.0 else 'MISSES'} the < 1 s target)")


if __name__ == "__main__":
    main()
