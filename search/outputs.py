"""Write the run folder's derived files from the study: trials.csv, pareto.json, the plots,
best/arch.json. Any backend that fills a study the same way gets the same folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from .objectives import FIGURES
from .rundata import RunData, collect, dominated_baselines, tie_groups, unchecked_claims, withdrawn_claims

__all__ = ["write_trials_csv", "pareto_document", "write_outputs"]


def _csv_value(v: Any) -> Any:
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    return "" if v is None else v


def write_trials_csv(path: Path, data: RunData) -> None:
    cols = ["number", "state", "baseline", "repeat_of", *[f"value_{o}" for o in data.objectives], *FIGURES,
            "prune_reason", "fail_reason", "choices", "arch", "datetime_start", "datetime_complete"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in data.rows:
            a = r["attrs"]
            w.writerow([r["number"], r["state"], _csv_value(r["baseline"]), _csv_value(r["repeat_of"]),
                        *[_csv_value(r["values"].get(o)) for o in data.objectives],
                        *[_csv_value(a.get(k)) for k in FIGURES],
                        _csv_value(a.get("prune_reason")), _csv_value(a.get("fail_reason")),
                        _csv_value(r["choices"]), _csv_value(r["arch"]),
                        _csv_value(r["start"]), _csv_value(r["complete"])])


def _member(data: RunData, r: dict[str, Any], ties: dict[int, int]) -> dict[str, Any]:
    return {"trial": r["number"], "baseline": r["baseline"], "values": r["values"],
            "figures": {k: r["attrs"].get(k) for k in FIGURES if k in r["attrs"]},
            "final_latency_ms": r["attrs"].get("final_latency_ms"), "retimed": bool(r.get("retimed")),
            "arch": json.loads(r["arch"]) if r["arch"] else None, "choices": r["choices"],
            "dominates_baselines": dominated_baselines(data, r), "tie_group": ties.get(r["number"]),
            "confirmed_accuracy": _confirmed(data, r), "withdrawn_claims": withdrawn_claims(data, r),
            "unchecked_claims": unchecked_claims(data, r)}


def _confirmed(data: RunData, r: dict[str, Any]) -> float | None:
    return (data.confirmed or {}).get(r["number"])


def pareto_document(data: RunData) -> dict[str, Any]:
    ties = tie_groups(data.front)
    counts: dict[str, int] = {}
    for r in data.rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return {"objectives": data.objectives, "directions": data.directions, "target": data.target,
            "retimed": data.retimed is not None, "final_latency": data.retimed, "confirm": data.confirm,
            "reference_point": dict(zip(data.objectives, data.natural(data.ref or []))),
            "hypervolume": data.hv, "knee": data.knee["number"] if data.knee else None,
            "trials": counts,
            "members": [_member(data, r, ties) for r in data.front],
            "baselines": [{"name": b["baseline"], "trial": b["number"], "values": b["values"],
                           "final_latency_ms": b["attrs"].get("final_latency_ms"), "retimed": bool(b.get("retimed")),
                           "confirmed_accuracy": _confirmed(data, b)}
                          for b in data.baselines]}


def write_outputs(run_dir: Path, study: Any, config: Mapping[str, Any], target: str | None = None) -> RunData:
    """(Re)write every derived file of the run folder from the study; returns the data. Each file
    is written to a temporary file and moved into place (``search.safe_files``): never half a file."""
    from . import plots
    from .safe_files import atomic_path, atomic_write_text

    data = collect(study, config, target=target, run_dir=run_dir)
    suffix = f"-{target}" if target else ""
    title = f"{config.get('space', '')} / {config.get('backbone', '')}" + (f" on {target}" if target else "")
    writers: list[tuple[str, Callable[[Path], Any]]] = [
        (f"pareto{suffix}.png", lambda p: plots.pareto_png(p, data, title)),
        (f"pareto{suffix}.html", lambda p: plots.pareto_html(p, data, title))]
    if not target:
        writers += [("trials.csv", lambda p: write_trials_csv(p, data)),
                    ("hypervolume.png", lambda p: plots.hypervolume_png(p, data)),
                    ("layers.png", lambda p: plots.layers_png(p, data))]
    atomic_write_text(run_dir / f"pareto{suffix}.json", json.dumps(pareto_document(data), indent=2, default=str) + "\n")
    for name, write in writers:
        with atomic_path(run_dir / name) as tmp:
            write(tmp)
    if not target and data.knee is not None and data.knee["arch"]:
        atomic_write_text(run_dir / "best" / "arch.json",
                          json.dumps(json.loads(data.knee["arch"]), indent=2, sort_keys=True) + "\n")
    return data
