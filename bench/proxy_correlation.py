"""How well do cheap proxies rank architectures? Spearman of each proxy with long training.

    python bench/proxy_correlation.py [--n 30] [--space mixed] [--data fashion-mnist] [--quick]

N archs are sampled from ``--space`` (see ``bench/latency_stability.sample_archs``).
Reference (issue 14): each arch trained ``--ref-epochs`` (10) epochs on ``--train-examples``
(20,000) training examples, accuracy on the official TEST split (so the proxies, scored on
the validation split, share no evaluation noise with it). Proxies: short training on the
search's own data budget (``--proxy-limit`` examples, 6,000 by default: what ``search.run``
trains a trial on) for 1 and the default number of epochs, same seed and init, each scored two
ways on the same trained net: ``train-Nep`` on ``--proxy-val`` validation examples (the val split
topped up from outside the proxy's sample, as ``search.run --val-examples`` scores a trial) and
``train-Nep-valsplit`` on the val split of the sample alone (the proxy before issue 14's fix);
``train-Nep-lrLR`` for each ``--proxy-lr LR``, the default proxy trained at peak learning rate LR; every
zero-cost score of ``evaluators.zero_cost.SCORES`` on one training minibatch; params / MACs.
Printed: Spearman and Kendall tau of each proxy with the reference, and the mean seconds the
proxy takes per arch. Target: the default proxy reaches Spearman >= 0.8.

``--ref-seeds K`` trains the reference K times per arch (init and data order from seed s =
0..K-1; seed 0 is the single reference). It then also prints the reference's own
reproducibility, the Spearman between its seeds, and each proxy's Spearman with the mean of the
K references. An estimate of the best Spearman any proxy can expect against one reference seed
is sqrt(seed-to-seed Spearman): the reference's noise bounds the figure the target asks for.

``--out`` is rewritten (atomically) after every arch, so a killed run loses at most the arch in
progress; ``--resume`` with the same ``--out`` and settings continues where it stopped, and
with a larger ``--ref-seeds`` adds the missing reference seeds to a finished run.

``--quick`` (8 archs, 3 reference epochs on 4,000 examples, proxy on 1,500) only checks that
the pipeline runs; its correlations are not the issue's figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import kendalltau, spearmanr  # noqa: E402

from bench.latency_stability import sample_archs  # noqa: E402
from evaluators.data import Split, load_data, stratified_split  # noqa: E402
from evaluators.train_proxy import DEFAULT_EPOCHS, DEFAULT_LR, TrainingDiverged, pooled_accuracy, train  # noqa: E402
from evaluators.zero_cost import SCORES  # noqa: E402
from search.options import DEFAULT_VAL_EXAMPLES  # noqa: E402
from search.safe_files import atomic_write_text  # noqa: E402
from spaces import build_model  # noqa: E402


def strict_json(obj: object) -> object:
    """``obj`` with every NaN / +-inf float replaced by None, so ``json.dumps`` writes standard
    JSON (``null``) instead of the ``NaN`` / ``Infinity`` tokens strict parsers reject."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def floats_back(xs: list) -> list[float]:
    """A saved list of scores as floats: the ``null`` that ``strict_json`` wrote reads as NaN."""
    return [float("nan") if x is None else float(x) for x in xs]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--ref-epochs", type=int, default=10)
    ap.add_argument("--space", default="mixed")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64, help="minibatch of the zero-cost scores")
    ap.add_argument("--train-examples", type=int, default=20000,
                    help="training examples of the reference (stratified; val/test kept whole)")
    ap.add_argument("--proxy-limit", type=int, default=6000,
                    help="examples (train + val pool) the short-training proxy sees, as search.run's --data-limit")
    ap.add_argument("--proxy-val", type=int, default=DEFAULT_VAL_EXAMPLES,
                    help="validation examples the short-training proxy is scored on, as search.run's --val-examples")
    ap.add_argument("--proxy-lr", type=float, action="append", default=[], metavar="LR",
                    help="also score the default-epoch proxy trained at this peak learning rate "
                         f"(default {DEFAULT_LR}); repeatable, each adds a row train-Nep-lrLR")
    ap.add_argument("--ref-seeds", type=int, default=1,
                    help="reference trainings per arch, seeds 0..K-1 (K >= 2 also measures the reference's noise)")
    ap.add_argument("--out", default=None, help="write every figure to this JSON file (after every arch)")
    ap.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    ap.add_argument("--quick", action="store_true", help="8 archs, 3 reference epochs on 4,000 examples")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.ref_epochs = min(args.n, 8), min(args.ref_epochs, 3)
        args.train_examples, args.proxy_limit = min(args.train_examples, 4000), min(args.proxy_limit, 1500)
    if args.resume and not args.out:
        ap.error("--resume needs --out")
    if args.ref_seeds < 1 or args.n < 2 or args.proxy_val < 1:
        ap.error("--ref-seeds and --proxy-val must be >= 1 and --n >= 2")
    if any(not lr > 0 or not np.isfinite(lr) for lr in args.proxy_lr):
        ap.error("--proxy-lr must be a positive number")
    torch.set_num_threads(args.threads)

    full = load_data(args.data, args.data_dir, seed=args.seed)
    data = full
    if args.train_examples < len(full.train):
        keep, _ = stratified_split(full.train.y.numpy(), (args.train_examples / len(full.train),), args.seed)
        data = dataclasses.replace(full, train=Split(full.train.x[keep], full.train.y[keep]))
    proxy_data = load_data(args.data, args.data_dir, seed=args.seed, limit=args.proxy_limit,
                           val_examples=args.proxy_val)
    split_only = dataclasses.replace(proxy_data, val_extra=None)
    archs, source = sample_archs(args.space, args.n, args.seed, data.input_shape, data.num_classes)
    print(f"{len(archs)} archs from {source}; reference: {args.ref_epochs} epochs on {len(data.train)} "
          f"examples, test split of {len(data.test)}; proxy data {proxy_data.describe()}; threads={args.threads}")
    g = torch.Generator().manual_seed(args.seed)
    pick = torch.randperm(len(data.train), generator=g)[: args.batch]
    xb, yb = data.train.x[pick], data.train.y[pick]

    budgets = sorted({1, DEFAULT_EPOCHS})
    lr_arms = {f"train-{DEFAULT_EPOCHS}ep-lr{lr:g}": lr for lr in dict.fromkeys(args.proxy_lr)}
    names = [f"train-{e}ep{kind}" for e in budgets for kind in ("", "-valsplit")] + list(lr_arms) + list(SCORES)
    values: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, float] = {n: 0.0 for n in names}
    refs: list[list[float]] = [[] for _ in range(args.ref_seeds)]
    t_ref = 0.0
    settings = {"space": args.space, "data": args.data, "seed": args.seed, "n": args.n,
                "ref_epochs": args.ref_epochs, "train_examples": len(data.train),
                "proxy_limit": args.proxy_limit, "proxy_val": args.proxy_val, "batch": args.batch}
    if lr_arms:  # absent otherwise, so files written before the option still resume
        settings["proxy_lrs"] = list(lr_arms.values())
    arch_json = [a.to_json() for a in archs]
    if args.resume and Path(args.out).exists():
        try:
            saved = json.loads(Path(args.out).read_text())
            same = saved.get("settings") == settings and saved.get("archs") == arch_json
            saved_refs = [floats_back(r) for r in saved.get("references") or [saved["reference"]]]
            saved_values = {n: floats_back(saved["values"][n]) for n in names}
            saved_seconds = {n: float(saved["seconds"][n]) for n in names}
            t_ref = float(saved["seconds_reference"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            sys.exit(f"error: cannot resume from {args.out}: not a proxy_correlation file ({type(e).__name__}: {e})")
        if not same:
            sys.exit(f"error: {args.out} was written with other settings or archs; drop --resume")
        refs = saved_refs + refs[len(saved_refs):]
        values, seconds = saved_values, saved_seconds
        print(f"resuming: reference seeds done {[len(r) for r in refs]}, proxies done {len(values[names[0]])}, "
              f"of {len(archs)} archs")

    def save(table: dict | None = None, noise: dict | None = None) -> None:
        if not args.out:
            return
        doc = {"source": source, "settings": settings, "archs": arch_json, "reference": refs[0],
               "references": refs, "values": values, "seconds": seconds, "seconds_reference": t_ref, "table": table,
               "reference_noise": noise,
               "ref_epochs": args.ref_epochs}
        atomic_write_text(args.out, json.dumps(strict_json(doc), indent=1, allow_nan=False))

    first = min(len(r) for r in [*refs, values[names[0]]])
    t0 = time.perf_counter()

    def eta(done: int) -> float:
        return (time.perf_counter() - t0) / (done - first) * (len(archs) - done)

    for i, arch in enumerate(archs[first:], start=first):
        for s, reference in enumerate(refs):
            if len(reference) > i:
                continue
            t = time.perf_counter()
            try:  # seed 0: init seed i, data order 0 (the single-reference run's figures)
                model = build_model(arch, seed=i + 1000 * s)
                reference.append(train(model, data, args.ref_epochs, seed=s, split="test").accuracy)
            except TrainingDiverged:
                reference.append(0.0)
            t_ref += time.perf_counter() - t
        save()
        if len(values[names[0]]) <= i:  # else the proxies were saved before and only reference seeds were missing
            for e in budgets:
                small, acc = proxy_pair(arch, i, split_only, proxy_data.val_extra, e, seconds,
                                        keys=(f"train-{e}ep-valsplit", f"train-{e}ep"))
                values[f"train-{e}ep-valsplit"].append(small)
                values[f"train-{e}ep"].append(acc)
            for name, lr in lr_arms.items():
                values[name].append(proxy_pair(arch, i, split_only, proxy_data.val_extra, DEFAULT_EPOCHS,
                                               seconds, keys=(None, name), lr=lr)[1])
            model = build_model(arch, seed=i)
            for name, fn in SCORES.items():
                t = time.perf_counter()
                try:
                    v = fn(model, xb, yb)
                except ImportError:  # params/macs before evaluators.cost exists
                    v = float("nan")
                seconds[name] += time.perf_counter() - t
                values[name].append(v)
            save()
        print(f"  arch {i + 1}/{len(archs)}: ref " + " ".join(f"{r[i]:.3f}" for r in refs) + "  "
              + "  ".join(f"{e}ep {values[f'train-{e}ep'][i]:.3f} (split {values[f'train-{e}ep-valsplit'][i]:.3f})"
                          for e in budgets)
              + f"  (ETA {eta(i + 1):.0f} s)", flush=True)

    ref, k = np.array(refs[0]), len(refs)
    mean_ref = np.mean(np.array(refs), axis=0)
    print(f"\nreference accuracy (seed 0): min {ref.min():.3f} median {np.median(ref):.3f} max {ref.max():.3f}; "
          f"{t_ref / sum(len(r) for r in refs):.2f} s per reference training")
    noise = None
    if k > 1:
        noise = reference_noise(refs)
        print(f"reference seed-to-seed: Spearman {noise['seed_spearman']:.3f} (mean over seed pairs), "
              f"SD of one training {noise['seed_sd']:.4f}; best Spearman a noise-free proxy can expect: "
              f"{noise['ceiling_one_seed']:.2f} against one seed, {noise['ceiling_mean']:.2f} against "
              f"the {k}-seed mean")
    extra = f"{f'mean of {k}':>12}" if k > 1 else ""
    print(f"{'proxy':<20}{'Spearman':>10}{'Kendall':>10}{extra}{'s/arch':>10}   (against reference seed 0)")
    table = {}
    for name in names:
        v = np.array(values[name], dtype=float)
        if np.all(np.isnan(v)):
            print(f"{name:<20}{'n/a':>10}{'n/a':>10}{'':>10}  (evaluators.cost missing)")
            continue
        v = np.where(np.isneginf(v), -1e300, v)
        rho = spearmanr(v, ref).statistic
        tau = kendalltau(v, ref).statistic
        row = {"spearman": float(rho), "kendall": float(tau), "seconds": seconds[name] / len(archs)}
        cell = ""
        if k > 1:
            row["spearman_mean_reference"] = float(spearmanr(v, mean_ref).statistic)
            cell = f"{row['spearman_mean_reference']:>12.3f}"
        table[name] = row
        mark = "  <- default proxy" if name == f"train-{DEFAULT_EPOCHS}ep" else ""
        print(f"{name:<20}{rho:>10.3f}{tau:>10.3f}{cell}{seconds[name] / len(archs):>10.3f}{mark}")
    save(table, noise)


def proxy_pair(arch, index: int, data, extra: Split | None, epochs: int, seconds: dict[str, float],
               keys: tuple[str | None, str], lr: float = DEFAULT_LR) -> tuple[float, float]:
    """The short-training proxy of one arch scored on the val split alone and on val + ``extra``.

    One training (on ``data``, whose ``val_extra`` is None, so its accuracy is the val split's);
    the trained net is then scored on ``extra`` and the two accuracies pooled by example count
    (``pooled_accuracy``, as ``train`` does when the data carries ``val_extra``). The pooled
    arm's seconds include the extra evaluation. ``keys`` names the rows of ``seconds`` the
    val-split and the pooled figure are charged to (None: that figure is not kept).
    """
    small_key, pooled_key = keys
    t = time.perf_counter()
    try:
        res = train(build_model(arch, seed=index), data, epochs, lr=lr)
    except TrainingDiverged:
        res = None
    t_train = time.perf_counter() - t
    small = pooled = 0.0 if res is None else res.accuracy
    if res is not None and res.model is not None:
        pooled = pooled_accuracy(res.model, small, len(data.val), extra)
    if small_key:
        seconds[small_key] += t_train
    seconds[pooled_key] += time.perf_counter() - t
    return small, pooled


def reference_noise(refs: list[list[float]]) -> dict[str, float]:
    """How reproducible the reference is, from K >= 2 trainings per arch (rows of ``refs``).

    ``seed_spearman``: mean Spearman over seed pairs, the rank reliability r of one reference
    seed; ``seed_sd``: SD of the per-arch difference between two seeds over sqrt(2) (the noise of
    one training). A proxy that ranked by the noise-free accuracy would still correlate with a
    noisy reference at only about sqrt(r) (the attenuation bound); against the mean of K seeds
    the reliability is K r / (1 + (K - 1) r) (Spearman-Brown).
    """
    a = np.array(refs, dtype=float)
    k = len(a)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    r = float(np.mean([spearmanr(a[i], a[j]).statistic for i, j in pairs]))
    sd = float(np.mean([np.std(a[i] - a[j], ddof=1) for i, j in pairs]) / np.sqrt(2))
    rk = k * r / (1 + (k - 1) * r) if r > 0 else 0.0
    return {"seeds": k, "seed_spearman": r, "seed_sd": sd,
            "ceiling_one_seed": float(np.sqrt(max(r, 0.0))), "ceiling_mean": float(np.sqrt(max(rk, 0.0)))}


if __name__ == "__main__":
    main()
