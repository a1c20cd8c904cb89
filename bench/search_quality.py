"""The default sampler against random search: same space, same data, same budget, 3 seeds.

Each run searches ``--trials`` trials on top of the space's baselines with the product's own
trial (``bench/_search.run_study``: objective, dedup, front pruning), sampler from
``search.sampling.make_sampler``. Printed per run: hypervolume, completed trials, wall
seconds, which baselines a searched trial dominates (and whether every family is covered;
the run's own baselines dominating one another do not count: they are in every arm). The
hypervolume uses ONE reference point for all runs: the nadir of the union of every run's
front, pushed out by 10 % of each objective's range (a point of accuracy 0 would make the
hypervolume mostly the area under any front, hiding differences; both are printed).
Also printed: how many architectures each sampler shares with random search at the same
seed. Target (issue 14): median HV ratio default / random >= 1.15, front dominating at least
one baseline of every family. Same budget of trials is the plain run; same budget of wall time
is ``--match-wall screened``, which runs random search again for as long as the kept screened
run of each seed took, with no trial cap (random's pruned trials are cheaper, so it gets more).

    python bench/search_quality.py [--quick] [--space igc] [--data fashion-mnist] [--trials N]
        [--seeds 3] [--samplers screened,random] [--prune-margin M] [--keep FILE.json]
    python bench/search_quality.py --samplers random --match-wall screened --keep FILE.json
    python bench/search_quality.py --analyse FILE.json     # the figures of runs kept earlier
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from _search import run_study  # noqa: E402


def _dominated(points: np.ndarray, base: dict) -> list[str]:
    """Names of the baselines some row of ``points`` (-accuracy, cost) dominates."""
    return sorted(n for n, (a, l) in base.items()
                  if any(f[0] <= -a and f[1] <= l and (f[0] < -a or f[1] < l) for f in points))


def searched_points(run: dict) -> np.ndarray:
    """The completed trials of ``run`` that the sampler proposed, as (-accuracy, cost): its
    points less its baselines' (a baseline dominating another says nothing of the search)."""
    base = {tuple(map(float, v)) for v in run["base"].values()}
    rows = [(-float(a), float(c)) for a, c in run["points"] if (float(a), float(c)) not in base]
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def coverage(run: dict) -> tuple[list[str], int, int]:
    """(baselines a searched trial dominates, families with one of them, families in the space);
    a baseline's family is its name up to the first ``-``."""
    dom = _dominated(searched_points(run), run["base"])
    families = {n.split("-")[0] for n in run["base"]}
    return dom, len({n.split("-")[0] for n in dom}), len(families)


def _key(p: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in p.items()))


def analyse(results: dict[str, list[dict]], default: str) -> dict[str, float]:
    """Print each run's HV (common reference points) and the baselines its front dominates."""
    from search.pareto import hypervolume, pareto_mask

    pts = {s: [np.array([(-a, c) for a, c in r["points"]]) for r in runs] for s, runs in results.items()}
    union = np.vstack([p for ps in pts.values() for p in ps])
    front = union[pareto_mask(union)]
    span = union.max(0) - union.min(0)
    ref = front.max(0) + 0.1 * span
    ref0 = np.array([0.0, 1.1 * union[:, 1].max()])
    print(f"\nreference point: accuracy {-ref[0]:.4f}, cost {ref[1]:.4g} (nadir of all fronts + 10 % "
          f"of the range; shared by all runs); also accuracy 0, cost {ref0[1]:.4g}")
    medians, medians0 = {}, {}
    for sampler, runs in results.items():
        hvs, hvs0 = [], []
        for r, p in zip(runs, pts[sampler]):
            hv, hv0 = hypervolume(p, ref), hypervolume(p, ref0)
            hvs.append(hv)
            hvs0.append(hv0)
            f = p[pareto_mask(p)]
            dom, hit, families = coverage(r)
            print(f"{sampler:>9} seed {r['seed']}: HV {hv:.5f} (acc-0 ref {hv0:.4f}), {r['n']} completed "
                  f"({len(searched_points(r))} searched), {r['wall']:.0f} s; front {len(f)} members; searched "
                  f"trials dominate {len(dom)}/{len(r['base'])} baselines ({', '.join(dom) or '-'}); families "
                  f"covered {hit}/{families}")
        medians[sampler], medians0[sampler] = statistics.median(hvs), statistics.median(hvs0)
    print("\nmedian HV: " + ", ".join(f"{s} {m:.5f}" for s, m in medians.items()))
    ratios = {}
    for other in medians:
        if other != default and default in medians and medians[other]:
            ratios[other] = medians[default] / medians[other]
            print(f"{default} / {other} median HV: {ratios[other]:.3f}  (target >= 1.15); "
                  f"with the accuracy-0 reference: {medians0[default] / medians0[other]:.3f}")
    if "random" in results:
        for sampler, runs in results.items():
            if sampler.startswith("random"):
                continue
            shared = []
            for r in runs:
                rnd = next((q for q in results["random"] if q["seed"] == r["seed"]), None)
                if rnd is not None:
                    mine = {_key(p) for p in r["params"]}
                    shared.append(len(mine & {_key(p) for p in rnd["params"]}))
            print(f"{sampler}: architectures shared with random search at the same seed: {shared}")
    return ratios


