"""``python -m search.run``: multi-objective architecture search over grouping configurations.

Searches a space (``--space``) with Optuna (NSGA-II by default) for architectures that are
accurate (short training on the data, or a zero-cost score) and fast (measured latency), judged
against the space's hand-designed baselines, and leaves a run folder ``runs/<space>-<time>/``
that ``search.report`` and ``search.export`` read (see ``search.runfolder``).

Data flow: options (``search.options``) -> ``RunConfig`` (``search.config``, written once to
config.json) -> study (``search.study``) -> a backend drives the trials
(``search.backends.optuna_backend`` or ``.ray_backend``), each trial evaluated by
``search.objective.evaluate_arch`` and recorded by ``search.trials`` -> derived files
(``search.runfolder.write_outputs``). Tests inject ``search.hooks.Hooks`` through ``main``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .backends import BACKENDS
from .cli_errors import EXIT_INTERRUPTED, CliError, run_cli
from .config import RunConfig
from .hooks import NO_HOOKS, Hooks
from .options import DEFAULT_TRIALS, build_parser, search_timeout, settings_from_args, validate

__all__ = ["main", "build_parser", "BACKENDS", "DEFAULT_TRIALS"]

RESUMABLE = ("trials", "timeout", "workers")


def _space(name: str, backbone: str, data: Any) -> Any:
    import spaces
    from spaces.backbones import BACKBONES

    if name not in spaces.SPACES:
        raise CliError(f"unknown space {name!r}; known spaces: {', '.join(spaces.SPACES)}")
    if backbone not in BACKBONES:
        raise CliError(f"unknown backbone {backbone!r}; known backbones: {', '.join(BACKBONES)}")
    try:
        return spaces.get_space(name, backbone=backbone, input_shape=tuple(data.input_shape),
                                num_classes=data.num_classes)
    except (KeyError, ValueError) as err:
        raise CliError(str(err)) from None


def _calibration() -> dict[str, Any]:
    from evaluators.latency import calibration_info

    return calibration_info()


def _retime(run_dir: Path, config: RunConfig, printer: Any) -> None:
    """Re-time the front and the baselines in one round (``search.retime``); record the calibration."""
    from .final_round import retime_run
    from .runfolder import load_run
    from .storage import write_config

    _, study, doc = load_run(run_dir)
    s = config.settings
    shape = "x".join(str(v) for v in (s.latency_shape or config.input_shape))
    printer(f"re-timing the front and the baselines together at {shape} on {s.runtime} ...")
    if retime_run(run_dir, study, doc) is not None:  # config.json as the backend left it (Ray adds its part)
        write_config(run_dir, RunConfig.from_dict(doc).replace(calibration=_calibration()))


def _resume_dir(args: Any) -> Path:
    if args.resume:
        return Path(args.resume)
    if args.name:
        return Path(args.out) / args.name
    runs = sorted(Path(args.out).glob(f"{args.space}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise CliError(f"--resume: no run of space {args.space!r} in {args.out}/; give the run folder")
    return runs[-1]


def _local_ray_storage(args: Any) -> str | None:
    """The storage of a ``--backend ray`` run that starts its own local instance, else None."""
    from .storage import CONFIG, JOURNAL

    if args.address:
        return None
    if args.resume is None:
        return (args.storage or JOURNAL) if args.backend == "ray" else None
    import json

    try:
        doc = json.loads((_resume_dir(args) / CONFIG).read_text())
        if doc.get("backend") != "ray" or (doc.get("ray") or {}).get("address"):
            return None                             # not Ray, or a cluster run: it resumes on that cluster
        return str(doc.get("storage", JOURNAL))
    except (OSError, ValueError, AttributeError, CliError):
        return None                                 # the resume path itself reports what is wrong


def _isolate_local_ray(args: Any) -> None:
    """A local Ray instance runs in a private network namespace (``search.netns``): re-execute."""
    from . import netns

    storage = _local_ray_storage(args)
    if storage is None or netns.state() is not None:
        return
    if "://" in storage and not storage.startswith("sqlite:"):
        netns.set_state("not isolated (the storage URL needs the host's network)")
        return
    netns.reexec_isolated("search.run", sys.argv[1:])


def trial_setup(args: Any) -> tuple[Any, Any, Any]:
    """(data, trial settings, space) of parsed ``search.run`` options, as a run uses them."""
    from .objective import get_data

    data = get_data(settings_from_args(args))       # DataError for a missing folder, before any file
    settings = settings_from_args(args, data.input_shape[0])  # the latency shape takes the data's channels
    return data, settings, _space(args.space, args.backbone, data)


def _new_run(args: Any) -> tuple[Path, RunConfig, Any]:
    """Validate everything, then create the run folder, config.json and the study."""
    import optuna

    from .sampling import population_for
    from .storage import JOURNAL, machine_info, new_run_dir, open_storage, write_config
    from .study import create_study, enqueue_baselines

    data, settings, space = trial_setup(args)
    if args.storage is not None and "://" in args.storage:
        open_storage(args.storage)                  # a bad URL fails before the run folder exists
    run_dir = new_run_dir(args.out, args.space, args.name)
    storage_spec = args.storage or JOURNAL
    storage = open_storage(storage_spec, run_dir)
    trials = args.trials or DEFAULT_TRIALS
    baselines = () if args.no_baselines else tuple(space.baseline_params())
    config = RunConfig(space=args.space, backbone=args.backbone, settings=settings,
                       input_shape=tuple(data.input_shape), num_classes=data.num_classes, study_name=run_dir.name,
                       storage=storage_spec, backend=args.backend, sampler=args.sampler,
                       population=args.population or population_for(trials),
                       trials=trials, baselines=baselines, timeout=search_timeout(args), workers=args.workers or 1,
                       command=" ".join(sys.argv), data_summary=data.describe(),
                       space_size=str(getattr(space, "size", "")), machine=machine_info(),
                       created=time.strftime("%Y-%m-%d %H:%M:%S"), calibration=_calibration())
    write_config(run_dir, config)
    try:
        study = create_study(storage, config, space)
    except optuna.exceptions.DuplicatedStudyError:
        raise CliError(f"storage {storage_spec} already holds a study named {config.study_name!r}; "
                       "use --resume or another --name") from None
    if baselines:
        enqueue_baselines(study, space)
    return run_dir, config, storage


def _resume(args: Any, explicit: set[str]) -> tuple[Path, RunConfig, Any]:
    from . import optuna_adapter as ota
    from .storage import CONFIG, load_run, write_config
    from .study import recover_stale

    run_dir, study, doc = load_run(_resume_dir(args), repair=True)   # a torn journal is repaired first
    try:
        config = RunConfig.from_dict(doc)
    except (ValueError, TypeError) as err:
        raise CliError(f"{run_dir / CONFIG} is broken ({err}): it is not the config.json of a run made by "
                       "search.run, so the run cannot be resumed; restore it from a copy") from None
    changes = {k: getattr(args, k) for k in RESUMABLE if k in explicit}
    if "trials" in explicit and "timeout" not in explicit:
        changes["timeout"] = None               # a trial budget the user sets drops the default budget's cap
    config = config.replace(resumed=(*config.resumed, time.strftime("%Y-%m-%d %H:%M:%S")), **changes)
    write_config(run_dir, config)
    stale = recover_stale(study)
    if stale:
        print(f"resume: trials {', '.join(map(str, stale))} were left running by a stopped process: "
              "marked failed and queued again")
    return run_dir, config, ota.storage_of(study)


def main(argv: Sequence[str] | None = None, *, hooks: Hooks = NO_HOOKS) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args = build_parser().parse_args(argv)
    explicit = {k for k in RESUMABLE if getattr(args, k) is not None}
    validate(args)
    if args.describe:
        from .objective import get_data

        space = _space(args.space, args.backbone, get_data(settings_from_args(args)))
        print(space.describe())
        print(f"size: {space.size} configurations")
        return 0
    if argv is None:                                # the command line, not a test calling main()
        _isolate_local_ray(args)

    run_dir, config, storage = _resume(args, explicit) if args.resume is not None else _new_run(args)
    if config.backend not in BACKENDS:
        raise CliError(f"this run uses backend {config.backend!r}; known backends: {', '.join(BACKENDS)}")
    deadline = time.time() + config.timeout if config.timeout else None
    print(f"run folder {run_dir}  (space {config.space}/{config.backbone}, sampler {config.sampler}, "
          f"{config.total_trials} trials incl. {len(config.baselines)} baselines"
          f"{f' or {config.timeout:g} s (--timeout)' if config.timeout else ''}, "
          f"{config.workers} worker(s); latency {config.settings.latency} at "
          f"{'x'.join(map(str, config.settings.latency_shape or config.input_shape))} on {config.settings.runtime})",
          flush=True)

    def printer(s: str) -> None:
        print(s, flush=True)

    from .run_state import mark_started, mark_stopped

    mark_started(run_dir)           # removed once the search stops by itself; left behind, it says "killed"
    if config.backend == "ray":
        from .backends.ray_backend import run_search as run_ray

        completed = run_ray(run_dir, config, storage, deadline, printer=printer, hooks=hooks,
                            address=args.address, cpus_per_trial=args.cpus_per_trial, scheduler=args.scheduler)
    else:
        from .backends.optuna_backend import run_search

        completed = run_search(run_dir, config, storage, deadline, printer=printer, hooks=hooks)
    from .runfolder import front_table, write_outputs
    from .storage import load_run

    timed_out = completed and deadline is not None and time.time() >= deadline
    if completed:
        _retime(run_dir, config, printer)
    _, study, doc = load_run(run_dir)           # every derived file is rewritten next
    if timed_out:
        done = sum(t.state.is_finished() for t in study.trials)
        printer(f"--timeout {config.timeout:g} s reached: {done} of {config.total_trials} trials run, "
                "no more started (--resume goes on for as long again; --resume --trials N runs up to N searched trials "
                "with no time cap)")
    if completed:                               # the claims' nets re-trained longer (search.confirm)
        from .confirm_round import confirm_run

        try:
            confirm_run(run_dir, study, doc, printer=printer, hooks=hooks)
        except RuntimeError as err:             # the search is kept; the claims left unconfirmed are not stated
            printer(f"{err}; the claims it did not re-train are not stated (--resume re-trains them)")
    data = write_outputs(run_dir, study, doc)
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
