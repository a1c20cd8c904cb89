"""The run folder: storage, config.json, and everything derived from the storage alone.

``runs/<name>/`` holds the Optuna storage (``study.journal``: Optuna's JournalStorage on a
file, which stays consistent when several processes append to it -- each write is one
locked append -- and which ``optuna-dashboard runs/<name>/study.journal`` opens), or a
``--storage`` URL recorded in ``config.json``. ``write_outputs`` derives ``trials.csv``,
``pareto.json``, ``pareto.png``, ``pareto.html``, ``hypervolume.png``, ``layers.png`` and
``best/arch.json`` from the study; any backend that fills a study the same way (the trial user
attributes below) gets the same folder.

Trial user attributes: ``arch`` (canonical JSON), ``choices`` (layer -> label), figures
(``accuracy``, ``latency_ms``, ``latency_iqr_ms``, ``threads``, ``memory_format``, ``params``,
``macs``, ``seconds``, ``acc_epochs``), ``baseline``, ``repeat_of``, ``prune_reason``,
``fail_reason``, ``interrupted``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .cli_errors import CliError
from .pareto import hypervolume, hypervolume_history, knee_index, pareto_mask, reference_point, to_minimisation

__all__ = ["JOURNAL", "CONFIG", "open_storage", "storage_spec", "new_run_dir", "write_config", "read_config",
           "load_run", "RunData", "collect", "write_outputs", "front_table", "machine_info", "FIGURE_KEYS"]

JOURNAL = "study.journal"
CONFIG = "config.json"
DIRECTIONS = {"accuracy": "maximize", "latency": "minimize", "params": "minimize", "macs": "minimize"}
KEYS = {"accuracy": "accuracy", "latency": "latency_ms", "params": "params", "macs": "macs"}
FIGURE_KEYS = ("accuracy", "latency_ms", "latency_iqr_ms", "threads", "memory_format", "params", "macs",
               "seconds", "eval_seconds", "acc_epochs", "learned", "node", "proxy")


# ----------------------------------------------------------------------------- storage

def storage_spec(run_dir: Path, storage: str | None) -> str:
    """What config.json records: a URL, or a journal path (relative to the run folder if inside)."""
    if storage is None:
        return JOURNAL
    return storage


def open_storage(spec: str, run_dir: Path | None = None, must_exist: bool = False, repair: bool | None = None) -> Any:
    """An Optuna storage for ``spec``: a URL (``sqlite:///...``, ``postgresql://...``) or a journal file.
    ``repair`` True/False: an existing journal is checked first (``search.journal_repair``)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if "://" in spec:
        try:
            return optuna.storages.get_storage(spec)
        except Exception as err:  # any driver/URL problem is bad input here
            raise CliError(f"cannot open storage {spec!r}: {type(err).__name__}: {err}. Give a journal "
                           "file path, sqlite:///FILE.db or postgresql://USER@HOST/DB") from None
    path = Path(spec)
    if not path.is_absolute() and run_dir is not None:
        path = run_dir / path
    if must_exist and not path.is_file():
        raise CliError(f"{path.parent} holds no study: {path.name} not found")
    if not path.parent.is_dir():
        raise CliError(f"cannot open storage {spec!r}: folder {path.parent} does not exist")
    if repair is not None and path.is_file():
        from .journal_repair import open_journal
        return open_journal(path, repair_it=repair, run_hint=str(run_dir or path.parent))
    return JournalStorage(JournalFileBackend(str(path)))


# ----------------------------------------------------------------------------- config

def machine_info() -> dict[str, Any]:
    """CPU model, core count, package versions: what a latency figure depends on."""
    import optuna
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "optuna": optuna.__version__,
                "numpy": np.__version__}
    for name in ("ray", "matplotlib", "plotly", "sklearn"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "node": platform.node(), "versions": versions}


