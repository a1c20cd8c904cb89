"""``confirm_run``: re-train the claimed dominations' nets for longer before they are stated (issue 14).

See ``search.confirm`` for why, the claim rule and the file. Cost: one training of
``confirm_epochs`` epochs (one-cycle SGD, ``evaluators.train_proxy.train``, the search's lr,
batch and seed, the threads of a one-worker trial) per front member that dominates a baseline
on the search's values and per baseline so dominated; nets already in ``confirm.json`` under
the same epochs and training settings (a resumed run) are not trained again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .confirm import CONFIRM_FILE, load_confirm, training_key

__all__ = ["confirm_run", "claimed_numbers"]


def claimed_numbers(data: Any, cap: int | None = None) -> list[int]:
    """The trial numbers the round trains, in order: front members with a claim on the search's
    values (after the end-of-run re-timing), the members with the most claims first (then the
    faster), each followed by the baselines it claims to beat; at most ``cap`` nets (None: all)."""
    from .rundata import search_claims

    by_name = {b["baseline"]: b["number"] for b in data.baselines}
    claims = [(r, search_claims(data, r)) for r in data.front]
    claims.sort(key=lambda rc: (-len(rc[1]), rc[0]["values"].get("latency", 0.0), rc[0]["number"]))
    out: list[int] = []
    for r, beaten in claims:
        for n in ([int(r["number"])] + [int(by_name[b]) for b in beaten]) if beaten else []:
            if n not in out:
                out.append(n)
    return out if cap is None else out[:cap]


def _write(run_dir: Path, doc: Mapping[str, Any]) -> None:
    from .safe_files import atomic_write_text

    atomic_write_text(run_dir / CONFIRM_FILE, json.dumps(doc, indent=2) + "\n")


def confirm_run(run_dir: Path, study: Any, config: Mapping[str, Any],
                printer: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Re-train the nets of the run's claims for ``settings.confirm_epochs``; write and return
    ``confirm.json`` (after each net, so a killed round keeps what it finished). None, and no
    file, when the round is off (``confirm_epochs`` 0/None, a zero-cost proxy, no accuracy
    objective)."""
    from evaluators.train_proxy import TrainingDiverged, train
    from spaces.arch import Arch
    from spaces.build import build_model

    from .objective import get_data
    from .rundata import collect
    from .settings import Settings
    from .study import cores_per_worker

    settings = Settings.from_dict(config.get("settings") or {}).with_train_threads(cores_per_worker(1))
    epochs = int(settings.confirm_epochs or 0)
    if epochs <= 0 or settings.proxy != "train" or "accuracy" not in settings.objectives:
        return None
    data = collect(study, config, run_dir=run_dir)
    wanted = claimed_numbers(data)
    numbers = wanted if settings.confirm_nets is None else wanted[:settings.confirm_nets]
    key = training_key(settings.to_dict())
    old = load_confirm(run_dir)
    members: dict[str, Any] = {}
    if old is not None and old["epochs"] == epochs and old.get("key") == key:
        members = {n: m for n, m in old["members"].items() if isinstance(m, dict) and "accuracy" in m}
    doc: dict[str, Any] = {"epochs": epochs, "key": key, "split": "val (+ the extra val examples)",
                           "note": "front members with a claim and the baselines they claim to beat, "
                                   "re-trained from the same initialisation (search.confirm)",
                           "members": members}
    todo = [n for n in numbers if str(n) not in members]
    rows = {r["number"]: r for r in data.rows}
    if not numbers:
        printer("confirmation round: the front dominates no baseline, nothing to re-train")
    elif todo:
        capped = f"; {len(wanted) - len(numbers)} more left out by --confirm-nets {settings.confirm_nets}" \
            if len(wanted) > len(numbers) else ""
        printer(f"confirmation round: re-training {len(todo)} net(s) for {epochs} epochs "
                f"(the front members that dominate a baseline and those baselines{capped}) ...")
    _write(run_dir, doc)
    ds = get_data(settings)
    for i, n in enumerate(todo, 1):
        row = rows[n]
        start = time.perf_counter()
        try:
            model = build_model(Arch.from_json(row["arch"]), seed=settings.seed)
            acc = float(train(model, ds, epochs=epochs, lr=settings.lr, batch_size=settings.batch_size,
                              seed=settings.seed, threads=settings.train_threads, score_every_epoch=False).accuracy)
            entry: dict[str, Any] = {"accuracy": acc}
        except TrainingDiverged as err:
            entry = {"accuracy": 0.0, "diverged": str(err)}
        except (RuntimeError, ValueError) as err:   # recorded; the claims on this net are not stated
            entry = {"error": f"{type(err).__name__}: {err}"}
        entry["seconds"] = round(time.perf_counter() - start, 3)
        members[str(n)] = entry
        _write(run_dir, doc)
        name = f" [{row['baseline']}]" if row["baseline"] else ""
        search_acc = row["values"].get("accuracy")
        got = f"{entry['accuracy']:.4f}" if "accuracy" in entry else entry["error"]
        printer(f"  {i}/{len(todo)} trial {n}{name}: search accuracy {search_acc:.4f} -> {epochs} epochs {got} "
                f"({entry['seconds']:.0f} s)")
    return doc
