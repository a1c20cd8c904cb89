"""Re-measured targets of a run (``RUN/targets.json``, written by ``search.remeasure``).

A target is one way to run the networks: runtime (``torch`` / ``onnxruntime``) x device x
threads x batch, named e.g. ``onnxruntime-cpu-t2-b32``. File format (the team contract)::

    {"targets": {"<name>": {"runtime": "torch"|"onnxruntime", "device": "cpu"|"cuda",
                            "threads": int, "batch": int, "node": str,
                            "members": {"<trial number>": {"median_ms": float, "iqr_ms": float,
                                                          "memory_format": str}}}}}

The front on a target is taken over the run's objectives with the latency replaced by that
target's median (latency is added when the run did not search on it): accuracy and any
params / MACs objective come from the run (``pareto.json``, else the Optuna study), never from
the target. Dominance is Pareto dominance (``search.pareto.pareto_mask``: equal points are all
kept). A member is *stable* when it is on the front of every target.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .cli_errors import CliError
from .pareto import pareto_mask, to_minimisation

__all__ = ["TARGETS_FILE", "target_name", "load_targets", "save_targets", "merge_targets", "run_values",
           "front_on_target", "stable_members", "fronts"]

TARGETS_FILE = "targets.json"
DIRECTIONS = {"accuracy": "maximize", "latency": "minimize", "params": "minimize", "macs": "minimize"}
RUNTIMES = ("torch", "onnxruntime")


def target_name(runtime: str, device: str, threads: int, batch: int) -> str:
    """``<runtime>-<device>-t<threads>-b<batch>``, e.g. ``torch-cpu-t1-b1``."""
    return f"{runtime}-{device}-t{threads}-b{batch}"


def _check(doc: Any, path: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("targets"), dict):
        raise CliError(f"{path}: expected a JSON object with a 'targets' mapping")
    for name, t in doc["targets"].items():
        if not isinstance(t, dict) or not isinstance(t.get("members"), dict):
            raise CliError(f"{path}: target {name!r} has no 'members' mapping")
        for key, kind in (("runtime", str), ("device", str), ("threads", int), ("batch", int)):
            if not isinstance(t.get(key), kind):
                raise CliError(f"{path}: target {name!r}: field '{key}' must be {kind.__name__}, got {t.get(key)!r}")
        for number, m in t["members"].items():
            if not str(number).isdigit() or not isinstance(m, dict) or not isinstance(m.get("median_ms"), (int, float)):
                raise CliError(f"{path}: target {name!r}: member {number!r} needs a trial number and a median_ms")
    return doc["targets"]


def load_targets(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Target name -> target (see the module doc); ``CliError`` when missing or malformed."""
    path = Path(run_dir) / TARGETS_FILE
    if not path.is_file():
        raise CliError(f"no {TARGETS_FILE} in {run_dir}: run python -m search.remeasure {run_dir} first")
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CliError(f"cannot read {path}: {err}") from None
    return _check(doc, path)


def merge_targets(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``old`` updated by ``new``: a re-measured target keeps its other members, new figures win."""
    merged = {name: dict(t, members=dict(t["members"])) for name, t in old.items()}
    for name, t in new.items():
        members = dict(merged.get(name, {}).get("members", {}))
        members.update(t["members"])
        merged[name] = dict(t, members=members)
    return merged


def save_targets(run_dir: str | Path, targets: dict[str, dict[str, Any]], merge: bool = True) -> Path:
    """Write ``RUN/targets.json`` atomically, merged with what is there unless ``merge=False``."""
    path = Path(run_dir) / TARGETS_FILE
    if merge and path.is_file():
        targets = merge_targets(load_targets(run_dir), targets)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"targets": targets}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def run_values(run_dir: str | Path) -> tuple[list[str], dict[int, dict[str, float]]]:
    """(objectives, trial number -> objective values) of the run: ``pareto.json`` members and
    baselines first, completed trials of the Optuna study for any trial they lack."""
    run_dir = Path(run_dir)
    objectives: list[str] = []
    values: dict[int, dict[str, float]] = {}
    pareto = run_dir / "pareto.json"
    if pareto.is_file():
        try:
            doc = json.loads(pareto.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CliError(f"cannot read {pareto}: {err}") from None
        objectives = list(doc.get("objectives") or [])
        for m in doc.get("members", []):
            values[int(m["trial"])] = {k: float(v) for k, v in (m.get("values") or {}).items()}
        for b in doc.get("baselines", []):
            values.setdefault(int(b["trial"]), {k: float(v) for k, v in (b.get("values") or {}).items()})
    return objectives, values


def _study_values(run_dir: Path, wanted: set[int]) -> tuple[list[str], dict[int, dict[str, float]]]:
    from .storage import load_run

    _, study, config = load_run(run_dir)
    objectives = list(config.get("objectives") or study.user_attrs.get("objectives") or ["accuracy", "latency"])
    out: dict[int, dict[str, float]] = {}
    for t in study.get_trials(deepcopy=False):
        if t.number in wanted and t.state.name == "COMPLETE" and t.values and len(t.values) == len(objectives):
            out[t.number] = {o: float(v) for o, v in zip(objectives, t.values)}
    return objectives, out


def _target_points(target: dict[str, Any], objectives: list[str],
                   values: dict[int, dict[str, float]]) -> tuple[list[int], list[list[float]], list[str]]:
    objs = list(objectives) if "latency" in objectives else [*objectives, "latency"]
    numbers, rows = [], []
    for key, m in target["members"].items():
        n = int(key)
        v = values.get(n)
        if v is None or any(o not in v for o in objs if o != "latency"):
            continue
        numbers.append(n)
        rows.append([float(m["median_ms"]) if o == "latency" else v[o] for o in objs])
    return numbers, rows, objs


def fronts(run_dir: str | Path) -> dict[str, list[int]]:
    """Target name -> sorted trial numbers on that target's front (see the module doc)."""
    run_dir = Path(run_dir)
    targets = load_targets(run_dir)
    objectives, values = run_values(run_dir)
    wanted = {int(k) for t in targets.values() for k in t["members"]}
    missing = wanted - set(values)
    if not objectives or missing:
        try:
            study_objs, study_vals = _study_values(run_dir, missing)
        except CliError:  # no study in the folder: pareto.json is all there is
            study_objs, study_vals = [], {}
        objectives = objectives or study_objs
        for n, v in study_vals.items():
            values.setdefault(n, v)
    if not objectives:
        raise CliError(f"{run_dir}: cannot tell the run's objectives (no pareto.json and no study)")
    out: dict[str, list[int]] = {}
    for name, target in targets.items():
        numbers, rows, objs = _target_points(target, objectives, values)
        if not numbers:
            out[name] = []
            continue
        mask = pareto_mask(to_minimisation(rows, [DIRECTIONS[o] for o in objs]))
        out[name] = sorted(n for n, keep in zip(numbers, mask) if keep)
    return out


def front_on_target(run_dir: str | Path, target: str) -> list[int]:
    """Trial numbers on the front of ``target`` (accuracy from the run, latency from the target)."""
    all_fronts = fronts(run_dir)
    if target not in all_fronts:
        raise CliError(f"unknown target {target!r}; targets in {Path(run_dir) / TARGETS_FILE}: "
                       f"{', '.join(all_fronts) or 'none'}")
    return all_fronts[target]


def stable_members(run_dir: str | Path) -> list[int]:
    """Trial numbers on the front of every target of the run (empty when there is no target)."""
    all_fronts = fronts(run_dir)
    if not all_fronts:
        return []
    common = set.intersection(*(set(f) for f in all_fronts.values()))
    return sorted(common)
