"""The Ray backend: Ray Tune's ``Tuner`` + ``StudySearch`` (Ray's ``OptunaSearch``) fill the run's study.

Same inputs, same study, same run folder as the Optuna backend (see ``search.runfolder``), but
Ray Tune schedules the trials over a Ray cluster: a local instance by default (loopback, no
dashboard; ``search.ray_adapter.start_ray``), or an existing cluster with ``--address
auto|HOST:PORT``. Ray's own results directory is ``RUN/ray/tune-<k>/`` (one per invocation;
``--resume`` starts the next). The driver side is ``ray_search.StudySearch``, the worker side
``ray_trainable.trainable``. Latency goes through ``evaluators.latency`` and holds its
machine-wide lock (one measurement per node at a time); each figure records its node. A
worker process that dies is retried by Tune (``FailureConfig(max_failures)``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from ..cli_errors import CliError
from ..config import RunConfig
from ..hooks import NO_HOOKS, Hooks
from ..ray_adapter import local_network, quiet_tune, start_ray
from ..storage import write_config
from ..study import budget_used, cores_per_worker, space_of
from ..trials import progress_line, trial_line
from .ray_search import StudySearch
from .ray_trainable import META, trainable

__all__ = ["run_search", "StudySearch", "start_ray", "SCHEDULERS", "RAY_DEFAULTS", "ray_options", "META"]

SCHEDULERS = ("none", "asha")
#: cpus_per_trial None: a local instance shares this machine's cores among --workers (as the Optuna
#: backend does); on a cluster each trial takes 1 CPU
RAY_DEFAULTS: dict[str, Any] = {"address": None, "cpus_per_trial": None, "scheduler": "none", "max_failures": 2}


def _events(searcher: StudySearch, printer: Callable[[str], None], config: RunConfig, deadline: float | None) -> Any:
    from ray import tune

    class _Events(tune.Callback):
        """Progress lines, and the reason of a trial whose worker died."""

        def _print(self, trial: Any) -> None:
            number = searcher.numbers.get(trial.trial_id)
            if number is None:
                return
            printer(trial_line(searcher.study.get_trials(deepcopy=False)[number]))
            printer(progress_line(searcher.study, config.objectives, config.total_trials, config.workers, deadline,
                                  config.proxy))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._print(trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            reason = "Ray trial errored after its retries (worker died)"
            try:
                err = trial.get_error()
                if err is not None:
                    reason += ": " + str(err).strip().splitlines()[-1]
            except Exception:
                pass
            searcher.fail_errored(trial.trial_id, reason)
            self._print(trial)

    return _Events()


def ray_options(config: RunConfig, given: dict[str, Any]) -> dict[str, Any]:
    """The run's Ray options: defaults < what config.json recorded < what this command gives."""
    opts = {**RAY_DEFAULTS, **(config.ray or {}), **{k: v for k, v in given.items() if v is not None}}
    if opts["cpus_per_trial"] is None:
        opts["cpus_per_trial"] = 1.0 if opts["address"] else float(cores_per_worker(config.workers))
    if opts["scheduler"] not in SCHEDULERS:
        raise CliError(f"unknown scheduler {opts['scheduler']!r}; known schedulers: {', '.join(SCHEDULERS)}")
    if not float(opts["cpus_per_trial"]) > 0:
        raise CliError(f"--cpus-per-trial must be positive, got {opts['cpus_per_trial']}")
    return opts


def _trial_dirname(trial: Any) -> str:
    """``trial-<Optuna number>-<Tune id>`` instead of Tune's name built from the whole config."""
    return f"trial-{trial.config.get(META, {}).get('number', 'x')}-{trial.trial_id}"


def _tune_name(ray_dir: Path) -> str:
    k = 1
    while (ray_dir / f"tune-{k}").exists():
        k += 1
    return f"tune-{k}"


def run_search(run_dir: Path, config: RunConfig, storage: Any, deadline: float | None,
               printer: Callable[[str], None] = print, hooks: Hooks = NO_HOOKS, **given: Any) -> bool:
    """Run the rest of the study's budget as a Ray Tune experiment; False if interrupted.

    ``given``: ``address``, ``cpus_per_trial``, ``scheduler``, ``max_failures`` (None: as
    recorded in config.json, else the defaults); they are written back to config.json.
    """
    import ray
    from ray import tune

    quiet_tune()
    opts = ray_options(config, given)
    config = config.replace(ray=opts)
    write_config(run_dir, config)
    space = space_of(config)
    settings = config.settings
    if settings.data_dir:  # Tune may change a trial's working directory
        settings = dataclasses.replace(settings, data_dir=str(Path(settings.data_dir).resolve()))
    run = config.replace(settings=settings)

    started_here = not ray.is_initialized()
    if started_here:
        where = opts["address"]
        if not where:
            network = local_network()
            config = config.replace(ray={**opts, "network": network})
            write_config(run_dir, config)
            where = f"a local instance on {network}"
        seconds = start_ray(opts["address"], run_dir=run_dir)
        printer(f"ray: joined {where} in {seconds:.1f} s; {ray.cluster_resources().get('CPU', 0):g} CPUs")
    searcher = StudySearch(space, config, storage, seed_offset=len(config.resumed))
    left = config.total_trials - budget_used(searcher.study.get_trials(deepcopy=False))
    if left <= 0:
        printer("the study already holds its budget of trials")
        if started_here:
            ray.shutdown()
        return True
    scheduler = None
    if opts["scheduler"] == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(metric="accuracy", mode="max", time_attr="training_iteration",
                                  max_t=max(1, settings.epochs), grace_period=1, reduction_factor=2)
    cpus = float(opts["cpus_per_trial"])
    fn = tune.with_resources(tune.with_parameters(trainable, run=run, cpus_per_trial=cpus, hooks=hooks),
                             {"cpu": cpus})
    time_budget = None if deadline is None else max(1.0, deadline - time.time())
    ray_dir = (run_dir / "ray").resolve()
    tuner = tune.Tuner(
        fn,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=left,
                                    max_concurrent_trials=config.workers, reuse_actors=True,
                                    time_budget_s=time_budget, trial_name_creator=_trial_dirname,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(storage_path=str(ray_dir), name=_tune_name(ray_dir), verbose=0,
                                  callbacks=[_events(searcher, printer, config, deadline)],
                                  failure_config=tune.FailureConfig(max_failures=int(opts["max_failures"]))))
    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        left_running = searcher.close(interrupted=True)
        if started_here:
            ray.shutdown()
    if left_running:
        printer(f"trials {', '.join(map(str, left_running))} did not finish: marked failed and queued again")
    used = budget_used(searcher.study.get_trials(deepcopy=False))
    timed_out = deadline is not None and time.time() >= deadline - 1.0
    return not interrupted and (used >= config.total_trials or timed_out)
