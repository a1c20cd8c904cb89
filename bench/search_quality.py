"""NSGA-II vs multi-objective TPE vs random search: same space, same budget, 3 seeds.

Prints each run's hypervolume (one common reference point for all runs: accuracy 0 and
1.1 x the slowest latency seen in any run) and which baselines its front dominates.
Target (issue 7): NSGA-II's median hypervolume >= 1.15 x random's, and its front dominates
at least one baseline of each family (family = the baseline name up to its first '-').

    python bench/search_quality.py [--quick] [--space igc] [--trials N] [--seeds 3] [--keep DIR]
    python bench/search_quality.py --analyse DIR     # the figures of runs kept earlier (or cut short)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from _search import load, run_search  # noqa: E402


def _result(run_dir: Path, seed: int, wall: float | None) -> dict:
    study, _ = load(run_dir)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    base = {t.user_attrs["baseline"]: t.values for t in done if t.user_attrs.get("baseline")}
    return {"seed": seed, "points": [t.values for t in done], "base": base, "wall": wall, "n": len(done)}


def analyse(results: dict[str, list[dict]]) -> None:
    """Print each run's HV (common reference point) and the baselines its front dominates."""
    from search.pareto import hypervolume, pareto_mask

    worst = max(v[1] for runs in results.values() for r in runs for v in r["points"])
    ref = [0.0, 1.1 * worst]
    print(f"\nreference point: accuracy 0, latency {ref[1]:.3f} ms (common to all runs)")
    medians = {}
    for sampler, runs in results.items():
        hvs = []
        for r in runs:
            pts = np.array([(-a, l) for a, l in r["points"]])
            hv = hypervolume(pts, ref)
            hvs.append(hv)
            front = pts[pareto_mask(pts)]
            dominated = sorted(name for name, (a, l) in r["base"].items()
                               if any(f[0] <= -a and f[1] <= l and (f[0] < -a or f[1] < l) for f in front))
            families = {n.split("-")[0] for n in r["base"]}
            fam_hit = {n.split("-")[0] for n in dominated}
            print(f"{sampler:>7} seed {r['seed']}: HV {hv:.4f} ({r['n']} completed); front dominates "
                  f"{len(dominated)}/{len(r['base'])} baselines ({', '.join(dominated) or '-'}); "
                  f"families covered {len(fam_hit)}/{len(families)}")
        medians[sampler] = statistics.median(hvs)
    print("\nmedian HV: " + ", ".join(f"{s} {m:.4f}" for s, m in medians.items()))
    if "nsga2" in medians and medians.get("random"):
        print(f"NSGA-II / random median HV: {medians['nsga2'] / medians['random']:.3f}  (target >= 1.15)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="12 trials of 1 epoch on 400 examples")
    p.add_argument("--space", default="igc")
    p.add_argument("--trials", type=int, default=None)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--keep", default=None, help="keep the run folders here (default: a temporary folder)")
    p.add_argument("--analyse", default=None, metavar="DIR",
                   help="only print the figures of the run folders <sampler>-<seed> in DIR")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    results: dict[str, list[dict]] = {}
    if args.analyse:
        for sampler in ("nsga2", "tpe", "random"):
            for run_dir in sorted(Path(args.analyse).glob(f"{sampler}-*")):
                try:
                    results.setdefault(sampler, []).append(_result(run_dir, int(run_dir.name.split("-")[1]), None))
                except Exception as err:  # a run cut short before its study existed
                    print(f"skipped {run_dir}: {err}", file=sys.stderr)
        analyse(results)
        return
    trials = args.trials or (12 if args.quick else 60)
    extra = ["--epochs", "1", "--data-limit", "400", "--latency-seconds", "0.3"] if args.quick else []
    with contextlib.ExitStack() as stack:
        out = args.keep or stack.enter_context(tempfile.TemporaryDirectory())
        for sampler in ("nsga2", "tpe", "random"):
            for seed in range(args.seeds):
                name = f"{sampler}-{seed}"
                run_dir, wall = run_search(["--space", args.space, "--sampler", sampler, "--seed", str(seed),
                                            "--trials", str(trials), *extra, "--out", str(out), "--name", name])
                results.setdefault(sampler, []).append(_result(run_dir, seed, wall))
                print(f"{name}: {results[sampler][-1]['n']} completed trials in {wall:.0f} s", flush=True)
    analyse(results)


if __name__ == "__main__":
    main()