def new_run_dir(out: str | Path, space: str, name: str | None) -> Path:
    """``out/<name>`` or ``out/<space>-<YYYYmmdd-HHMMSS>``; refuses to reuse an existing run."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out) / (name or f"{space}-{stamp}")
    if (run_dir / CONFIG).exists():
        raise CliError(f"run folder {run_dir} already holds a run; continue it with --resume {run_dir}, "
                       "or pick another --name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    tmp = run_dir / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, run_dir / CONFIG)


def read_config(run_dir: Path) -> dict[str, Any]:
    from .safe_files import read_config as read_checked
    return read_checked(run_dir / CONFIG, DIRECTIONS) or {}


def load_run(run: str | Path, repair: bool = False) -> tuple[Path, Any, dict[str, Any]]:
    """(run folder, Optuna study, config) of an existing run; ``CliError`` if there is none.
    A damaged journal is repaired (``repair``) or read for its whole records; broken derived
    files are rebuilt (``search.safe_files``)."""
    import optuna

    run_dir = Path(run)
    if not run_dir.is_dir():
        raise CliError(f"run folder {run_dir} does not exist")
    config = read_config(run_dir)
    spec = config.get("storage", JOURNAL)
    if "://" not in spec and not (run_dir / spec).is_file() and not Path(spec).is_file():
        raise CliError(f"{run_dir} holds no study (no {JOURNAL} and no storage in {CONFIG})")
    storage = open_storage(spec, run_dir, repair=repair)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    name = config.get("study_name") or (names[0] if len(names) == 1 else None)
    if name is None or name not in names:
        raise CliError(f"{run_dir} holds no study" + (f" named {name!r}" if name else "")
                       + (f" (studies there: {', '.join(names)})" if names else ""))
    study = optuna.load_study(study_name=name, storage=storage)
    if not config:
        config = dict(study.user_attrs.get("config", {}))
    from .safe_files import rebuild_derived
    rebuild_derived(run_dir, lambda: write_outputs(run_dir, study, config))
    return run_dir, study, config


# ----------------------------------------------------------------------------- collecting

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

    @property
    def directions(self) -> list[str]:
        return [DIRECTIONS[o] for o in self.objectives]

    def points(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        return to_minimisation([[r["values"][o] for o in self.objectives] for r in rows], self.directions)


def _row(t: Any, objectives: Sequence[str]) -> dict[str, Any]:
    ua = t.user_attrs
    values = {}
    if t.values is not None and len(t.values) == len(objectives):
        values = {o: float(v) for o, v in zip(objectives, t.values)}
    return {"number": t.number, "state": t.state.name, "values": values, "attrs": ua,
            "baseline": ua.get("baseline"), "repeat_of": ua.get("repeat_of"),
            "choices": ua.get("choices") or {}, "arch": ua.get("arch"),
            "start": t.datetime_start, "complete": t.datetime_complete}


def collect(study: Any, config: dict[str, Any], target: str | None = None,
            run_dir: Path | None = None) -> RunData:
    """Rows, front (Optuna's ``best_trials``, repeats left out), reference point, HV, knee."""
    objectives = list(config.get("objectives") or study.user_attrs.get("objectives") or ["accuracy", "latency"])
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
                        key=lambda r: [r["values"][o] * (1 if DIRECTIONS[o] == "minimize" else -1)
                                       for o in objectives[1:] + objectives[:1]])
    seen = set()
    for r in complete:
        if r["baseline"] and r["baseline"] not in seen:
            seen.add(r["baseline"])
            data.baselines.append(r)
    if complete:
        pts = data.points(complete)
        fixed = {objectives.index("accuracy"): 0.0} if ("accuracy" in objectives and config.get("proxy", "train") == "train") else {}
        ref = reference_point(pts, 0.1, fixed)
        data.ref = ref.tolist()
        if len(objectives) in (2, 3) and data.front:
            data.hv = hypervolume(data.points(data.front), ref)
    if data.front:
        data.knee = data.front[knee_index(data.points(data.front))]
    return data


def _apply_target(run_dir: Path | None, target: str, complete: list[dict[str, Any]], data: RunData) -> list[dict[str, Any]]:
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


# ----------------------------------------------------------------------------- table

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


