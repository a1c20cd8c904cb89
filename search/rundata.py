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

__all__ = ["RunData", "collect", "hv_history", "tie_groups", "dominated_baselines", "search_claims",
           "withdrawn_claims", "unchecked_claims", "run_objectives"]


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
    retimed: dict[str, Any] | None = None          # the end-of-run round's setting (search.retime)
    confirm: dict[str, Any] | None = None          # the confirmation round's setting (search.confirm)
    confirmed: dict[int, float] | None = None      # trial number -> confirmed accuracy

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
        complete = _apply_final(run_dir, complete, data)
        _apply_confirm(run_dir, data)
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


def _apply_final(run_dir: Path | None, complete: list[dict[str, Any]], data: RunData) -> list[dict[str, Any]]:
    """Front and baselines with the end-of-run latencies (``search.retime``), when re-timed:
    ``values["latency"]`` and the ``latency_*`` attrs replaced, ``final_latency_ms`` and
    ``retimed`` added; the trial's own figure stays under ``search_latency_ms``."""
    from .retime import load_final

    final = load_final(run_dir)
    if final is None:
        return complete
    data.retimed = {k: v for k, v in final.items() if k != "members"}
    out = []
    for r in complete:
        m = final["members"].get(str(r["number"]))
        if isinstance(m, dict) and isinstance(m.get("latency_ms"), (int, float)):
            r = dict(r, values=dict(r["values"]), attrs=dict(r["attrs"]), retimed=True)
            r["attrs"]["search_latency_ms"] = r["attrs"].get("latency_ms")
            r["attrs"].update(m)
            r["attrs"]["final_latency_ms"] = float(m["latency_ms"])
            if "latency" in r["values"]:
                r["values"]["latency"] = float(m["latency_ms"])
        out.append(r)
    return out


def _apply_confirm(run_dir: Path | None, data: RunData) -> None:
    """The confirmation round's accuracies (``search.confirm``), when the run has one."""
    from .confirm import confirmed_accuracies, load_confirm

    doc = load_confirm(run_dir)
    if doc is not None:
        data.confirm = {k: v for k, v in doc.items() if k != "members"}
        data.confirmed = confirmed_accuracies(doc)


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


def search_claims(data: RunData, row: dict[str, Any]) -> list[str]:
    """The baselines ``row`` dominates on the run's own values (latencies re-timed when re-timed)."""
    if not data.baselines:
        return []
    me = data.points([row])[0]
    pts = data.points(data.baselines)
    return [b["baseline"] for b, p in zip(data.baselines, pts)
            if b["number"] != row["number"] and np.all(me <= p) and np.any(me < p)]


def _claims(data: RunData, row: dict[str, Any], state: str) -> list[str]:
    from .confirm import claim_state

    by_name = {b["baseline"]: b["number"] for b in data.baselines}
    return [name for name in search_claims(data, row)
            if claim_state(data.confirmed, row["number"], by_name[name]) == state]


def dominated_baselines(data: RunData, row: dict[str, Any]) -> list[str]:
    """The claims the run states: ``search_claims`` that the confirmation round upheld, when the
    run has one (``search.confirm.claim_state``)."""
    return _claims(data, row, "stated")


def withdrawn_claims(data: RunData, row: dict[str, Any]) -> list[str]:
    """The ``search_claims`` of ``row`` that the confirmation round's accuracies contradict."""
    return _claims(data, row, "withdrawn")


def unchecked_claims(data: RunData, row: dict[str, Any]) -> list[str]:
    """The ``search_claims`` of ``row`` whose nets the round did not re-train (not stated)."""
    return _claims(data, row, "unchecked")


def hv_history(data: RunData) -> tuple[list[int], list[float]]:
    """Hypervolume of the front after each completed trial (same reference point as the run)."""
    done = sorted((r for r in data.rows if r["state"] == "COMPLETE" and r["values"]),
                  key=lambda r: r["complete"] or dt.datetime.min)
    if not done or data.ref is None or len(data.objectives) not in (2, 3):
        return [], []
    pts = data.points(done)
    return [r["number"] for r in done], hypervolume_history(pts, data.ref).tolist()

