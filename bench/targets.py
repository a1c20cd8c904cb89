"""Benchmark: how a run's front moves between deployment targets.

For the front (and baselines) of a run, re-measured by ``search.remeasure`` on torch and
onnxruntime x threads x batch, prints the latency ratio onnxruntime / torch per member and
target pair (< 1: onnxruntime is faster), each target's front, and how many members stay
Pareto-optimal on every target.

    python bench/targets.py runs/<run>            # an existing run
    python bench/targets.py --quick               # runs a tiny search first (about 1 minute)

Latency figures depend on the machine and its load: note both with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiny_search(out: Path, trials: int) -> Path:
    """A small real search (groups space, digits, 1 epoch on 300 examples)."""
    cmd = [sys.executable, "-m", "search.run", "--space", "groups", "--trials", str(trials), "--epochs", "1",
           "--data-limit", "300", "--latency-seconds", "0.2", "--seed", "0", "--out", str(out), "--name", "bench"]
    print("$", " ".join(cmd[1:]), flush=True)
    res = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"tiny search failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return out / "bench"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", nargs="?", help="run folder (default: run a tiny search first)")
    p.add_argument("--quick", action="store_true", help="tiny search of 3 trials, threads 1, batch 1,32, 0.3 s")
    p.add_argument("--threads", default=None, help="comma list (default 1,2; --quick: 1)")
    p.add_argument("--batch", default="1,32", help="comma list (default 1,32)")
    p.add_argument("--seconds", type=float, default=None, help="budget per measurement (default 1.0; --quick 0.3)")
    args = p.parse_args()
    threads = args.threads or ("1" if args.quick else "1,2")
    seconds = args.seconds or (0.3 if args.quick else 1.0)

    import torch

    from search import remeasure
    from search.targets import fronts, load_targets, stable_members, target_name

    with tempfile.TemporaryDirectory(prefix="bench-targets-") as tmp:
        run_dir = Path(args.run) if args.run else tiny_search(Path(tmp), 3 if args.quick else 12)
        print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} (shared machines give noisy figures)")
        remeasure.main([str(run_dir), "--threads", threads, "--batch", args.batch,
                        "--runtime", "torch,onnxruntime", "--seconds", str(seconds)])
        targets = load_targets(run_dir)
        on_front = fronts(run_dir)
        stable = stable_members(run_dir)

        pairs = [(int(t), int(b)) for t in threads.split(",") for b in args.batch.split(",")]
        members = sorted({int(k) for name in targets for k in targets[name]["members"]})
        print("\nlatency ratio onnxruntime / torch (< 1: onnxruntime faster)")
        head = f"{'trial':>5}  " + "  ".join(f"{f't{t}-b{b}':>9}" for t, b in pairs)
        print(head)
        print("-" * len(head))
        per_pair: dict[tuple[int, int], list[float]] = {pair: [] for pair in pairs}
        for n in members:
            cells = []
            for t, b in pairs:
                o = targets.get(target_name("onnxruntime", "cpu", t, b), {}).get("members", {}).get(str(n))
                q = targets.get(target_name("torch", "cpu", t, b), {}).get("members", {}).get(str(n))
                if o and q:
                    ratio = o["median_ms"] / q["median_ms"]
                    per_pair[(t, b)].append(ratio)
                    cells.append(f"{ratio:>9.2f}")
                else:
                    cells.append(f"{'-':>9}")
            print(f"{n:>5}  " + "  ".join(cells))
        print(f"{'median':>5}  " + "  ".join(f"{statistics.median(v):>9.2f}" if v else f"{'-':>9}"
                                           for v in per_pair.values()))
        print("\nfront size per target: " + ", ".join(f"{k} {len(v)}" for k, v in on_front.items()))
        union = set().union(*on_front.values()) if on_front else set()
        print(f"members on some target's front: {len(union)}; on the front of all {len(on_front)} targets: "
              f"{len(stable)} ({', '.join(map(str, stable)) or 'none'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
