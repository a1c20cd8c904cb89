"""The confirmation round's file ``RUN/confirm.json``, its reader and the claim rule (issue 14).

A trial's accuracy is a short-training proxy (``--epochs``, 3 by default). It ranks nets that
learn fast above nets that end higher: on a default igc run a member scored 0.851 against
baselines at 0.837-0.851 and so "dominated" five of them, yet after 10 epochs it was the lowest
of the six (stop-36 note; ``bench/front_transfer.py``). So before a run states "member M
dominates baseline B", ``search.confirm_round.confirm_run`` re-trains every member that makes
such a claim and every baseline it claims to beat, from the same initialisation and on the same
split as the search, for ``--confirm-epochs`` (default twice ``--epochs``), at most
``--confirm-nets`` nets (the members with the most claims first). A claim is stated only when
it holds on the search's values *and* M's confirmed accuracy is at least B's.
The test split is not used: it stays held out for ``search.train`` and the benchmarks.

File layout: ``{"epochs": E, "key": {...training settings...}, "members": {"<trial number>":
{"accuracy": a, "seconds": s} or {"error": "..."}}}``; written after each net, atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

__all__ = ["CONFIRM_FILE", "load_confirm", "training_key", "confirmed_accuracies", "claim_state"]

CONFIRM_FILE = "confirm.json"


def training_key(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a confirmed accuracy depends on (besides the arch and the epochs): a file
    written under other ones is not reused."""
    keys = ("data", "data_dir", "data_limit", "val_examples", "seed", "lr", "batch_size")
    return {k: settings.get(k) for k in keys}


def load_confirm(run_dir: str | Path | None) -> dict[str, Any] | None:
    """The document of ``RUN/confirm.json``, or None when absent or unreadable."""
    if run_dir is None:
        return None
    try:
        doc = json.loads((Path(run_dir) / CONFIRM_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("members"), dict) or not isinstance(doc.get("epochs"), int):
        return None
    return doc


def confirmed_accuracies(doc: Mapping[str, Any]) -> dict[int, float]:
    """trial number -> confirmed accuracy, for the nets whose re-training finished."""
    out = {}
    for n, m in doc["members"].items():
        if isinstance(m, dict) and isinstance(m.get("accuracy"), (int, float)) and str(n).isdigit():
            out[int(n)] = float(m["accuracy"])
    return out


def claim_state(confirmed: Mapping[int, float] | None, member: int, baseline: int) -> str:
    """What becomes of a claim that holds on the search's values: "stated" without a round
    (``confirmed`` None) or when the member's confirmed accuracy is at least the baseline's;
    "withdrawn" when it is lower; "unchecked" when either net was not re-trained (over
    ``--confirm-nets``, or its training failed): not stated either."""
    if confirmed is None:
        return "stated"
    if member not in confirmed or baseline not in confirmed:
        return "unchecked"
    return "stated" if confirmed[member] >= confirmed[baseline] else "withdrawn"
