"""``retime_run``: the front and the baselines re-timed together at the end of a run (issue 12).

See ``search.retime`` for why and for the file it writes. Cost: one ``measure_round`` of
(front + baselines) models, ``latency_seconds`` per model (per memory format on torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .retime import FINAL_FILE

__all__ = ["retime_run"]


def retime_run(run_dir: Path, study: Any, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """Re-time the front and the baselines together; write and return ``final_latency.json``.

    Returns None (and writes nothing) when the run has no completed member. A run searched on
    predicted latency (``--latency predicted``) is re-timed too: its claims are then measured.
    """
    from evaluators.latency import measure_round

    from .remeasure import at_shape, deployed_model
    from .rundata import collect

    data = collect(study, config, run_dir=None)
    rows: dict[int, dict[str, Any]] = {}
    for r in [*data.front, *data.baselines]:
        if r["arch"]:
            rows.setdefault(r["number"], r)
    if not rows:
        return None
    settings = config.get("settings") or {}
    own = tuple(json.loads(next(iter(rows.values()))["arch"])["input_shape"])
    shape = tuple(settings.get("latency_shape") or own)
    runtime = str(settings.get("runtime") or "torch")
    seconds = float(settings.get("latency_seconds") or 1.0)
    seed = int(settings.get("seed") or 0)
    models = {str(n): deployed_model(at_shape(r["arch"], shape), seed) for n, r in sorted(rows.items())}
    per_format = seconds if runtime == "onnxruntime" else seconds / 2
    res = measure_round(models, shape, int(settings.get("latency_batch") or 1),
                        int(settings.get("threads") or 1), runtime=runtime, max_seconds=per_format,
                        warmup_s=min(0.1, seconds / 10))
    doc = {"runtime": runtime, "input_shape": list(shape), "batch": int(settings.get("latency_batch") or 1),
           "threads": int(settings.get("threads") or 1),
           "note": "front and baselines timed together in one interleaved round (evaluators.latency.measure_round)",
           "members": {n: r.record() for n, r in res.items()}}
    (Path(run_dir) / FINAL_FILE).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return doc