def arm_cli(args: argparse.Namespace) -> list[str]:
    """The ``search.run`` options every arm runs with (the seed is added per run)."""
    cli = ["--space", args.space, "--data", args.data, "--objectives", args.objectives,
           "--data-limit", str(args.data_limit or (1500 if args.quick else 6000)),
           "--epochs", str(args.epochs or (2 if args.quick else 3)),
           "--latency-seconds", "0.3" if args.quick else "1.0"]
    if args.data_dir:
        cli += ["--data-dir", args.data_dir]
    if args.prune_margin is not None:
        cli += ["--prune-margin", str(args.prune_margin)]
    return cli


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="16 trials of 2 epochs on 1,500 examples")
    p.add_argument("--space", default="igc")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--trials", type=int, default=None, help="default search.run's (16 with --quick)")
    p.add_argument("--epochs", type=int, default=None, help="default 3 (2 with --quick)")
    p.add_argument("--data-limit", type=int, default=None, help="default 6000 (1500 with --quick)")
    p.add_argument("--objectives", default="accuracy,latency",
                   help="accuracy,macs compares the samplers free of latency-measurement noise")
    p.add_argument("--prune-margin", type=float, default=None,
                   help="search.run's --prune-margin for every arm (default search.run's)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--samplers", default="screened,random")
    p.add_argument("--keep", default=None, help="add the runs' figures to this JSON file")
    p.add_argument("--match-wall", default=None, metavar="SAMPLER",
                   help="run each of --samplers for the wall time SAMPLER's kept run of the same seed took, "
                        "with no trial cap (kept as '<sampler>-wall'): the same budget of wall time")
    p.add_argument("--analyse", default=None, metavar="FILE", help="only print the figures kept in FILE")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from search.sampling import DEFAULT_SAMPLER

    if args.analyse:
        try:
            kept = json.loads(Path(args.analyse).read_text())
        except (OSError, ValueError) as err:
            sys.exit(f"error: --analyse {args.analyse}: {err}")
        if not isinstance(kept, dict) or not all(isinstance(r, list) and r and all(
                isinstance(x, dict) and "points" in x for x in r) for r in kept.values()) or not kept:
            sys.exit(f"error: --analyse {args.analyse}: not a file that --keep wrote "
                     "({sampler: [run, ...]}, each run with its 'points')")
        analyse(kept, DEFAULT_SAMPLER)
        return
    import torch

    from search.options import DEFAULT_TRIALS

    torch.set_num_threads(1)
    trials = args.trials or (16 if args.quick else DEFAULT_TRIALS)
    cli = arm_cli(args)
    from search.cli_errors import CliError
    from search.options import build_parser as run_parser, validate

    try:  # a bad search.run option is one error line here, not a traceback from the first arm
        validate(run_parser().parse_args(cli))
    except CliError as err:
        sys.exit(f"error: {err}")
    results: dict[str, list[dict]] = {}
    if args.keep and Path(args.keep).exists():
        results = json.loads(Path(args.keep).read_text())
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for sampler in args.samplers.split(","):
            label, seconds, cap = sampler, None, trials
            if args.match_wall:
                ref = next((r for r in results.get(args.match_wall, []) if r["seed"] == seed), None)
                if ref is None:
                    sys.exit(f"error: --match-wall {args.match_wall}: no kept run of seed {seed} in --keep")
                label, seconds, cap = f"{sampler}-wall", float(ref["wall"]), 100 * trials
            r = run_study(sampler, [*cli, "--seed", str(seed)], cap, seconds=seconds)
            r["seed"] = seed
            results.setdefault(label, []).append(r)
            print(f"{label}-{seed}: {r['n']} completed trials in {r['wall']:.0f} s", flush=True)
            if args.keep:
                Path(args.keep).write_text(json.dumps(results))
    analyse(results, DEFAULT_SAMPLER)


if __name__ == "__main__":
    main()
