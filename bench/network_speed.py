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
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators.cost import count_macs  # noqa: E402
from evaluators.interleave import time_pairs  # noqa: E402
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


def _pair_ratios(candidates: dict, reference, rounds: int) -> dict[str, float]:
    """Median over ``rounds`` interleaved pairs of candidate / reference time, for each candidate
    (``evaluators.interleave.time_pairs``; tolerance 0, so exactly ``rounds`` pairs are timed)."""
    stats = time_pairs(candidates, reference, window=rounds, max_pairs=rounds, max_seconds=float("inf"),
                       tolerance=0.0)
    return {name: statistics.median(st.ratios) for name, st in stats.items()}


def torch_ratio(dense: nn.Module, cand: nn.Module, x: torch.Tensor, rounds: int) -> float:
    """Candidate / dense latency, each net in its faster memory format; every form is timed
    against dense in the contiguous format, in the same interleaved round."""
    ref_x = x.contiguous()
    nets = {}
    for f in FORMATS:
        xf = x.contiguous(memory_format=f)
        nets[f"c-{f}"] = (cand.to(memory_format=f), xf)
        if f != torch.contiguous_format:
            nets[f"d-{f}"] = (dense.to(memory_format=f), xf)
    with torch.inference_mode():
        ratios = _pair_ratios({k: (lambda m=m, xf=xf: m(xf)) for k, (m, xf) in nets.items()},
                              lambda: dense(ref_x), rounds)
    best_dense = min([1.0, *(r for k, r in ratios.items() if k.startswith("d-"))])
    return min(r for k, r in ratios.items() if k.startswith("c-")) / best_dense


def ort_ratio(dense_path: str, cand_path: str, x: np.ndarray, rounds: int, threads: int) -> float:
    sd, sc = ort_session(dense_path, threads), ort_session(cand_path, threads)
    feed = {"input": x}
    return _pair_ratios({"c": lambda: sc.run(None, feed)}, lambda: sd.run(None, feed), rounds)["c"]


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
            print(f"{sname:<9}{bname:<18}{macs:>6.2f} | {tb:>13.3f}{_share(tb, macs)} | "
                  f"{ta:>12.3f}{_share(ta, macs)} | {ob:>11.3f}{_share(ob, macs)} | "
                  f"{oa:>10.3f}{_share(oa, macs)}", flush=True)
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
