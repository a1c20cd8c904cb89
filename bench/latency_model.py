"""How good is predicted latency? Fit on some ``mixed`` archs, test on >= 200 others.

    python bench/latency_model.py [--fit 60] [--test 200] [--shape 1x224x224] [--runtime onnxruntime]
                                  [--backbones small,resnet20,mobilenet_v2] [--quick]

Archs are sampled at random from ``spaces.get_space("mixed")`` on each backbone (the ``small``
flat net and format-2 block nets; Optuna ``RandomSampler``; fit and test sets from different
seeds, the test set with every fit arch removed, so fitting never sees a test arch), split
evenly among the backbones. Each is measured with ``measure_latency`` in its inference form
(``spaces.inference_model``; 1 thread, batch 1: the figure of record, as trials time it; the
default shape and runtime are ``search.run``'s) and predicted with ``evaluators.latency_model``:
per-unit costs measured lazily into a fresh per-machine table, correction fitted on the fit set only.
Printed: the share of test archs predicted within +-10 % of measured (target >= 95 %),
Spearman (target >= 0.95), median and 90th-percentile relative error, the same for the bare
layer sum, and predictions per second (table warm).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402


def _archs(n: int, seed: int, shape: tuple[int, int, int], exclude: set[str],
           backbones: list[str]) -> tuple[list, list[str]]:
    """``n`` archs split among ``backbones``, and the backbone of each."""
    from bench.latency_stability import sample_archs

    out, tags = [], []
    for k, name in enumerate(backbones):
        want = n // len(backbones) + (k < n % len(backbones))
        archs, _ = sample_archs("mixed", want + len(exclude), seed, input_shape=shape, backbone=name)
        picked = [a for a in archs if a.to_json() not in exclude][:want]
        out += picked
        tags += [name] * len(picked)
    return out, tags


def _report(label: str, pred: np.ndarray, meas: np.ndarray) -> None:
    rel = np.abs(pred - meas) / meas
    rho = spearmanr(pred, meas).statistic
    print(f"{label:<22} within +-10 %: {100 * np.mean(rel <= 0.10):5.1f} %   Spearman {rho:.3f}"
          f"   median error {100 * np.median(rel):4.1f} %   p90 error {100 * np.quantile(rel, 0.9):4.1f} %")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", type=int, default=60, help="archs to fit the correction on")
    ap.add_argument("--test", type=int, default=200, help="held-out archs to test on")
    ap.add_argument("--shape", default="1x224x224", help="CxHxW of the timed input (default: search.run's "
                                                          "for the default data)")
    ap.add_argument("--runtime", default="onnxruntime", choices=("torch", "onnxruntime"))
    ap.add_argument("--backbones", default="small,resnet20,mobilenet_v2",
                    help="comma-separated backbones the archs are sampled on")
    ap.add_argument("--seconds", type=float, default=0.25, help="measure_latency cap per format")
    ap.add_argument("--quick", action="store_true", help="30 fit, 60 test archs")
    ap.add_argument("--keep", default=None, help="folder to keep the table, calibration and measurements in "
                                                 "(a rerun refits without remeasuring)")
    args = ap.parse_args(argv)
    if args.quick:
        args.fit, args.test = min(args.fit, 30), min(args.test, 60)
    try:
        shape = tuple(int(v) for v in args.shape.lower().split("x"))
        assert len(shape) == 3 and min(shape) > 0
    except (ValueError, AssertionError):
        sys.exit(f"error: --shape must be CxHxW positive integers, got {args.shape!r}")
    import torch

    from evaluators import latency_model as lm
    from evaluators.latency import measure_latency
    from spaces import build_model, inference_model

    torch.set_num_threads(1)
    backbones = [b for b in args.backbones.split(",") if b]
    fit_set, _ = _archs(args.fit, 1, shape, set(), backbones)
    test_set, tags = _archs(args.test, 2, shape, {a.to_json() for a in fit_set}, backbones)
    print(f"{len(fit_set)} fit + {len(test_set)} test archs from 'mixed' ({', '.join(backbones)}), shape {args.shape}, "
          f"batch 1, 1 thread, runtime {args.runtime}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="groupnas-lm-") as tmp:
        cache = args.keep or tmp
        os.environ["GROUPNAS_CACHE_DIR"] = cache  # calibration and table fresh, side by side
        t0 = time.perf_counter()
        kept = Path(cache) / "measured.json"
        done = json.loads(kept.read_text()) if kept.is_file() else {}

        def measure(archs: list) -> np.ndarray:
            for a in archs:
                if a.to_json() not in done:
                    done[a.to_json()] = measure_latency(inference_model(build_model(a, seed=0)), shape, threads=1,
                                                        runtime=args.runtime, max_seconds=args.seconds).median_ms
            Path(cache).mkdir(parents=True, exist_ok=True)
            kept.write_text(json.dumps(done))
            return np.array([done[a.to_json()] for a in archs])

        y_fit = measure(fit_set)
        y_test = measure(test_set)
        print(f"measured {len(fit_set) + len(test_set)} archs in {time.perf_counter() - t0:.0f} s", flush=True)
        t1 = time.perf_counter()
        fit = lm.fit_correction(fit_set, list(y_fit), runtime=args.runtime, cache=cache)
        bare = np.array([lm.layer_sum(a, None, 1, 1, args.runtime, cache=cache) for a in test_set])
        print(f"layer table filled and correction fitted in {time.perf_counter() - t1:.0f} s "
              f"(fit residual median {100 * fit['residual_median_rel']:.1f} %)", flush=True)
        t2 = time.perf_counter()
        pred = np.array([lm.predict_latency(a, runtime=args.runtime, cache=cache) for a in test_set])
        rate = len(test_set) / (time.perf_counter() - t2)
    print(f"measured range {y_test.min():.3f} .. {y_test.max():.3f} ms (median {statistics.median(y_test):.3f})")
    _report("layer sum (no fit)", bare, y_test)
    _report("predicted (fitted)", pred, y_test)
    for name in backbones:
        sel = np.array([t == name for t in tags])
        if sel.sum() > 2:
            _report(f"  {name} ({sel.sum()})", pred[sel], y_test[sel])
    print(f"predictions per second: {rate:.0f} (table warm)")
    print("targets: within +-10 % >= 95 %, Spearman >= 0.95")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
