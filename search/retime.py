"""End-of-run re-timing (issue 12): the file ``RUN/final_latency.json`` and its reader.

The round itself is ``search.final_round.retime_run`` (kept apart so that the readers of the run
folder do not import the measuring code).

Trials are timed one at a time over the whole run, minutes apart; a machine that gets faster
or slower in between would make a late net look better than an early baseline. So after the
last trial ``search.final_round.retime_run`` rebuilds every front member and every baseline in its deployed form
(``spaces.inference_model``, at the run's latency shape) and times them all together with
``evaluators.latency.measure_round`` on the run's runtime, threads and batch: one window, one
reference, the same calibration. The figures (``LatencyResult.record()`` per trial number) go
to ``RUN/final_latency.json``; ``search.rundata.collect`` reads them back, so the final table and
pareto.json's ``dominates_baselines`` claims compare nets measured in the same window
(``final_latency_ms``, ``retimed: true``). trials.csv keeps each trial's own figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["FINAL_FILE", "load_final"]

FINAL_FILE = "final_latency.json"


def load_final(run_dir: str | Path | None) -> dict[str, Any] | None:
    """The document of ``RUN/final_latency.json``, or None when absent or unreadable."""
    if run_dir is None:
        return None
    path = Path(run_dir) / FINAL_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("members"), dict):
        return None
    return doc
