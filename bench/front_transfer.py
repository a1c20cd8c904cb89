"""Do a run's "dominates baseline X" claims survive longer training?

    python bench/front_transfer.py RUN [--epochs 10] [--data-limit N] [--threads 2] [--withdrawn]
                                       [--reference-noise]

Reads the run folder (``search.runfolder.load_run``) and lists the claims the run itself
makes, "front member M dominates baseline B": pareto.json's ``dominates_baselines``
(``search.rundata.collect`` and ``dominated_baselines``: repeats left out, latencies from the
end-of-run re-timing when the run has one). Also printed: how many claims the trials' own
values alone would make (``claims``). Then trains every member and every baseline of a claim again, from
the same initialisation, for ``--epochs`` with the trainer of ``search.train``
(``evaluators.train_proxy.train``: one-cycle SGD), and scores them on the held-out TEST split.
Latency does not depend on the weights, so the run's measured latencies are kept. A run with a
confirmation round (``search.confirm``, ``confirm.json``) states only the claims it upheld; the
ones it withdrew are printed too, and ``--withdrawn`` trains their nets as well, to show how many
of them would have held (whether the round was right to withdraw them). A claim
holds when M's long-training accuracy is at least B's (its latency was already no higher).
``--reference-noise`` trains every net a second time, identically but on another thread count
(1 if ``--threads`` is not 1, else 2: the float sums run in another order), and prints how often
the two references agree on the claims: no proxy can agree with the reference more often than
the reference agrees with itself.
Target (issue 14): >= 80 % of the claims hold. Also printed: Spearman's rho between the search's
accuracy and the long-training accuracy of the trained archs (the proxy's ranking, on this run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def claims(trials: list) -> tuple[list, dict, list[tuple[int, str]]]:
    """(front trials, {baseline name: trial}, [(member number, baseline name)])."""
    from search.pareto import pareto_mask

    done = [t for t in trials if t.state.name == "COMPLETE" and t.values is not None]
    pts = np.array([(-t.values[0], t.values[1]) for t in done])
    front = [done[i] for i in np.flatnonzero(pareto_mask(pts))]
    base = {t.user_attrs["baseline"]: t for t in done if t.user_attrs.get("baseline")}
    out = []
    for m in front:
        for name, b in base.items():
            if m.number == b.number:
                continue
            a = (-m.values[0], m.values[1])
            c = (-b.values[0], b.values[1])
            if a[0] <= c[0] and a[1] <= c[1] and a != c:
                out.append((m.number, name))
    return front, base, out


def run_claims(run_dir: Path, study: object, config: dict,
               data: Any = None) -> tuple[list[dict], dict[str, dict], list[tuple[int, str]]]:
    """The run's own claims, as its pareto.json states them: (front rows, {baseline name: row},
    [(member number, baseline name)]). ``data``: the run's ``search.rundata.collect``, if at hand."""
    from search.rundata import collect, dominated_baselines

    data = data if data is not None else collect(study, config, run_dir=run_dir)
    base = {str(b["baseline"]): b for b in data.baselines}
    pairs = [(int(r["number"]), name) for r in data.front for name in dominated_baselines(data, r)]
    return data.front, base, pairs


def withdrawn(run_dir: Path, study: object, config: dict,
              data: Any = None) -> tuple[int | None, list[tuple[int, str]]]:
    """(the confirmation round's epochs or None without a round, the claims it withdrew)."""
    from search.rundata import collect, withdrawn_claims

    data = data if data is not None else collect(study, config, run_dir=run_dir)
    epochs = data.confirm.get("epochs") if data.confirm else None
    return epochs, [(int(r["number"]), name) for r in data.front for name in withdrawn_claims(data, r)]


def self_agreement(pairs: list[tuple[int, int]], first: dict[int, float],
                   second: dict[int, float]) -> tuple[int, int, int]:
    """For claims (member number, baseline number): (how many both references decide alike, how
    many hold on the first, how many hold on the second); a claim holds when the member's
    accuracy is at least the baseline's."""
    one = [first[m] >= first[b] for m, b in pairs]
    two = [second[m] >= second[b] for m, b in pairs]
    return sum(a == b for a, b in zip(one, two)), sum(one), sum(two)


