"""Network-level speed of grouping: how much of each baseline's MAC saving is realised.

    python bench/network_speed.py [--quick] [--backbone small] [--size 224] [--threads 1]
                                  [--spaces groups,igc,...] [--only group-g8,hetconv-P4]

For every baseline of every space on the backbone at 3 x size x size, batch 1: its MACs ratio
to the dense backbone, its latency ratio to the dense backbone, and the realised share
(1 - latency ratio) / (1 - MACs ratio), in torch eager and onnxruntime (CPU), "before" (the
form trials timed until now: ``condense_model``) and "after" (``spaces.inference_model``; the
dense reference goes through the same form). Timing: dense and candidate forwards alternate;
the latency ratio is the median of the per-pair ratios. Torch runs both memory formats (each
net in its faster one, as ``evaluators.latency`` does). Target (issue 16): group-g8,
group-g4-shuffle, hetconv-P4 and igc-L4 realise >= 60 % on the better runtime after.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators.cost import count_macs  # noqa: E402
from search.onnx_export import export_onnx, ort_session  # noqa: E402
from spaces import SPACES, build_model, condense_model, get_backbone, get_space, inference_model  # noqa: E402

TARGETS = ("group-g8", "group-g4-shuffle", "hetconv-P4", "igc-L4")
FORMATS = (torch.contiguous_format, torch.channels_last)


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, as a trained net has (folding must not depend on defaults)."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model.eval()


def torch_ratio(dense: nn.Module, cand: nn.Module, x: torch.Tensor, rounds: int) -> float:
    """Median over rounds of candidate / dense seconds, each in its faster memory format."""
    pairs = [(dense.to(memory_format=f), cand.to(memory_format=f), x.contiguous(memory_format=f))
             for f in FORMATS]
    td: list[list[float]] = [[] for _ in FORMATS]
    tc: list[list[float]] = [[] for _ in FORMATS]
    with torch.inference_mode():
        for d, c, xf in pairs:
            for _ in range(3):
                d(xf), c(xf)
        for _ in range(rounds):
            for i, (d, c, xf) in enumerate(pairs):
                t0 = time.perf_counter()
                d(xf)
                t1 = time.perf_counter()
                c(xf)
                t2 = time.perf_counter()
                td[i].append(t1 - t0)
                tc[i].append(t2 - t1)
    fd = min(range(len(FORMATS)), key=lambda i: statistics.median(td[i]))
    fc = min(range(len(FORMATS)), key=lambda i: statistics.median(tc[i]))
    return statistics.median(c / d for c, d in zip(tc[fc], td[fd]))


def ort_ratio(dense_path: str, cand_path: str, x: np.ndarray, rounds: int, threads: int) -> float:
    sd, sc = ort_session(dense_path, threads), ort_session(cand_path, threads)
    feed = {"input": x}
    for _ in range(3):
        sd.run(None, feed), sc.run(None, feed)
    ratios = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        sd.run(None, feed)
        t1 = time.perf_counter()
        sc.run(None, feed)
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))
    return statistics.median(ratios)


def _share(lat: float, macs: float) -> str:
    return f"{(1 - lat) / (1 - macs):>6.0%}" if macs < 1 else f"{'-':>6}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (15 instead of 60)")
    ap.add_argument("--backbone", default="small")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--spaces", default=",".join(SPACES), help="comma-separated space names")
    ap.add_argument("--only", default="", help="comma-separated baseline names (default: all)")
    args = ap.parse_args(argv)
    names = [s for s in args.spaces.split(",") if s]
    bad = [s for s in names if s not in SPACES]
    if bad or args.size < 8 or args.threads < 1:
        print(f"error: unknown space {bad[0]!r} (known: {', '.join(SPACES)})" if bad
              else "error: --size must be >= 8 and --threads >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rounds = 15 if args.quick else 60
    shape = (3, args.size, args.size)
    only = {s for s in args.only.split(",") if s}

    dense_arch = get_backbone(args.backbone, input_shape=shape, num_classes=10)
    dense = _randomise_bn(build_model(dense_arch))
    dense_macs = count_macs(dense, shape)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    tmp = Path(tempfile.mkdtemp(prefix="netspeed-"))
    forms = {"before": condense_model, "after": inference_model}
    dense_forms = {k: f(dense).eval() for k, f in forms.items()}
    dense_onnx = {}
    for k, m in dense_forms.items():
        dense_onnx[k] = str(tmp / f"dense-{k}.onnx")
        export_onnx(m, shape, dense_onnx[k])

    print(f"# {args.backbone} backbone at {'x'.join(map(str, shape))}, batch 1, threads={args.threads}, "
          f"{rounds} interleaved pairs, torch {torch.__version__}{' (quick)' if args.quick else ''}")
    print("# lat = latency / dense latency (median of dense/candidate pairs); share = (1 - lat) / (1 - MACs)")
    print(f"{'space':<9}{'baseline':<18}{'MACs':>6} | {'torch before':>13}{'':>6} | {'torch after':>12}{'':>6} | "
          f"{'ort before':>11}{'':>6} | {'ort after':>10}{'':>6}")
    seen: dict[str, tuple] = {}
    best: dict[str, float] = {}
    for sname in names:
        space = get_space(sname, backbone=args.backbone, input_shape=shape, num_classes=10)
        for bname, arch in space.baselines().items():
            if (only and bname not in only) or arch.to_json() == dense_arch.to_json():
                continue
            key = arch.to_json()
            if key not in seen:
                model = _randomise_bn(build_model(arch))
                macs = count_macs(model, shape) / dense_macs
                row = []
                for k, f in forms.items():
                    cand = f(model).eval()
                    path = str(tmp / f"{sname}-{bname}-{k}.onnx")
                    export_onnx(cand, shape, path)
                    row.append(torch_ratio(dense_forms[k], cand, x, rounds))
                    row.append(ort_ratio(dense_onnx[k], path, x.numpy(), rounds, args.threads))
                seen[key] = (macs, row[0], row[2], row[1], row[3])
            macs, tb, ta, ob, oa = seen[key]
            print(f"{sname:<9}{bname:<18}{macs:>6.2f} | {tb:>13.3f}{_share(tb, macs)} | {ta:>12.3f}{_share(ta, macs)} | "
                  f"{ob:>11.3f}{_share(ob, macs)} | {oa:>10.3f}{_share(oa, macs)}", flush=True)
            if bname in TARGETS:
                best[bname] = max((1 - ta) / (1 - macs), (1 - oa) / (1 - macs))
    if best:
        print("\n## target: realised share after inference_model, better runtime, >= 60 %")
        for bname in TARGETS:
            if bname in best:
                print(f"{bname:<18}{best[bname]:>6.0%}  {'ok' if best[bname] >= 0.6 else 'BELOW'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
