"""``python -m search.run``: multi-objective architecture search over grouping configurations.

Searches a space (``--space``) with Optuna (NSGA-II by default) for architectures that are
accurate (short training on the data, or a zero-cost score) and fast (measured latency), judged
against the space's hand-designed baselines, and leaves a run folder ``runs/<space>-<time>/``
that ``search.report`` and ``search.export`` read. See ``search/runfolder.py`` for its contents.

Test hooks (environment): ``GROUPNAS_FAIL_TRIALS=3,5`` makes those trial numbers raise on
purpose; ``GROUPNAS_TRIAL_SLEEP=S`` sleeps S seconds at the start of each trial;
``GROUPNAS_WORKER_PLUGIN=module:function`` is called first in each ``--workers`` process (e.g.
to register a space that lives outside ``spaces``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .cli_errors import CliError, EXIT_INTERRUPTED, run_cli
from .objective import OBJECTIVES, Settings

__all__ = ["main", "build_parser", "BACKENDS", "DEFAULT_TRIALS"]

from .backends import BACKENDS  # noqa: E402  (the Ray backend adds "ray" there)
#: + the baselines. A full trial (3 epochs on digits, 1 s of latency) took ~5 s on the 2-core
#: dev machine when it was quiet (30 unpruned trials in 154 s) and pruned ones less, so the
#: default run takes well under 10 minutes there (several times longer when the cores are shared).
DEFAULT_TRIALS = 40
DEFAULTS: dict[str, Any] = {"trials": DEFAULT_TRIALS, "timeout": None, "workers": 1}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.run",
        description="Multi-objective NAS over grouping configurations (accuracy up, latency down).",
        epilog="Example: python -m search.run --space igc   (then: python -m search.report runs/<run>)")
    g = p.add_argument_group("what to search")
    g.add_argument("--space", default="igc", help="search space (see spaces.SPACES; default igc)")
    g.add_argument("--backbone", default="small", help="skeleton whose layers are searched (default small)")
    g.add_argument("--describe", action="store_true", help="print the space's layers, choices and size, then exit")
    g.add_argument("--no-baselines", action="store_true", help="do not evaluate the space's baselines first")
    g = p.add_argument_group("how")
    g.add_argument("--backend", default="optuna", help=f"search engine: {', '.join(BACKENDS)} (default optuna)")
    g.add_argument("--trials", type=int, default=None,
                   help=f"trials to search, on top of the baselines (default {DEFAULT_TRIALS}, chosen so that "
                        "the default command takes under 10 minutes on a quiet 2-core machine; raise it, "
                        "or give --timeout, for a longer search)")
    g.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    g.add_argument("--sampler", default="nsga2", help="nsga2 (default), tpe, or random (the honest baseline)")
    g.add_argument("--population", type=int, default=None,
                   help="NSGA-II population size (default: trials/4, between 8 and 50)")
    g.add_argument("--workers", type=int, default=None, help="parallel trial processes on this machine (default 1)")
    g.add_argument("--address", default=None,
                   help="--backend ray: join the Ray cluster at auto or HOST:PORT (default: start a local instance)")
    g.add_argument("--cpus-per-trial", type=float, default=None,
                   help="--backend ray: CPUs reserved per trial (default: local cores / --workers; 1 on a cluster)")
    g.add_argument("--scheduler", default=None, choices=("asha", "none"),
                   help="--backend ray: asha stops trials early on their per-epoch accuracy (default none)")
    g.add_argument("--seed", type=int, default=0, help="seed for sampling, data split and weights (default 0)")
    g = p.add_argument_group("objectives and constraints")
    g.add_argument("--objectives", default="accuracy,latency",
                   help="comma list from accuracy, latency, params, macs (default accuracy,latency)")
    g.add_argument("--proxy", default="train",
                   help="accuracy estimate: train (short training, default) or a zero-cost score "
                        "(synflow, snip, grad_norm, naswot)")
    g.add_argument("--epochs", type=int, default=3, help="training epochs per trial (default 3)")
    g.add_argument("--max-params", type=int, default=None, help="prune trials with more parameters")
    g.add_argument("--max-macs", type=int, default=None, help="prune trials with more multiply-adds")
    g.add_argument("--max-latency-ms", type=float, default=None, help="prune trials slower than this")
    g.add_argument("--no-prune", action="store_true", help="disable the front-based pruning (constraints still apply)")
    g.add_argument("--prune-margin", type=float, default=0.01,
                   help="accuracy margin of the per-epoch pruning rule (default 0.01)")
    g = p.add_argument_group("data and measurement")
    g.add_argument("--data", default="digits", help="digits (default, built in), cifar10 or npz")
    g.add_argument("--data-dir", default=None, help="cifar-10-batches-py folder, or the .npz file")
    g.add_argument("--data-limit", type=int, default=None, help="use at most this many examples (quick runs)")
    g.add_argument("--latency-batch", type=int, default=1, help="batch size of the latency measurement (default 1)")
    g.add_argument("--threads", type=int, default=1, help="torch threads for the latency measurement (default 1)")
    g.add_argument("--latency-seconds", type=float, default=1.0,
                   help="time budget of one latency measurement, both memory formats (default 1.0)")
    g = p.add_argument_group("run folder")
    g.add_argument("--name", default=None, help="run folder name (default <space>-<timestamp>)")
    g.add_argument("--out", default="runs", help="where run folders go (default runs/)")
    g.add_argument("--storage", default=None,
                   help="Optuna storage: default a journal file in the run folder; or any URL, "
                        "e.g. sqlite:///x.db, postgresql://user@host/db to share one study")
    g.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                   help="continue a run folder (RUN, or --name, or the newest run of --space); "
                        "--trials/--timeout/--workers may change, other settings come from its config.json")
    return p


def _objectives(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise CliError(f"unknown objective {unknown[0]!r}; known objectives: {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise CliError(f"--objectives lists an objective twice: {text!r}")
    if "accuracy" not in names or len(names) < 2:
        raise CliError(f"--objectives must include accuracy and at least one cost "
                       f"(latency, params, macs), got {text!r}")
    return names


def _positive(name: str, value: Any) -> None:
    if value is not None and not value > 0:
        raise CliError(f"{name} must be positive, got {value}")


def _validate(args: argparse.Namespace) -> None:
    from .backends.optuna_backend import SAMPLERS
    from evaluators.zero_cost import SCORES

    if args.backend not in BACKENDS:
        raise CliError(f"unknown backend {args.backend!r}; known backends: {', '.join(BACKENDS)}")
    if args.sampler not in SAMPLERS:
        raise CliError(f"unknown sampler {args.sampler!r}; known samplers: {', '.join(SAMPLERS)}")
    if args.proxy != "train" and args.proxy not in SCORES:
        raise CliError(f"unknown proxy {args.proxy!r}; use train or a zero-cost score: {', '.join(SCORES)}")
    for name in ("trials", "timeout", "workers", "epochs", "max_params", "max_macs", "max_latency_ms",
                 "latency_batch", "threads", "latency_seconds", "data_limit", "population"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.prune_margin < 0:
        raise CliError(f"--prune-margin must be >= 0, got {args.prune_margin}")


def _space(name: str, backbone: str, data: Any) -> Any:
    try:
        import spaces
        get_space = spaces.get_space
        known = spaces.SPACES
    except (ImportError, AttributeError):
        raise CliError("spaces.get_space is not available in this checkout") from None
    if name not in known:
        raise CliError(f"unknown space {name!r}; known spaces: {', '.join(known)}")
    from spaces.backbones import BACKBONES

    if backbone not in BACKBONES:
        raise CliError(f"unknown backbone {backbone!r}; known backbones: {', '.join(BACKBONES)}")
    try:
        return get_space(name, backbone=backbone, input_shape=tuple(data.input_shape), num_classes=data.num_classes)
    except (KeyError, ValueError) as err:
        raise CliError(str(err)) from None


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(space=args.space, backbone=args.backbone, data=args.data, data_dir=args.data_dir,
                    data_limit=args.data_limit, proxy=args.proxy, epochs=args.epochs,
                    objectives=_objectives(args.objectives), max_params=args.max_params, max_macs=args.max_macs,
                    max_latency_ms=args.max_latency_ms, latency_batch=args.latency_batch, threads=args.threads,
                    latency_seconds=args.latency_seconds, seed=args.seed, prune=not args.no_prune,
                    prune_margin=args.prune_margin)


def _resume_dir(args: argparse.Namespace) -> Path:
    if args.resume:
        return Path(args.resume)
    if args.name:
        return Path(args.out) / args.name
    runs = sorted(Path(args.out).glob(f"{args.space}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise CliError(f"--resume: no run of space {args.space!r} in {args.out}/; give the run folder")
    return runs[-1]


def _new_run(args: argparse.Namespace) -> tuple[Path, dict[str, Any], Any]:
    """Validate everything, then create the run folder, config.json and the study."""
    from .backends.optuna_backend import create_study, enqueue_baselines, make_sampler
    from .objective import get_data
    from .runfolder import JOURNAL, machine_info, new_run_dir, open_storage, write_config

    settings = _settings(args)
    data = get_data(settings)                       # DataError for a missing folder, before any file
    space = _space(args.space, args.backbone, data)
    if args.storage is not None and "://" in args.storage:
        open_storage(args.storage)                  # a bad URL fails before the run folder exists
    run_dir = new_run_dir(args.out, args.space, args.name)
    storage_spec = args.storage or JOURNAL
    storage = open_storage(storage_spec, run_dir)
    trials = args.trials or DEFAULTS["trials"]
    baselines = [] if args.no_baselines else list(space.baseline_params())
    population = args.population or max(8, min(50, trials // 4))
    config = {"command": " ".join(sys.argv), "space": args.space, "backbone": args.backbone,
              "backend": args.backend, "sampler": args.sampler, "population": population,
              "trials": trials, "total_trials": trials + len(baselines), "baselines": baselines,
              "timeout": args.timeout, "workers": args.workers or 1, "storage": storage_spec,
              "study_name": run_dir.name, "objectives": list(settings.objectives), "proxy": settings.proxy,
              "input_shape": list(data.input_shape), "num_classes": data.num_classes,
              "data_summary": data.describe(), "space_size": str(getattr(space, "size", "")),
              "settings": settings.to_dict(), "machine": machine_info(),
              "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_config(run_dir, config)
    try:
        study = create_study(storage, config["study_name"], settings, make_sampler(args.sampler, args.seed, population),
                             config)
    except Exception as err:
        import optuna

        if isinstance(err, optuna.exceptions.DuplicatedStudyError):
            raise CliError(f"storage {storage_spec} already holds a study named {config['study_name']!r}; "
                           "use --resume or another --name") from None
        raise
    if baselines:
        enqueue_baselines(study, space)
    return run_dir, config, storage


def _resume(args: argparse.Namespace, explicit: set[str]) -> tuple[Path, dict[str, Any], Any]:
    from .backends.optuna_backend import recover_stale
    from .runfolder import CONFIG, load_run, write_config
    from .safe_files import require_keys

    run_dir, study, config = load_run(_resume_dir(args), repair=True)   # a torn journal is repaired first
    require_keys(config, run_dir / CONFIG)
    if "trials" in explicit:
        config["trials"] = args.trials
        config["total_trials"] = args.trials + len(config.get("baselines", []))
    for key in ("timeout", "workers"):
        if key in explicit:
            config[key] = getattr(args, key)
    config.setdefault("resumed", []).append(time.strftime("%Y-%m-%d %H:%M:%S"))
    write_config(run_dir, config)
    stale = recover_stale(study)
    if stale:
        print(f"resume: trials {', '.join(map(str, stale))} were left running by a stopped process: "
              "marked failed and queued again")
    return run_dir, config, study._storage


def main(argv: Sequence[str] | None = None) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    explicit = {k for k in ("trials", "timeout", "workers") if getattr(args, k) is not None}
    _validate(args)
    if args.describe:
        from .objective import get_data

        settings = _settings(args)
        space = _space(args.space, args.backbone, get_data(settings))
        print(space.describe())
        print(f"size: {space.size} configurations")
        return 0

    if args.resume is not None:
        run_dir, config, storage = _resume(args, explicit)
    else:
        run_dir, config, storage = _new_run(args)
    backend = config.get("backend", "optuna")
    if backend not in BACKENDS:
        raise CliError(f"this run uses backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    timeout = config.get("timeout")
    deadline = time.time() + timeout if timeout else None
    print(f"run folder {run_dir}  (space {config['space']}/{config['backbone']}, sampler {config['sampler']}, "
          f"{config['total_trials']} trials incl. {len(config.get('baselines', []))} baselines, "
          f"{config.get('workers', 1)} worker(s))", flush=True)
    from .run_state import mark_started, mark_stopped

    mark_started(run_dir)                           # removed below; left behind, it says the run was killed
    if backend == "ray":
        from .backends.ray_backend import run_search as run_ray

        completed = run_ray(run_dir, config, storage, deadline, printer=lambda s: print(s, flush=True),
                            address=args.address, cpus_per_trial=args.cpus_per_trial, scheduler=args.scheduler)
    else:
        from .backends.optuna_backend import run_search

        completed = run_search(run_dir, config, storage, deadline, printer=lambda s: print(s, flush=True))
    from .runfolder import front_table, load_run, write_outputs

    _, study, config = load_run(run_dir)
    data = write_outputs(run_dir, study, config)
    mark_stopped(run_dir)
    print(front_table(data))
    print(f"\nrun folder: {run_dir}  (report: python -m search.report {run_dir}; "
          f"export: python -m search.export {run_dir} --pick knee --out best.json)")
    if not completed:
        print(f"interrupted: finished trials are kept; continue with python -m search.run --resume {run_dir}")
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    run_cli(main, prog="search.run")
