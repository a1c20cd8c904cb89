"""``python -m search.remeasure RUN``: re-time the front (and the baselines) on other targets.

A target is runtime x device x threads x batch (``--runtime torch,onnxruntime --threads 1,2
--batch 1,32 [--device cuda]``). Each member is rebuilt from its Arch JSON
(``spaces.inference_model(build_model(arch))``: what would be deployed, BN and permutations
folded; for a learned op the condensed
structure of the freshly built op, which has the trained one's group counts -- DGC may end
training with another group count) at the input shape ``--latency-shape`` (default: the run's
``settings.latency_shape``, else the arch's own) and timed with
``evaluators.latency.measure_round``: all members of a target in ONE interleaved round against
the fixed reference network (median per-pair ratio x the per-machine calibration of the
reference; best memory format; the machine-wide measurement lock), so every figure of a
target's table comes from the same window:

- ``torch``: the ``nn.Module`` itself, torch intra-op threads = ``threads``;
- ``onnxruntime``: the member exported to ONNX (``evaluators.onnx_runtime``, dynamic batch; parity
  checked first), run in an ``InferenceSession`` with ``intra_op_num_threads = threads``.

Results are merged into ``RUN/targets.json`` (``search.targets``), written after every target so
an interrupted re-measure keeps what it finished. Prints the latency table, each target's front
(accuracy from the run, latency from the target) and the members on the front of every target;
``python -m search.report RUN --target NAME`` redraws the front for one target.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from evaluators.onnx_runtime import OrtModule

from .cli_errors import CliError, run_cli
from .targets import RUNTIMES, fronts, save_targets, stable_members, target_name

__all__ = ["main", "build_parser", "OrtModule", "members_of", "measure_target", "parse_shape", "deployed_model", "at_shape"]


def _int_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"{flag} must be a comma list of positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise CliError(f"{flag} must be a comma list of positive integers, got {text!r}")
    return list(dict.fromkeys(values))


def _runtimes(text: str) -> list[str]:
    names = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [n for n in names if n not in RUNTIMES]
    if not names or bad:
        raise CliError(f"unknown runtime {(bad or [text])[0]!r}; known runtimes: {', '.join(RUNTIMES)}")
    return names


def members_of(run_dir: Path, include: str = "front") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows to re-time, config): the front plus the baselines (``include="front"``), or every
    completed trial (``"all"``); each row has ``number``, ``arch`` (JSON), ``baseline``, ``values``."""
    from .runfolder import collect, load_run

    _, study, config = load_run(run_dir)
    data = collect(study, config, run_dir=run_dir)
    if include == "all":
        rows = [r for r in data.rows if r["state"] == "COMPLETE" and r["values"] and r["arch"]]
    else:
        rows = list(data.front) + [b for b in data.baselines]
    seen: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["arch"] and r["number"] not in seen:
            seen[r["number"]] = r
    if not seen:
        raise CliError(f"{run_dir}: no completed trial with an architecture to re-measure yet")
    return sorted(seen.values(), key=lambda r: r["number"]), config


def deployed_model(arch_json: str, seed: int) -> nn.Module:
    """The deployed form of ``arch_json``: ``spaces.inference_model(build_model(arch))``, eval mode."""
    from spaces import inference_model
    from spaces.arch import Arch
    from spaces.build import build_model

    return inference_model(build_model(Arch.from_json(arch_json), seed=seed)).eval()


def measure_target(models: dict[int, nn.Module], input_shape: tuple[int, int, int], runtime: str, threads: int,
                   batch: int, device: str, seconds: float) -> dict[int, Any]:
    """``LatencyResult`` per member on one target, all members timed in ONE interleaved round
    against the reference (``evaluators.latency.measure_round``): one window for the whole table."""
    from evaluators.latency import measure_round

    per_format = seconds if runtime == "onnxruntime" else seconds / 2
    res = measure_round({str(n): m for n, m in models.items()}, input_shape, batch, threads, runtime=runtime,
                        device=device, max_seconds=per_format, warmup_s=min(0.1, seconds / 5))
    return {int(n): r for n, r in res.items()}


def parse_shape(text: str, channels: int | None = None) -> tuple[int, int, int]:
    """``CxHxW`` (or ``HxW``, C then from ``channels``) to a shape; ``CliError`` otherwise."""
    try:
        parts = [int(v) for v in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 2 and channels:
        parts = [channels, *parts]
    if len(parts) != 3 or min(parts) < 1:
        raise CliError(f"--latency-shape must be CxHxW positive integers (e.g. 1x224x224), got {text!r}")
    if channels and parts[0] != channels:
        raise CliError(f"--latency-shape {text}: the nets take {channels} input channels, not {parts[0]}")
    return parts[0], parts[1], parts[2]


def at_shape(arch_json: str, shape: tuple[int, int, int] | None) -> str:
    """The arch JSON with its input shape replaced (the nets are fully convolutional)."""
    if shape is None:
        return arch_json
    doc = json.loads(arch_json)
    doc["input_shape"] = list(shape)
    return json.dumps(doc)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.remeasure",
        description="Re-time a run's front and baselines on other targets (runtime x threads x batch "
                    "[x device]); writes RUN/targets.json.",
        epilog="Then: python -m search.report RUN --target torch-cpu-t2-b32")
    p.add_argument("run", help="run folder (runs/<name>)")
    p.add_argument("--threads", default="1", help="comma list of thread counts (default 1)")
    p.add_argument("--batch", default="1", help="comma list of batch sizes (default 1)")
    p.add_argument("--runtime", default="torch,onnxruntime",
                   help="comma list of runtimes: torch, onnxruntime (default both)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cpu (default) or cuda (needs a GPU; timed with CUDA events)")
    p.add_argument("--members", default="front", choices=("front", "all"),
                   help="front: the front and the baselines (default); all: every completed trial")
    p.add_argument("--latency-shape", default=None,
                   help="CxHxW input to time at (default: the run's latency shape, else the arch's own)")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="time budget of one measurement (default 1.0; both memory formats for torch)")
    return p


