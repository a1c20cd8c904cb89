"""``python -m search.remeasure RUN``: re-time the front (and the baselines) on other targets.

A target is runtime x device x threads x batch (``--runtime torch,onnxruntime --threads 1,2
--batch 1,32 [--device cuda]``). Each member is rebuilt from its Arch JSON
(``condense_model(build_model(arch))``: what would be deployed; for a learned op the condensed
structure of the freshly built op, which has the trained one's group counts -- DGC may end
training with another group count) and timed with ``evaluators.latency.measure_latency`` (warm-up,
samples until the last 20 agree within 4 %, median and IQR, best memory format, the
machine-wide measurement lock; on CUDA synchronised with CUDA events):

- ``torch``: the ``nn.Module`` itself, torch intra-op threads = ``threads``;
- ``onnxruntime``: the member exported to ONNX (``search.onnx_export``, dynamic batch), run in an
  ``InferenceSession`` with ``intra_op_num_threads = threads`` (1 inter-op thread); the session is
  wrapped as a module so that it is timed by the very same loop (NCHW input, fed as numpy).

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

from .cli_errors import CliError, run_cli
from .targets import RUNTIMES, fronts, save_targets, stable_members, target_name

__all__ = ["main", "build_parser", "OrtModule", "members_of", "measure_target"]


class OrtModule(nn.Module):
    """An onnxruntime session behind ``nn.Module.forward`` (torch tensor in, numpy logits out),
    so that ``measure_latency`` times it like a PyTorch model. Not copied by ``deepcopy``."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> Any:
        return self.session.run(None, {self.input_name: x.contiguous().numpy()})[0]

    def __deepcopy__(self, memo: dict) -> OrtModule:
        return self


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


def _deployed(arch_json: str, seed: int) -> nn.Module:
    from spaces.arch import Arch
    from spaces.build import build_model, condense_model

    return condense_model(build_model(Arch.from_json(arch_json), seed=seed)).eval()


def measure_target(model: nn.Module, input_shape: tuple[int, int, int], runtime: str, threads: int,
                   batch: int, device: str, seconds: float, onnx_path: Path | None = None) -> Any:
    """One ``LatencyResult`` of ``model`` (or its ONNX graph at ``onnx_path``) on one target."""
    from evaluators.latency import measure_latency

    budget = {"warmup_s": min(0.1, seconds / 5)}
    if runtime == "onnxruntime":
        from .onnx_export import ort_session

        session = OrtModule(ort_session(onnx_path, threads=threads, device=device))
        # the session feeds host memory: time it on the host clock (session.run is synchronous)
        return measure_latency(session, input_shape, batch_size=batch, threads=threads, device="cpu",
                               formats=("contiguous",), max_seconds=seconds, **budget)
    return measure_latency(model, input_shape, batch_size=batch, threads=threads, device=device,
                           max_seconds=seconds / 2, **budget)


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
    shape = tuple(int(v) for v in json.loads(rows[0]["arch"])["input_shape"])
    models = {r["number"]: _deployed(r["arch"], seed) for r in rows}
    plan = [(rt, t, b) for rt in runtimes for t in threads for b in batches]
    print(f"re-measuring {len(rows)} trials ({sum(1 for r in rows if r['baseline'])} baselines) on "
          f"{len(plan)} targets, device {args.device}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="groupnas-onnx-") as tmp:
        onnx_paths: dict[int, Path] = {}
        if "onnxruntime" in runtimes:
            from .onnx_export import check_parity, export_onnx

            for n, model in models.items():
                onnx_paths[n] = Path(tmp) / f"trial-{n}.onnx"
                export_onnx(model, shape, onnx_paths[n])
                check_parity(model, onnx_paths[n], shape, batches=(1,))
        for k, (rt, t, b) in enumerate(plan, 1):
            name = target_name(rt, args.device, t, b)
            members: dict[str, Any] = {}
            node = ""
            for n, model in models.items():
                res = measure_target(model, shape, rt, t, b, args.device, args.seconds, onnx_paths.get(n))
                node = res.node
                members[str(n)] = {"median_ms": res.median_ms, "iqr_ms": res.iqr_ms,
                                   "memory_format": res.memory_format, "converged": res.converged}
            results[name] = {"runtime": rt, "device": args.device, "threads": t, "batch": b, "node": node,
                             "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds_budget": args.seconds,
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
              f"{args.seconds} (spread of the last 20 samples > 4 %: a busy machine?); their median is "
              "that of the steadiest window")
    for name in results:
        print(f"front on {name}: {', '.join(map(str, on_front.get(name, []))) or 'none'}")
    stable = stable_members(run_dir)
    print(f"on the front of every target ({len(on_front)} in {run_dir / 'targets.json'}): "
          f"{', '.join(map(str, stable)) or 'none'}")
    print(f"redraw one target: python -m search.report {run_dir} --target {next(iter(results))}")
    return 0


if __name__ == "__main__":
    run_cli(main, prog="search.remeasure")
