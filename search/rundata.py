"""Everything derived from the study alone: its trials in plain form, the front, HV, the knee.

Trial user attributes (``search.trials``): ``arch`` (canonical JSON), ``choices`` (layer ->
label), figures (``search.trials.FIGURES``), ``baseline``, ``repeat_of``, ``prune_reason``,
``fail_reason``, ``interrupted``. Directions and the hypervolume's reference point come from
``search.objectives``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .cli_errors import CliError
from .objectives import OBJECTIVES, directions, reference, to_min
from .pareto import hypervolume, hypervolume_history, knee_index

__all__ = ["RunData", "collect", "hv_history", "tie_groups", "dominated_baselines", "run_objectives"]


def run_objectives(config: Mapping[str, Any], study: Any) -> list[str]:
    """The run's objectives: config.json, else the study's (older runs), else accuracy and latency."""
    settings = config.get("settings") if isinstance(config.get("settings"), Mapping) else {}
    return list(config.get("objectives") or (settings or {}).get("objectives")
                or study.user_attrs.get("objectives") or ["accuracy", "latency"])


@dataclass
class RunData:
    """The study's trials in plain form, the objectives and the front."""

    objectives: list[str]
    rows: list[dict[str, Any]]                     # one per trial
    front: list[dict[str, Any]] = field(default_factory=list)   # rows on the front, by latency
    baselines: list[dict[str, Any]] = field(default_factory=list)
    ref: list[float] | None = None
    hv: float | None = None
    knee: dict[str, Any] | None = None
    target: str | None = None

    def natural(self, values: Sequence[float]) -> list[float]:
        """A point in minimisation form (e.g. the reference point) back in natural units."""
        return [OBJECTIVES[o].sign * float(v) for o, v in zip(self.objectives, values)]

    @property
    def directions(self) -> list[str]:
        return directions(self.objectives)

    def points(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        return to_min([[r["values"][o] for o in self.objectives] for r in rows], self.objectives)


def _row(t: Any, objectives: Sequence[str]) -> dict[str, Any]:
    ua = t.user_attrs
    values = {}
    if t.values is not None and len(t.values) == len(objectives):
        values = {o: float(v) for o, v in zip(objectives, t.values)}
    return {"number": t.number, "state": t.state.name, "values": values, "attrs": ua,
            "baseline": ua.get("baseline"), "repeat_of": ua.get("repeat_of"),
            "choices": ua.get("choices") or {}, "arch": ua.get("arch"),
            "start": t.datetime_start, "complete": t.datetime_complete}


def collect(study: Any, config: Mapping[str, Any], target: str | None = None,
            run_dir: Path | None = None) -> RunData:
    """Rows, front (Optuna's ``best_trials``, repeats left out), reference point, HV, knee."""
    objectives = run_objectives(config, study)
    trials = study.get_trials(deepcopy=False)
    rows = [_row(t, objectives) for t in trials]
    data = RunData(objectives, rows, target=target)
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["values"]]
    if target is not None:
        complete = _apply_target(run_dir, target, complete, data)
        front_numbers = {r["number"] for r in complete if r.get("on_target_front")}
    else:
        front_numbers = {t.number for t in study.best_trials}
    data.front = sorted((r for r in complete if r["number"] in front_numbers and r["repeat_of"] is None),
                        key=lambda r: [r["values"][o] * OBJECTIVES[o].sign
                                       for o in objectives[1:] + objectives[:1]])
    seen = set()
    for r in complete:
        if r["baseline"] and r["baseline"] not in seen:
            seen.add(r["baseline"])
            data.baselines.append(r)
    if complete:
        pts = data.points(complete)
        ref = reference(pts, objectives, str(config.get("proxy") or "train"))
        data.ref = ref.tolist()
        if len(objectives) in (2, 3) and data.front:
            data.hv = hypervolume(data.points(data.front), ref)
    if data.front:
        data.knee = data.front[knee_index(data.points(data.front))]
    return data


def _apply_target(run_dir: Path | None, target: str, complete: list[dict[str, Any]],
                  data: RunData) -> list[dict[str, Any]]:
    """Rows re-measured on ``target`` (search.remeasure), with that target's latencies."""
    if run_dir is None or not (run_dir / "targets.json").is_file():
        raise CliError(f"no targets.json in {run_dir}: run search.remeasure first")
    try:
        from . import targets as targets_mod
    except ImportError:
        raise CliError("search.targets is not available: run search.remeasure first") from None
    known = targets_mod.load_targets(run_dir)
    known = known.get("targets", known) if isinstance(known, dict) else known
    if target not in known:
        raise CliError(f"unknown target {target!r}; targets in {run_dir / 'targets.json'}: {', '.join(known)}")
    members = known[target]["members"]
    on_front = {int(n) for n in targets_mod.front_on_target(run_dir, target)}
    out = []
    for r in complete:
        m = members.get(str(r["number"]))
        if m is None:
            continue
        r = dict(r, values=dict(r["values"]), attrs=dict(r["attrs"]))
        if "latency" in r["values"]:
            r["values"]["latency"] = float(m["median_ms"])
        r["attrs"].update(latency_ms=float(m["median_ms"]), latency_iqr_ms=float(m.get("iqr_ms", 0.0)),
                          memory_format=m.get("memory_format", ""))
        r["on_target_front"] = r["number"] in on_front
        out.append(r)
    if not out:
        raise CliError(f"target {target!r} has no re-measured trial of this study")
    return out


def tie_groups(front: Sequence[dict[str, Any]]) -> dict[int, int]:
    """trial number -> tie group (1, 2, ...) for members whose latencies differ by less than
    their measured spread (the larger IQR of the neighbours); chained along latency order."""
    rows = sorted((r for r in front if r["attrs"].get("latency_ms") is not None),
                  key=lambda r: r["attrs"]["latency_ms"])
    groups: dict[int, int] = {}
    g = 0
    for a, b in zip(rows, rows[1:]):
        la, lb = a["attrs"]["latency_ms"], b["attrs"]["latency_ms"]
        spread = max(a["attrs"].get("latency_iqr_ms") or 0.0, b["attrs"].get("latency_iqr_ms") or 0.0)
        if abs(lb - la) < spread:
            if a["number"] not in groups:
                g += 1
                groups[a["number"]] = g
            groups[b["number"]] = groups[a["number"]]
    return groups


def dominated_baselines(data: RunData, row: dict[str, Any]) -> list[str]:
    if not data.baselines:
        return []
    me = data.points([row])[0]
    pts = data.points(data.baselines)
    return [b["baseline"] for b, p in zip(data.baselines, pts)
            if b["number"] != row["number"] and np.all(me <= p) and np.any(me < p)]


def hv_history(data: RunData) -> tuple[list[int], list[float]]:
    """Hypervolume of the front after each completed trial (same reference point as the run)."""
    done = sorted((r for r in data.rows if r["state"] == "COMPLETE" and r["values"]),
                  key=lambda r: r["complete"] or dt.datetime.min)
    if not done or data.ref is None or len(data.objectives) not in (2, 3):
        return [], []
    pts = data.points(done)
    return [r["number"] for r in done], hypervolume_history(pts, data.ref).tolist()

