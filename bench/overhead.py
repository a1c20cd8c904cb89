"""Search overhead: share of wall time outside trial evaluation, and search.report on 10,000 trials.

Targets (issue 7): under 5 % of wall time outside ``evaluate_arch``; under 10 s for
``search.report`` on a study of 10,000 synthetic trials.

    python bench/overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from _search import load, run_search  # noqa: E402


def search_overhead(tmp: Path, trials: int, epochs: int) -> None:
    args = ["--space", "igc", "--trials", str(trials), "--epochs", str(epochs), "--data-limit", "600",
            "--latency-seconds", "0.5", "--out", str(tmp), "--name", "ovh"]
    run_dir, wall = run_search(args)
    study, _ = load(run_dir)
    trials_ = study.get_trials(deepcopy=False)
    ev = sum(t.user_attrs.get("eval_seconds", 0.0) for t in trials_)
    per_trial = sum(t.user_attrs.get("seconds", 0.0) for t in trials_)
    starts = [t.datetime_start for t in trials_ if t.datetime_start]
    ends = [t.datetime_complete for t in trials_ if t.datetime_complete]
    loop = (max(ends) - min(starts)).total_seconds()
    print(f"search: {len(trials_)} trials, wall of main() {wall:.1f} s, trial loop {loop:.1f} s, "
          f"inside evaluate_arch {ev:.1f} s")
    print(f"  outside evaluation, trial loop only:       {100 * (loop - ev) / loop:.1f} %  (target < 5 %)")
    print(f"  outside evaluation, whole command (setup, data, report, plots): {100 * (wall - ev) / wall:.1f} %")
    bookkeeping_ms = (per_trial - ev) / len(trials_) * 1000
    print(f"  per-trial bookkeeping (storage, dedup, pruning checks): {bookkeeping_ms:.0f} ms/trial")


def report_10k(tmp: Path, n: int) -> None:
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    from search.report import main as report_main
    from search.runfolder import JOURNAL, open_storage, write_config
    from spaces import get_backbone

    run_dir = tmp / "synthetic"
    run_dir.mkdir()
    write_config(run_dir, {"storage": JOURNAL, "study_name": "s", "objectives": ["accuracy", "latency"],
                           "proxy": "train", "space": "synthetic", "backbone": "small"})
    study = optuna.create_study(storage=open_storage(JOURNAL, run_dir), study_name="s",
                                directions=["maximize", "minimize"])
    rng = np.random.default_rng(0)
    arch = get_backbone("small").to_json()
    t0 = time.perf_counter()
    dist = {f"layer{j}.groups": CategoricalDistribution([1, 2, 4, 8]) for j in range(6)}
    for i in range(n):
        acc, lat = float(rng.uniform(0.5, 1)), float(rng.uniform(0.2, 3))
        attrs = {"accuracy": acc, "latency_ms": lat, "latency_iqr_ms": 0.01, "params": int(rng.integers(1e4, 1e6)),
                 "macs": int(rng.integers(1e6, 1e8)), "arch": arch, "acc_epochs": [acc * 0.8, acc],
                 "choices": {f"layer{j}": f"g{2 ** (i % 4)}" for j in range(6)}}
        if i < 8:
            attrs["baseline"] = f"base{i}"
        params = {k: [1, 2, 4, 8][(i + j) % 4] for j, k in enumerate(dist)}
        study.add_trial(create_trial(values=[acc, lat], params=params, distributions=dist, user_attrs=attrs))
    print(f"report: wrote {n} synthetic trials in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        report_main([str(run_dir)])
    print(f"report: search.report on {n} trials took {time.perf_counter() - t0:.2f} s  (target < 10 s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="6 trials of 1 epoch and 10,000 synthetic trials")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        search_overhead(Path(tmp), 6 if args.quick else 20, 1 if args.quick else 3)
        report_10k(Path(tmp), 10_000)


if __name__ == "__main__":
    main()
