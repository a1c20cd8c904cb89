"""``python -m search.export RUN --pick WHAT --out FILE``: an architecture of the run as Arch JSON.

``--pick``: ``knee`` (the balanced member of the front, see ``search.pareto.knee_index``),
``max-accuracy``, ``fastest`` (lowest latency, or the first cost objective), ``trial:N`` (any
completed trial), ``latency<=MS`` (the most accurate front member at most that slow), or
``front`` with ``--out DIR``: every member as ``DIR/trial-N.json`` plus ``DIR/index.json``
and ``DIR/index.csv`` with their figures. The files load with ``spaces.load_arch``. An ``--out``
that names an existing folder gets the file inside it, as ``DIR/trial-N.json`` (like ``cp``).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any, Sequence

from .cli_errors import CliError, run_cli
from .runfolder import RunData, collect, load_run

__all__ = ["main", "pick"]


def _fast_key(data: RunData) -> str:
    return "latency" if "latency" in data.objectives else next(o for o in data.objectives if o != "accuracy")


def pick(data: RunData, what: str) -> dict[str, Any]:
    """The row that ``what`` names; ``CliError`` when nothing matches."""
    if not data.front:
        raise CliError("the run has no completed trial yet: nothing to export")
    if what == "knee":
        return data.knee  # type: ignore[return-value]
    if what == "max-accuracy":
        return max(data.front, key=lambda r: r["values"]["accuracy"])
    if what == "fastest":
        key = _fast_key(data)
        return min(data.front, key=lambda r: r["values"][key])
    m = re.fullmatch(r"trial:(\d+)", what)
    if m:
        n = int(m.group(1))
        for r in [*data.front, *data.rows]:  # a front member with its end-of-run (re-timed) figures
            if r["number"] == n:
                if r["state"] != "COMPLETE" or not r["arch"]:
                    raise CliError(f"trial {n} is {r['state'].lower()}, not a completed trial with an architecture")
                return r
        raise CliError(f"--pick trial:{n}: the study has no trial {n} (trials 0..{len(data.rows) - 1})")
    m = re.fullmatch(r"latency<=([0-9.eE+-]+)", what)
    if m:
        try:
            limit = float(m.group(1))
        except ValueError:
            raise CliError(f"--pick {what}: {m.group(1)!r} is not a number of milliseconds") from None
        ok = [r for r in data.front if r["attrs"].get("latency_ms") is not None and r["attrs"]["latency_ms"] <= limit]
        if not ok:
            fastest = min((r["attrs"].get("latency_ms") or float("inf")) for r in data.front)
            raise CliError(f"--pick {what}: no front member is that fast (the fastest takes {fastest:.3f} ms)")
        return max(ok, key=lambda r: r["values"]["accuracy"])
    raise CliError(f"unknown --pick {what!r}; use knee, max-accuracy, fastest, trial:N, latency<=MS or front")


def _figures(r: dict[str, Any]) -> dict[str, Any]:
    a = r["attrs"]
    return {"trial": r["number"], "baseline": r["baseline"], **{k: a.get(k) for k in
            ("accuracy", "latency_ms", "latency_iqr_ms", "params", "macs", "threads", "memory_format")},
            "choices": r["choices"]}


def _write_arch(r: dict[str, Any], path: Path) -> None:
    from spaces.arch import Arch

    from .safe_files import atomic_write_text

    arch = Arch.from_json(r["arch"])  # validates before writing
    atomic_write_text(path, arch.to_json(indent=2) + "\n")   # CliError naming the file if it cannot


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.export", description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder (runs/<name>)")
    p.add_argument("--pick", default="knee", help="knee (default), max-accuracy, fastest, trial:N, latency<=MS, front")
    p.add_argument("--out", required=True, help="output .json file (a folder for --pick front)")
    args = p.parse_args(argv)
    run_dir, study, config = load_run(args.run)
    data = collect(study, config, run_dir=run_dir)
    out = Path(args.out)
    if args.pick == "front":
        if not data.front:
            raise CliError("the run has no completed trial yet: nothing to export")
        if out.exists() and not out.is_dir():
            raise CliError(f"--pick front needs --out to be a folder; {out} is a file")
        index = []
        for r in data.front:
            _write_arch(r, out / f"trial-{r['number']}.json")
            index.append({"file": f"trial-{r['number']}.json", "knee": r is data.knee, **_figures(r)})
        (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
        with (out / "index.csv").open("w", newline="") as fh:
            cols = ["file", "trial", "baseline", "knee", "accuracy", "latency_ms", "latency_iqr_ms", "params", "macs"]
            w = csv.DictWriter(fh, cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(index)
        print(f"wrote {len(index)} front members and index.json/index.csv to {out}")
        return 0
    r = pick(data, args.pick)
    if out.is_dir():
        out = out / f"trial-{r['number']}.json"     # an existing folder: the file goes into it
    _write_arch(r, out)
    f = _figures(r)
    lat = f"{f['latency_ms']:.3f} ms" if f["latency_ms"] is not None else "-"
    print(f"wrote trial {r['number']} ({args.pick}: accuracy {f['accuracy']:.4f}, {lat}, "
          f"{f['params']:,} params) to {out}")
    return 0


if __name__ == "__main__":
    run_cli(main, prog="search.export")