def _fmt_int(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def front_table(data: RunData) -> str:
    """The front as text: accuracy, latency (+- IQR), params, MACs, ties, baselines dominated."""
    if not data.front:
        return "no completed trial yet: the front is empty"
    ties = tie_groups(data.front)
    head = f"{'trial':>5}  {'accuracy':>8}  {'latency ms':>15}  {'params':>8}  {'MACs':>8}  {'tie':>3}  dominates"
    lines = [f"Pareto front ({len(data.front)} members" + (f", target {data.target}" if data.target else "")
             + f"; objectives {', '.join(data.objectives)})", head, "-" * len(head)]
    for r in sorted(data.front, key=lambda r: (r["attrs"].get("latency_ms") or 0.0)):
        a = r["attrs"]
        lat = a.get("latency_ms")
        lat_s = f"{lat:.3f} ±{(a.get('latency_iqr_ms') or 0.0):.3f}" if lat is not None else "-"
        acc = r["values"].get("accuracy", a.get("accuracy"))
        name = f" [{r['baseline']}]" if r["baseline"] else ""
        knee = " (knee)" if data.knee is not None and data.knee["number"] == r["number"] else ""
        tie = f"~{ties[r['number']]}" if r["number"] in ties else ""
        dom = ", ".join(dominated_baselines(data, r)) or "-"
        lines.append(f"{r['number']:>5}  {acc:>8.4f}  {lat_s:>15}  {_fmt_int(a.get('params')):>8}  "
                     f"{_fmt_int(a.get('macs')):>8}  {tie:>3}  {dom}{name}{knee}")
    if ties:
        lines.append("~N: latencies differ by less than their measured spread (IQR): a tie, no order claimed")
    if data.hv is not None:
        ref = ", ".join(f"{o} {abs(v) if o == 'accuracy' else v:.4g}" for o, v in zip(data.objectives, data.ref or []))
        lines.append(f"hypervolume {data.hv:.6g} (reference point: {ref})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- writing

def _csv_value(v: Any) -> Any:
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    return "" if v is None else v


def write_trials_csv(path: Path, data: RunData) -> None:
    cols = ["number", "state", "baseline", "repeat_of", *[f"value_{o}" for o in data.objectives], *FIGURE_KEYS,
            "prune_reason", "fail_reason", "choices", "arch", "datetime_start", "datetime_complete"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in data.rows:
            a = r["attrs"]
            w.writerow([r["number"], r["state"], _csv_value(r["baseline"]), _csv_value(r["repeat_of"]),
                        *[_csv_value(r["values"].get(o)) for o in data.objectives],
                        *[_csv_value(a.get(k)) for k in FIGURE_KEYS],
                        _csv_value(a.get("prune_reason")), _csv_value(a.get("fail_reason")),
                        _csv_value(r["choices"]), _csv_value(r["arch"]),
                        _csv_value(r["start"]), _csv_value(r["complete"])])


def _member(data: RunData, r: dict[str, Any], ties: dict[int, int]) -> dict[str, Any]:
    return {"trial": r["number"], "baseline": r["baseline"], "values": r["values"],
            "figures": {k: r["attrs"].get(k) for k in FIGURE_KEYS if k in r["attrs"]},
            "arch": json.loads(r["arch"]) if r["arch"] else None, "choices": r["choices"],
            "dominates_baselines": dominated_baselines(data, r), "tie_group": ties.get(r["number"])}


def pareto_document(data: RunData) -> dict[str, Any]:
    ties = tie_groups(data.front)
    counts: dict[str, int] = {}
    for r in data.rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return {"objectives": data.objectives, "directions": data.directions, "target": data.target,
            "reference_point": dict(zip(data.objectives, [abs(v) if o == "accuracy" else v
                                                          for o, v in zip(data.objectives, data.ref or [])])),
            "hypervolume": data.hv, "knee": data.knee["number"] if data.knee else None,
            "trials": counts,
            "members": [_member(data, r, ties) for r in data.front],
            "baselines": [{"name": b["baseline"], "trial": b["number"], "values": b["values"]}
                          for b in data.baselines]}


def write_outputs(run_dir: Path, study: Any, config: dict[str, Any], target: str | None = None) -> RunData:
    """(Re)write every derived file of the run folder from the study; returns the data."""
    from . import plots
    from .safe_files import atomic_path, atomic_write_text

    data = collect(study, config, target=target, run_dir=run_dir)
    suffix = f"-{target}" if target else ""
    title = f"{config.get('space', '')} / {config.get('backbone', '')}" + (f" on {target}" if target else "")
    writers = [(f"pareto{suffix}.png", lambda p: plots.pareto_png(p, data, title)),
               (f"pareto{suffix}.html", lambda p: plots.pareto_html(p, data, title))]
    if not target:
        writers += [("trials.csv", lambda p: write_trials_csv(p, data)),
                    ("hypervolume.png", lambda p: plots.hypervolume_png(p, data)),
                    ("layers.png", lambda p: plots.layers_png(p, data))]
    atomic_write_text(run_dir / f"pareto{suffix}.json", json.dumps(pareto_document(data), indent=2, default=str) + "\n")
    for name, write in writers:   # each to a temporary file, then moved into place: never half a file
        with atomic_path(run_dir / name) as tmp:
            write(tmp)
    if not target and data.knee is not None and data.knee["arch"]:
        atomic_write_text(run_dir / "best" / "arch.json",
                          json.dumps(json.loads(data.knee["arch"]), indent=2, sort_keys=True) + "\n")
    return data


def hv_history(data: RunData) -> tuple[list[int], list[float]]:
    """Hypervolume of the front after each completed trial (same reference point as the run)."""
    done = sorted((r for r in data.rows if r["state"] == "COMPLETE" and r["values"]),
                  key=lambda r: r["complete"] or dt.datetime.min)
    if not done or data.ref is None or len(data.objectives) not in (2, 3):
        return [], []
    pts = data.points(done)
    return [r["number"] for r in done], hypervolume_history(pts, data.ref).tolist()