def rank_agreement(short: dict[int, float], long: dict[int, float]) -> float:
    """Spearman's rho between the search's accuracy and the long-training one, same trials
    (nan with fewer than 3 or when either side is constant)."""
    from scipy.stats import spearmanr

    keys = sorted(short)
    a, b = [short[k] for k in keys], [long[k] for k in keys]
    if len(keys) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--data-limit", type=int, default=None, help="default: the run's own")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the figures to this JSON file")
    ap.add_argument("--withdrawn", action="store_true",
                    help="also train the nets of the claims the confirmation round withdrew, and print how "
                         "many of those would have held (was the round right to withdraw them?)")
    ap.add_argument("--reference-noise", action="store_true",
                    help="train every net again on another thread count and print how often the two "
                         "references agree on the claims (the reference's own noise)")
    args = ap.parse_args(argv)

    import torch

    from evaluators.data import load_data
    from evaluators.train_proxy import TrainingDiverged, train
    from search.objective import Settings
    from search.runfolder import load_run
    from spaces import build_model
    from spaces.arch import Arch

    _, study, config = load_run(Path(args.run))
    settings = Settings.from_dict(config["settings"])
    if list(settings.objectives[:2]) != ["accuracy", "latency"]:
        sys.exit("error: front_transfer needs a run whose objectives start with accuracy,latency")
    from search.rundata import collect

    data_of_run = collect(study, config, run_dir=Path(args.run))
    front, base, pairs = run_claims(Path(args.run), study, config, data_of_run)
    plain = claims(study.get_trials(deepcopy=False))[2]
    why = " (they differ: end-of-run re-timing, repeats or the confirmation round)"
    print(f"the run claims {len(pairs)} dominations (pareto.json); its trials' own values alone would "
          f"claim {len(plain)}{'' if set(plain) == set(pairs) else why}")
    confirm_epochs, dropped = withdrawn(Path(args.run), study, config, data_of_run)
    if confirm_epochs is None:
        print("the run has no confirmation round (confirm.json): its claims rest on the search's accuracy alone")
    else:
        print(f"its confirmation round ({confirm_epochs} epochs) withdrew {len(dropped)} claim(s)"
              + (": " + ", ".join(f"trial {m} over {b}" for m, b in dropped) if dropped else ""))
    checked = pairs + (dropped if args.withdrawn else [])
    if not checked:
        print(f"the front ({len(front)} members) dominates no baseline: no claim to check")
        return
    data = load_data(settings.data, settings.data_dir, seed=settings.seed,
                     limit=args.data_limit if args.data_limit is not None else settings.data_limit)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    needed = sorted({m for m, _ in checked} | {base[b]["number"] for _, b in checked})
    print(f"{len(checked)} claims, {len(needed)} archs to train for {args.epochs} epochs on {data.describe()}")
    def trained(threads: int, label: str) -> dict[int, float]:
        torch.set_num_threads(threads)
        out: dict[int, float] = {}
        for n in needed:
            arch = Arch.from_json(by_number[n].user_attrs["arch"])
            try:
                out[n] = train(build_model(arch, seed=settings.seed), data, args.epochs, split="test",
                               seed=settings.seed).accuracy
            except TrainingDiverged:
                out[n] = 0.0
            print(f"  trial {n}: search accuracy {by_number[n].values[0]:.4f} -> {args.epochs}-epoch test "
                  f"accuracy {out[n]:.4f}{label}", flush=True)
        return out

    long_acc = trained(args.threads, "")
    held = [(m, b) for m, b in checked if long_acc[m] >= long_acc[base[b]["number"]]]
    for m, b in checked:
        ok = ("holds" if (m, b) in held else "FAILS") + (" (withdrawn)" if (m, b) in dropped else "")
        n = base[b]["number"]
        print(f"trial {m} dominates {b}: {ok} ({long_acc[m]:.4f} vs {long_acc[n]:.4f}; search accuracy "
              f"{by_number[m].values[0]:.4f} vs {by_number[n].values[0]:.4f})")
    would = [c for c in held if c in dropped]
    held = [c for c in held if c in pairs]
    share = len(held) / len(pairs) if pairs else float("nan")
    short = {n: by_number[n].values[0] for n in needed}
    rho = rank_agreement(short, long_acc)
    spread = max(long_acc.values()) - min(long_acc.values())
    print(f"\nclaims that hold after {args.epochs} epochs: {len(held)}/{len(pairs)}"
          + (f" = {share:.0%}" if pairs else "") + "  (target >= 80 %)")
    if args.withdrawn and dropped:
        print(f"withdrawn claims that would have held after {args.epochs} epochs: {len(would)}/{len(dropped)}; "
              f"all the search's claims together: {len(held) + len(would)}/{len(pairs) + len(dropped)}")
    print(f"search accuracy against {args.epochs}-epoch test accuracy over the {len(needed)} trained archs: "
          f"Spearman {rho:.2f}; the {args.epochs}-epoch accuracies span {spread:.4f}")
    figures: dict = {"pairs": pairs, "held": held, "long_acc": long_acc, "withdrawn": dropped,
                     "withdrawn_held": would, "spearman": None if rho != rho else rho}
    if args.reference_noise:
        other = 1 if args.threads != 1 else 2
        print(f"\nthe same trainings again on {other} thread(s) instead of {args.threads}:")
        again = trained(other, f" ({other} thread(s))")
        nums = [(m, base[b]["number"]) for m, b in checked]
        agree, _, held_again = self_agreement(nums, long_acc, again)
        stated = self_agreement([(m, base[b]["number"]) for m, b in pairs], long_acc, again)[2]
        diffs = np.array([again[n] - long_acc[n] for n in needed])
        print(f"the two references decide {agree}/{len(checked)} claims alike; the stated claims hold "
              f"{stated}/{len(pairs)} on the second; a net's accuracy moves by {np.abs(diffs).mean():.4f} on "
              f"average (at most {np.abs(diffs).max():.4f}) against a {spread:.4f} spread between the nets")
        figures.update(second_threads=other, long_acc_second=again, reference_agreement=agree,
                       held_second=stated)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
