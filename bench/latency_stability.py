"""How repeatable is measured latency? 30 archs measured twice in one run.

    python bench/latency_stability.py [--n 30] [--space mixed] [--threads 1] [--batch 1] [--quick]

Archs come from ``spaces.get_space(--space)`` sampled at random (Optuna ``RandomSampler``);
while that does not exist, from random edits of the ``small`` backbone with the ops in
``spaces.OPS``. Learned ops are timed condensed (``spaces.condense_model``). Each arch is
measured with ``measure_latency`` (interleaved with the reference network, ratio x the
per-machine calibration) in pass 1, then all again in pass 2; across processes see
``bench/latency_repro.py``. Printed: Spearman between the passes, the
median within-measurement CV (robust, IQR/1.349/median), the median between-pass CV
(sample std / mean of the two medians), the share of archs whose chosen memory format agrees
across passes, and seconds per measurement. Targets: Spearman >= 0.95, median CV <= 3 %.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from evaluators.latency import measure_latency  # noqa: E402
from spaces import Arch, build_model, condense_model, get_backbone, validate_op  # noqa: E402
from spaces.ops.base import LearnedOp  # noqa: E402
from spaces.ops.registry import OPS  # noqa: E402

# Fallback choices per layer: (op, params, kernel sizes); kept only if the op is registered.
_FALLBACK = [("conv", {}, (3, 5)), ("dwsep", {}, (3, 5))] + [
    ("group", {"groups": g}, (3,)) for g in (2, 4, 8, 16)] + [
    ("group", {"groups": g, "shuffle": True}, (3,)) for g in (4, 8)]


def _fallback_archs(n: int, seed: int, input_shape: tuple[int, int, int], num_classes: int) -> list[Arch]:
    for module in ("group", "dwsep"):  # op modules that may exist before they are registered
        with contextlib.suppress(ImportError):
            importlib.import_module(f"spaces.ops.{module}")
    base = get_backbone("small", input_shape, num_classes)
    rng = np.random.default_rng(seed)
    archs: dict[str, Arch] = {}
    for _ in range(50 * n):
        arch = base
        for i, layer in enumerate(base.layers):
            cin = arch.in_channels(i)
            ok = [(op, p, k) for op, p, ks in _FALLBACK if op in OPS and not issubclass(OPS[op], LearnedOp)
                  for k in ks if _valid(op, cin, layer.out_channels, k, layer.stride, p)]
            op, p, k = ok[rng.integers(len(ok))]
            arch = arch.replace_layer(i, layer.replace(op=op, params=p, kernel_size=k))
        archs.setdefault(arch.to_json(), arch)
        if len(archs) == n:
            break
    return list(archs.values())


def _valid(op: str, cin: int, cout: int, k: int, stride: int, params: dict) -> bool:
    try:
        validate_op(op, cin, cout, k, stride, **params)
    except Exception:  # noqa: BLE001 - any refusal means "not a choice here"
        return False
    return True


def sample_archs(space: str, n: int, seed: int = 0, input_shape: tuple[int, int, int] = (1, 32, 32),
                 num_classes: int = 10, backbone: str = "small") -> tuple[list[Arch], str]:
    """``n`` distinct archs from ``space`` (random sampling), and where they came from."""
    try:
        from spaces import get_space  # type: ignore[attr-defined]
    except ImportError:
        return (_fallback_archs(n, seed, input_shape, num_classes),
                "fallback: random edits of the small backbone (spaces.get_space not yet available)")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sp = get_space(space, backbone=backbone, input_shape=input_shape, num_classes=num_classes)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    archs: dict[str, Arch] = {}
    for _ in range(50 * n):
        trial = study.ask()
        arch = sp.sample(trial)
        study.tell(trial, 0.0)
        archs.setdefault(arch.to_json(), arch)
        if len(archs) == n:
            break
    return list(archs.values()), f"space {space!r} (random sampler, seed {seed})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--space", default="mixed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=2.0, help="time cap per memory format")
    ap.add_argument("--quick", action="store_true", help="8 archs, 0.5 s cap")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.max_seconds = min(args.n, 8), 0.5

    archs, source = sample_archs(args.space, args.n, args.seed)
    models = [condense_model(build_model(a, seed=i)) for i, a in enumerate(archs)]
    print(f"{len(archs)} archs from {source}; threads={args.threads} batch={args.batch} "
          f"torch {torch.__version__}")
    passes = []
    t0 = time.perf_counter()
    for p in range(2):
        passes.append([measure_latency(m, a.input_shape, args.batch, args.threads,
                                       max_seconds=args.max_seconds) for m, a in zip(models, archs)])
        print(f"pass {p + 1} done ({time.perf_counter() - t0:.1f} s)")
    seconds = (time.perf_counter() - t0) / (2 * len(archs))
    a = np.array([r.median_ms for r in passes[0]])
    b = np.array([r.median_ms for r in passes[1]])
    rho = spearmanr(a, b).statistic
    within = statistics.median(r.cv for r in passes[0] + passes[1])
    between = statistics.median(float(np.std([x, y], ddof=1) / np.mean([x, y])) for x, y in zip(a, b))
    same_fmt = np.mean([r.memory_format == s.memory_format for r, s in zip(*passes)])
    cl = np.mean([r.memory_format == "channels_last" for r in passes[0]])
    unconverged = sum(not r.converged for r in passes[0] + passes[1])
    print(f"latency range             : {a.min():.3f} .. {a.max():.3f} ms (pass 1 medians)")
    print(f"Spearman pass1 vs pass2   : {rho:.4f}   (target >= 0.95)")
    print(f"median CV within a run    : {100 * within:.2f} %")
    print(f"median CV between passes  : {100 * between:.2f} %   (target <= 3 %)")
    print(f"same memory format chosen : {100 * same_fmt:.0f} % of archs (channels_last won {100 * cl:.0f} %)")
    print(f"hit the time cap          : {unconverged} of {2 * len(archs)} measurements")
    print(f"seconds per measurement   : {seconds:.2f}")


if __name__ == "__main__":
    main()
