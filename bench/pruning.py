"""The same search with and without the front-based pruning: same seed, same wall-time budget.

Prints trials completed/pruned, hypervolume (common reference point) and whether any final
front member of the unpruned run would have been pruned by the rules (replayed on the
unpruned run's history: the trials completed before it, its own figures and learning curve).

    python bench/pruning.py [--quick] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from _search import load, run_search  # noqa: E402


def wrongly_pruned(study) -> list[str]:
    """Front members of a run that the pruning rules would have stopped, replayed in order."""
    from search.pareto import pareto_mask
    from search.pruning import FrontPruner, Member

    done = sorted((t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"),
                  key=lambda t: t.datetime_complete)
    pts = np.array([(-t.values[0], t.values[1]) for t in done])
    front = [t for t, keep in zip(done, pareto_mask(pts)) if keep]
    out = []
    for t in front:
        before = [Member(s.number, s.user_attrs) for s in done if s.datetime_complete < t.datetime_start]
        pr = FrontPruner(["accuracy", "latency"], before, margin=0.01)
        fig = dict(t.user_attrs)
        why = pr.before_training(fig)
        curve = fig.get("acc_epochs") or []
        for e in range(1, len(curve)):
            why = why or pr.at_epoch({**fig, "acc_epochs": curve[:e]}, e)
        if why:
            out.append(f"trial {t.number}: {why}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="60 s budget, 2 epochs on 400 examples")
    p.add_argument("--budget", type=float, default=None, help="wall-time budget per run, seconds")
    p.add_argument("--space", default="igc")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from search.pareto import hypervolume

    budget = args.budget or (60 if args.quick else 600)
    extra = ["--epochs", "2", "--data-limit", "400", "--latency-seconds", "0.3"] if args.quick else []
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, flag in (("pruned", []), ("unpruned", ["--no-prune"])):
            run_dir, wall = run_search(["--space", args.space, "--seed", str(args.seed), "--trials", "10000",
                                        "--timeout", str(budget), *extra, *flag, "--out", tmp, "--name", label])
            study, _ = load(run_dir)
            runs[label] = study
        worst = max(t.values[1] for s in runs.values() for t in s.get_trials(deepcopy=False)
                    if t.state.name == "COMPLETE")
        ref = [0.0, 1.1 * worst]
        for label, study in runs.items():
            ts = study.get_trials(deepcopy=False)
            done = [t for t in ts if t.state.name == "COMPLETE"]
            pts = np.array([(-t.values[0], t.values[1]) for t in done])
            n_pruned = sum(t.state.name == "PRUNED" for t in ts)
            print(f"{label:>8}: {len(ts)} trials in {budget:.0f} s, {len(done)} completed, {n_pruned} pruned "
                  f"({100 * n_pruned / max(1, len(ts)):.0f} %), HV {hypervolume(pts, ref):.4f} "
                  f"(ref accuracy 0, latency {ref[1]:.3f} ms)")
        wrong = wrongly_pruned(runs["unpruned"])
        print(f"front members of the unpruned run the rules would have pruned: {len(wrong)}")
        for w in wrong:
            print("  " + w)


if __name__ == "__main__":
    main()
