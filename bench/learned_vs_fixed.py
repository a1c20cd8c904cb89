"""Does learning the grouping beat fixing it? Learned ops vs fixed group convs at equal MACs.

For each learned op (CondenseNet G=C=4, FLGC G=4, DGC target 4) on every layer of the backbone,
trains on digits over several seeds through the training proxy (which runs the ops' schedules
and returns the condensed model), then builds the fixed ``group`` net with, per layer, the
same inputs per filter as the condensed op (hence the same condensed MACs) and trains it with
the same seeds. Prints test accuracy (mean +- sd over seeds), condensed MACs and measured
latency (``evaluators.latency.measure_latency``, batch 1, condensed model) side by side.

    python bench/learned_vs_fixed.py            # 10 epochs, 3 seeds
    python bench/learned_vs_fixed.py --quick    # 3 epochs, shorter latency runs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators.cost import count_macs, count_params  # noqa: E402
from evaluators.data import load_data  # noqa: E402
from evaluators.latency import measure_latency  # noqa: E402
from evaluators.train_proxy import train  # noqa: E402
from spaces import Arch, build_model, get_backbone  # noqa: E402
from spaces.ops.condense import IndexedGroupConv  # noqa: E402

LEARNED = {
    "condense-G4C4": ("condense", {"groups": 4, "condense_factor": 4}),
    "flgc-G4": ("flgc", {"groups": 4}),
    "dgc-G4": ("dgc", {"groups": 4}),
}


def uniform(base: Arch, op: str, params: dict) -> Arch:
    layers = tuple(layer.replace(op=op, params=params) for layer in base.layers)
    return Arch(base.input_shape, base.num_classes, base.stem, layers, base.head)


def fixed_twin(base: Arch, condensed: torch.nn.Module) -> tuple[str, Arch]:
    """The ``group`` net whose layer i has the condensed layer i's inputs per filter."""
    groups = []
    for i, block in enumerate(condensed.layers):
        op = block.op
        assert isinstance(op, IndexedGroupConv), type(op)
        groups.append(base.in_channels(i) // op.conv.weight.shape[1])
    layers = tuple(layer.replace(op="group", params={"groups": g}) for layer, g in zip(base.layers, groups))
    name = f"group-g{groups[0]}" if len(set(groups)) == 1 else "group-" + "/".join(map(str, groups))
    return name, Arch(base.input_shape, base.num_classes, base.stem, layers, base.head)


def run(arch: Arch, data, epochs: int, seed: int, lat_seconds: float) -> dict:
    t0 = time.perf_counter()
    result = train(build_model(arch, seed=seed), data, epochs, seed=seed, split="test")
    model = result.model
    lat = measure_latency(model, data.input_shape, batch_size=1, threads=1, max_seconds=lat_seconds)
    return {"acc": result.accuracy, "macs": count_macs(model, data.input_shape),
            "params": count_params(model), "ms": lat.median_ms, "fmt": lat.memory_format,
            "model": model, "train_s": time.perf_counter() - t0}


def summary(rows: list[dict]) -> str:
    accs = [r["acc"] for r in rows]
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    macs = sorted({r["macs"] for r in rows})
    ms = statistics.median(r["ms"] for r in rows)
    mac_text = f"{macs[0] / 1e6:.2f}M" if len(macs) == 1 else f"{macs[0] / 1e6:.2f}-{macs[-1] / 1e6:.2f}M"
    return f"{statistics.mean(accs):.3f}+-{sd:.3f}  {mac_text:>11}  {ms:7.3f} ms"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--backbone", default="small")
    ap.add_argument("--threads", type=int, default=1, help="training threads (latency uses 1)")
    ap.add_argument("--quick", action="store_true", help="3 epochs, 0.5 s latency cap")
    args = ap.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    lat_seconds = 0.5 if args.quick else 2.0
    torch.set_num_threads(args.threads)
    data = load_data("digits", seed=0)
    base = get_backbone(args.backbone, data.input_shape, data.num_classes)
    seeds = list(range(args.seeds))
    print(f"{data.describe()}; backbone {args.backbone}; {epochs} epochs; seeds {seeds}; "
          f"latency batch 1, 1 thread, condensed models; torch {torch.__version__}")
    print(f"{'learned op':<16} {'test acc':>11}  {'MACs':>11}  {'latency':>10}   |  "
          f"{'fixed twin':<12} {'test acc':>11}  {'MACs':>11}  {'latency':>10}")
    dense = [run(base, data, epochs, s, lat_seconds) for s in seeds]
    print(f"{'(dense conv)':<16} {summary(dense)}", flush=True)
    fixed_cache: dict[str, list[dict]] = {}
    for name, (op, params) in LEARNED.items():
        learned = [run(uniform(base, op, params), data, epochs, s, lat_seconds) for s in seeds]
        twins = {}
        for s, row in zip(seeds, learned):
            twin_name, twin = fixed_twin(base, row["model"])
            key = twin.to_json() + f"#{s}"
            if key not in fixed_cache:
                fixed_cache[key] = [run(twin, data, epochs, s, lat_seconds)]
            twins.setdefault(twin_name, []).extend(fixed_cache[key])
        twin_text = "; ".join(f"{n:<12} {summary(rows)}" for n, rows in twins.items())
        print(f"{name:<16} {summary(learned)}   |  {twin_text}", flush=True)


if __name__ == "__main__":
    main()
