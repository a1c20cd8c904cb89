"""Cost and speed of every op family against the dense conv, at C=128, 32x32.

    python bench/ops.py [--quick] [--threads 1] [--batch 1,32] [--channels 128] [--size 32]

For each op: its MACs ratio to the dense KxK conv it replaces (3x3, or 5x5 for the K=5
decompositions), its measured latency ratio to that dense conv in the same run, and the share
of the theoretical saving it realises, (1 - latency ratio) / (1 - MACs ratio), at each batch
size, in NCHW and channels_last. Timing: torch.inference_mode, fixed thread count, warm-up,
every op timed once per round in a rotating interleaved order (so slow drifts of a shared
machine hit all ops alike), median over the rounds. Target (issue 3): at batch 1 in the better
format, HetConv P=4 and IGC L=4,M=32 realise >= 70 % of their saving.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators.cost import count_macs, count_params  # noqa: E402
from spaces import make_op  # noqa: E402

# (label, op, kernel_size, params); the dense reference of a row is "conv" at its kernel size
FAMILIES: list[tuple[str, str, int, dict]] = [
    ("conv 3x3", "conv", 3, {}),
    ("group g=2", "group", 3, {"groups": 2}),
    ("group g=4", "group", 3, {"groups": 4}),
    ("group g=8", "group", 3, {"groups": 8}),
    ("group g=4 +shuffle", "group", 3, {"groups": 4, "shuffle": True}),
    ("group g=8 +shuffle", "group", 3, {"groups": 8, "shuffle": True}),
    ("dwsep", "dwsep", 3, {}),
    ("igc L=2 M=64", "igc", 3, {"L": 2, "M": 64}),
    ("igc L=4 M=32", "igc", 3, {"L": 4, "M": 32}),
    ("igc L=8 M=16", "igc", 3, {"L": 8, "M": 16}),
    ("igc L=32 M=4", "igc", 3, {"L": 32, "M": 4}),
    ("hetconv P=2", "hetconv", 3, {"P": 2}),
    ("hetconv P=4", "hetconv", 3, {"P": 4}),
    ("hetconv P=8", "hetconv", 3, {"P": 8}),
    ("hetconv P=16", "hetconv", 3, {"P": 16}),
    ("inception", "inception", 3, {}),
    ("bottleneck r=4", "bottleneck", 3, {"reduction": 4}),
    ("bottleneck r=4 g=8", "bottleneck", 3, {"reduction": 4, "groups": 8}),
    ("conv 5x5", "conv", 5, {}),
    ("decomp asym K=5", "decomp", 5, {"mode": "asym"}),
    ("decomp stack K=5", "decomp", 5, {"mode": "stack"}),
]
TARGETS = ("hetconv P=4", "igc L=4 M=32")


def time_interleaved(models: dict[str, nn.Module], x: torch.Tensor, rounds: int, warmup: int) -> dict[str, float]:
    """Median seconds per forward of each model, timed in rotating interleaved order."""
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for n in names:
            for _ in range(warmup):
                models[n](x)
        for r in range(rounds):
            for i in range(len(names)):
                n = names[(i + r) % len(names)]
                t0 = time.perf_counter()
                models[n](x)
                times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", default="1,32", help="comma-separated batch sizes")
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c, hw = args.channels, args.size
    shape = (c, hw, hw)
    models = {label: make_op(op, c, c, k, 1, **p).eval() for label, op, k, p in FAMILIES}
    ref = {label: f"conv {k}x{k}" for label, _, k, _ in FAMILIES}
    macs = {label: count_macs(m, shape) for label, m in models.items()}
    params = {label: count_params(m) for label, m in models.items()}
    mac_ratio = {label: macs[label] / macs[ref[label]] for label in models}

    print(f"# ops at C={c}, {hw}x{hw}, threads={args.threads}, torch {torch.__version__}"
          f"{' (quick)' if args.quick else ''}")
    print("# lat = latency / dense latency (same run); share = (1 - lat) / (1 - MACs ratio)")
    best: dict[str, float] = {}
    for batch in [int(b) for b in args.batch.split(",")]:
        rounds = (60 if args.quick else 300) if batch == 1 else (5 if args.quick else 25)
        warmup = 5 if batch == 1 else 2
        results = {}
        for fmt, mf in (("NCHW", torch.contiguous_format), ("CL", torch.channels_last)):
            x = torch.randn(batch, *shape).contiguous(memory_format=mf)
            ms = {n: m.to(memory_format=mf) for n, m in models.items()}
            results[fmt] = time_interleaved(ms, x, rounds, warmup)
        print(f"\n## batch {batch} ({rounds} rounds)")
        print(f"{'op':<20}{'params':>9}{'MMACs':>9}{'MACs':>7} | {'ms NCHW':>8}{'lat':>7}{'share':>7}"
              f" | {'ms CL':>8}{'lat':>7}{'share':>7}")
        for label in models:
            row = f"{label:<20}{params[label]:>9}{macs[label] / 1e6 * batch:>9.1f}{mac_ratio[label]:>7.3f} |"
            shares = []
            for fmt in ("NCHW", "CL"):
                t = results[fmt][label]
                lat = t / results[fmt][ref[label]]
                if label == ref[label]:
                    row += f"{t * 1e3:>8.3f}{'1':>7}{'-':>7}"
                else:
                    share = (1 - lat) / (1 - mac_ratio[label])
                    shares.append((lat, share))
                    row += f"{t * 1e3:>8.3f}{lat:>7.3f}{share:>7.0%}"
                row += " |" if fmt == "NCHW" else ""
            print(row)
            if batch == 1 and shares:
                best[label] = max(s for _, s in shares)
    if best:
        print("\n## target (batch 1, better format): share of the saving realised >= 70 %")
        for label in TARGETS:
            mark = "ok" if best[label] >= 0.7 else "BELOW"
            print(f"{label:<20}{best[label]:>7.0%}  {mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
