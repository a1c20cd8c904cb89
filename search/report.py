"""``python -m search.report RUN [--target NAME]``: the front table and every plot, from the storage alone.

Rewrites ``trials.csv``, ``pareto.json``, ``pareto.png``, ``pareto.html``, ``hypervolume.png``,
``layers.png`` and ``best/arch.json`` of the run folder and prints the front. ``--target NAME``
uses the latencies re-measured by ``search.remeasure`` on that target (``targets.json``) and
writes ``pareto-<NAME>.{json,png,html}``, and lists the members on the front of every target.
"""

from __future__ import annotations

import argparse
import time
from typing import Sequence

from .cli_errors import CliError, run_cli
from .runfolder import front_table, load_run, write_outputs

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.report", description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder (runs/<name>)")
    p.add_argument("--target", default=None, help="re-measured target name from targets.json")
    args = p.parse_args(argv)
    start = time.perf_counter()
    run_dir, study, config = load_run(args.run)
    if args.target is not None and not (run_dir / "targets.json").is_file():
        raise CliError(f"no targets.json in {run_dir}: run search.remeasure first")
    data = write_outputs(run_dir, study, config, target=args.target)
    from .run_state import describe

    state = describe(run_dir, study)                # killed / still in progress, or None
    print(front_table(data) + (f"\n{state}" if state else ""))
    if args.target is not None:
        try:
            from .targets import stable_members

            stable = stable_members(run_dir)
            print(f"on the front of every target: {', '.join(map(str, stable)) or 'none'}")
        except ImportError:
            pass
    suffix = f"-{args.target}" if args.target else ""
    print(f"wrote {run_dir}/pareto{suffix}.png, pareto{suffix}.html, pareto{suffix}.json"
          + ("" if args.target else ", trials.csv, hypervolume.png, layers.png, best/arch.json")
          + f" in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    run_cli(main, prog="search.report")
