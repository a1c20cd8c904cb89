"""Does measured latency reproduce across processes? The 18 baselines, 3 processes, old vs new.

    python bench/latency_repro.py [--processes 3] [--seconds 0.5] [--shape 1x32x32] [--runtime torch] [--quick]

The baselines of ``groups`` (7), ``igc`` (6) and ``hetconv`` (5) on the ``small`` backbone, batch
1, 1 thread, are measured in ``--processes`` separate Python processes run one after another.
Each process measures every net twice, side by side: the *old* absolute method (samples of
~2 ms of back-to-back forwards until the last 20 agree within 4 %, median, faster memory
format; what ``measure_latency`` did before reference-relative timing) and the *new*
``measure_latency`` (interleaved with the reference, median ratio x the per-machine
calibration). Both get the same time cap per memory format (``--seconds``). The processes
share one fresh calibration cache (the first one calibrates), as the processes of one
machine do. Printed: per method, the median across nets of the CV across processes
(sample std / mean) and the smallest Spearman between any two processes.
Targets (issue 12): new method median CV <= 5 %, every Spearman >= 0.9.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACES = ("groups", "igc", "hetconv")


def baselines(shape: tuple[int, int, int]) -> dict[str, object]:
    from spaces import build_model, get_space

    nets = {}
    for space in SPACES:
        sp = get_space(space, backbone="small", input_shape=shape, num_classes=10)
        for name, arch in sp.baselines().items():
            nets[f"{space}:{name}"] = build_model(arch, seed=0)
    return nets


def old_absolute(model, shape, seconds: float, window: int = 20, tolerance: float = 0.04) -> float:
    """The pre-issue-12 method: absolute samples until the last ``window`` agree; faster format."""
    import copy

    import torch

    from evaluators.interleave import quartiles, time_calls

    x0 = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))
    best = float("inf")
    for fmt in (torch.contiguous_format, torch.channels_last):
        work = copy.deepcopy(model).eval().to(memory_format=fmt)  # outside inference mode (op caches)
        x = x0.contiguous(memory_format=fmt)
        with torch.inference_mode():
            call = functools.partial(work, x)
            one = min(time_calls(call, 1) for _ in range(5))
            inner = max(1, int(2.0 / max(one, 1e-3)))
            samples, kept, kept_spread = [], [], float("inf")
            t_cap = time.perf_counter() + seconds
            while time.perf_counter() < t_cap:
                samples.append(time_calls(call, inner))
                if len(samples) >= window:
                    q1, med, q3 = quartiles(samples[-window:])
                    if (q3 - q1) / med < kept_spread:
                        kept, kept_spread = samples[-window:], (q3 - q1) / med
                    if kept_spread <= tolerance:
                        break
            best = min(best, statistics.median(kept or samples))
    return best


def child(args: argparse.Namespace) -> None:
    import torch

    from evaluators.latency import measure_latency

    torch.set_num_threads(1)
    shape = tuple(int(v) for v in args.shape.split("x"))
    out = {"old": {}, "new": {}}
    for name, model in baselines(shape).items():
        if args.runtime == "torch":
            out["old"][name] = old_absolute(model, shape, args.seconds)
        r = measure_latency(model, shape, threads=1, runtime=args.runtime, max_seconds=args.seconds)
        out["new"][name] = r.median_ms
    print("RESULT " + json.dumps(out), flush=True)


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def summary(label: str, per_proc: list[dict[str, float]]) -> tuple[float, float]:
    names = list(per_proc[0])
    cvs = [statistics.stdev([p[n] for p in per_proc]) / statistics.mean([p[n] for p in per_proc]) for n in names]
    rhos = [_spearman([a[n] for n in names], [b[n] for n in names]) for a, b in itertools.combinations(per_proc, 2)]
    med = statistics.median(cvs)
    print(f"{label:<34} median CV {100 * med:5.1f} %   max CV {100 * max(cvs):5.1f} %   "
          f"min Spearman {min(rhos):.3f}   (all: {', '.join(f'{r:.3f}' for r in rhos)})")
    return med, min(rhos)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.5, help="time cap per net and memory format (both methods)")
    ap.add_argument("--shape", default="1x32x32", help="CxHxW of the timed input (default 1x32x32)")
    ap.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"))
    ap.add_argument("--quick", action="store_true", help="2 processes, 0.3 s")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.processes, args.seconds = 2, 0.3
    if args.child:
        child(args)
        return 0
    if args.processes < 2:
        sys.exit("error: --processes must be at least 2")
    per = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="groupnas-repro-cache-") as cache:
        env = dict(os.environ, PYTHONPATH=str(ROOT), GROUPNAS_CACHE_DIR=cache)
        for k in range(args.processes):
            t0 = time.perf_counter()
            cmd = [sys.executable, __file__, "--child", "--seconds", str(args.seconds), "--shape", args.shape,
                   "--runtime", args.runtime]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            line = next((s for s in res.stdout.splitlines() if s.startswith("RESULT ")), None)
            if res.returncode != 0 or line is None:
                sys.exit(f"error: process {k + 1} failed:\n{res.stderr[-2000:]}")
            doc = json.loads(line[len("RESULT "):])
            for key in per:
                if doc[key]:
                    per[key].append(doc[key])
            print(f"process {k + 1}/{args.processes} done in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"18 baselines of {', '.join(SPACES)} (small backbone), shape {args.shape}, batch 1, 1 thread, "
          f"runtime {args.runtime}, cap {args.seconds} s per net and format; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    if per["old"]:
        summary("old: absolute medians", per["old"])
    summary("new: ratio x calibration (ms)", per["new"])
    print("targets: new median CV <= 5 %, every Spearman >= 0.9")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