def _check_device(device: str, runtimes: list[str]) -> None:
    if device != "cuda":
        return
    if not torch.cuda.is_available():
        raise CliError(f"--device cuda: no CUDA GPU is visible to torch {torch.__version__} on this machine; "
                       "re-measure on a machine with a GPU, or leave out --device")
    if "onnxruntime" in runtimes:
        from .onnx_export import ort_providers

        try:
            ort_providers("cuda")
        except RuntimeError as err:
            raise CliError(f"--device cuda --runtime onnxruntime: {err}") from None


def _table(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]], on_front: dict[str, list[int]]) -> str:
    names = list(results)
    width = max([10, *(len(n) for n in names)])
    head = f"{'trial':>5}  {'accuracy':>8}  " + "  ".join(f"{n:>{width}}" for n in names) + "  baseline"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for n in names:
            m = results[n]["members"].get(str(r["number"]))
            mark = "*" if r["number"] in on_front.get(n, []) else " "
            cells.append(f"{m['median_ms']:>{width - 1}.3f}{mark}" if m else f"{'-':>{width}}")
        acc = r["values"].get("accuracy", float("nan"))
        lines.append(f"{r['number']:>5}  {acc:>8.4f}  " + "  ".join(cells) + f"  {r['baseline'] or ''}")
    lines.append("latency: median ms per forward of one batch; * = on that target's front")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args = build_parser().parse_args(argv)
    threads = _int_list("--threads", args.threads)
    batches = _int_list("--batch", args.batch)
    runtimes = _runtimes(args.runtime)
    if not args.seconds > 0:
        raise CliError(f"--seconds must be positive, got {args.seconds}")
    _check_device(args.device, runtimes)
    run_dir = Path(args.run)
    rows, config = members_of(run_dir, args.members)
    seed = int((config.get("settings") or {}).get("seed", 0))
    own = tuple(int(v) for v in json.loads(rows[0]["arch"])["input_shape"])
    text = args.latency_shape or (config.get("settings") or {}).get("latency_shape")
    if isinstance(text, (list, tuple)):  # as config.json stores it
        text = "x".join(str(v) for v in text)
    shape = parse_shape(str(text), own[0]) if text else own
    models = {r["number"]: deployed_model(at_shape(r["arch"], shape), seed) for r in rows}
    plan = [(rt, t, b) for rt in runtimes for t in threads for b in batches]
    print(f"re-measuring {len(rows)} trials ({sum(1 for r in rows if r['baseline'])} baselines) on "
          f"{len(plan)} targets, device {args.device}, input {'x'.join(map(str, shape))}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    if "onnxruntime" in runtimes:  # the graphs timed must compute what the nets do
        from .onnx_export import check_parity, export_onnx

        with tempfile.TemporaryDirectory(prefix="groupnas-onnx-") as tmp:
            for n, model in models.items():
                export_onnx(model, shape, Path(tmp) / f"trial-{n}.onnx")
                check_parity(model, Path(tmp) / f"trial-{n}.onnx", shape, batches=(1,))
    for k, (rt, t, b) in enumerate(plan, 1):
        name = target_name(rt, args.device, t, b)
        res = measure_target(models, shape, rt, t, b, args.device, args.seconds)
        members = {str(n): {"median_ms": r.median_ms, "iqr_ms": r.iqr_ms, "memory_format": r.memory_format,
                            "converged": r.converged, "ref_ratio": r.ref_ratio, "spread": r.spread}
                   for n, r in res.items()}
        first = next(iter(res.values()))
        results[name] = {"runtime": rt, "device": args.device, "threads": t, "batch": b, "node": first.node,
                         "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds_budget": args.seconds,
                         "input_shape": list(shape), "ref_ms": first.ref_ms, "calibration": first.calibration,
                         "method": "one interleaved round against the reference network (measure_round)",
                         "members": members}
        save_targets(run_dir, {name: results[name]})
        elapsed = time.perf_counter() - start
        print(f"[{k}/{len(plan)}] {name}: {len(members)} trials, "
              f"{min(m['median_ms'] for m in members.values()):.3f}..{max(m['median_ms'] for m in members.values()):.3f} ms"
              f"  (elapsed {elapsed:.0f} s, ETA {elapsed / k * (len(plan) - k):.0f} s)", flush=True)

    on_front = fronts(run_dir)
    print(_table(rows, results, on_front))
    unsettled = sum(not m["converged"] for t in results.values() for m in t["members"].values())
    if unsettled:
        print(f"{unsettled} of {len(plan) * len(rows)} measurements did not settle within --seconds "
              f"{args.seconds} (spread of the last 20 ratios to the reference > 4 %: a busy machine?); "
              "their figure is the median ratio over every pair drawn")
    for name in results:
        print(f"front on {name}: {', '.join(map(str, on_front.get(name, []))) or 'none'}")
    stable = stable_members(run_dir)
    print(f"on the front of every target ({len(on_front)} in {run_dir / 'targets.json'}): "
          f"{', '.join(map(str, stable)) or 'none'}")
    print(f"redraw one target: python -m search.report {run_dir} --target {next(iter(results))}")
    return 0


if __name__ == "__main__":
    run_cli(main, prog="search.remeasure")
