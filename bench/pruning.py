"""The same search with and without the front-based pruning: same seed, same wall-time budget.

Prints trials completed/pruned, hypervolume (common reference point) and whether any final
front member of the unpruned run would have been pruned by the rules (replayed on the
unpruned run's history: the trials completed before it, its own figures and learning curve).

    python bench/pruning.py [--quick] [--budget SECONDS]
    python bench/pruning.py --audit RUN_DIR [RUN_DIR ...]

``--audit`` replays the at-epoch rule over a finished run's completed trials, each against
all the others (their full curves are known): how often it stops a trial, and how often the
member it names does not dominate that trial at the end (the rule was wrong), for the
product's rule (the completed trials' median gain granted) and for epoch-e accuracies alone.
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


def audit(study, gain_quantile: float | None) -> tuple[int, int, int]:
    """(completed trials, trials the at-epoch rule stops when judged against all the other
    completed ones, stops where the member named does not dominate the trial at the end)."""
    from search.pareto import dominates
    from search.pruning import FrontPruner, Member

    done = [t for t in study.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE" and t.user_attrs.get("repeat_of") is None]
    stopped = wrong = 0
    for t in done:
        others = [Member(s.number, s.user_attrs) for s in done if s is not t]
        pr = FrontPruner(["accuracy", "latency"], others, gain_quantile=gain_quantile)
        curve = t.user_attrs.get("acc_epochs") or []
        hit = next((h for e in range(1, len(curve))
                    if (h := pr.stopper({**t.user_attrs, "acc_epochs": curve[:e]}, e))), None)
        if hit is None:
            continue
        m = hit[0]
        stopped += 1
        wrong += not dominates((-float(m.get("accuracy")), float(m.get("latency_ms"))), (-t.values[0], t.values[1]))
    return len(done), stopped, wrong


def print_audit(paths: list[str]) -> None:
    from search.pruning import GAIN_QUANTILE

    for path in paths:
        try:
            study, _ = load(Path(path))
        except Exception as err:  # not a run folder: one line, the others still audited
            print(f"error: {path}: {err}")
            continue
        for label, q in ((f"median gain (q {GAIN_QUANTILE})", GAIN_QUANTILE), ("epoch accuracies alone", None)):
            n, stopped, wrong = audit(study, q)
            print(f"{path}: {label:>26}: stops {stopped} of {n} completed trials; "
                  f"the member named does not dominate {wrong} of them at the end")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="60 s budget, 2 epochs on 400 examples")
    p.add_argument("--budget", type=float, default=None, help="wall-time budget per run, seconds")
    p.add_argument("--space", default="igc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--audit", nargs="+", metavar="RUN_DIR", help="replay the at-epoch rule over finished runs")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.audit:
        print_audit(args.audit)
        return
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
