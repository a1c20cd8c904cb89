"""The Ray backend: Ray Tune's ``Tuner`` + ``OptunaSearch`` fill the run's Optuna study.

Same inputs, same study, same run folder as ``optuna_backend`` (see ``search.runfolder``), but
Ray Tune schedules the trials over a Ray cluster: a local instance by default (loopback, no
dashboard), or an existing cluster with ``--address auto|HOST:PORT``. Ray's own results
directory is ``RUN/ray/tune-<k>/`` (one per invocation; ``--resume`` starts the next).

Driver side (this process): ``StudySearch`` is Ray's ``OptunaSearch`` over the run's study
and the space's define-by-run ``space.sample(trial)``; the baselines are the study's enqueued
trials (``enqueue_baselines``), which ``study.ask()`` hands out first, so no
``points_to_evaluate`` is needed. On ``suggest`` it records the Arch, its hash, layer choices
and the driver's ``host:pid`` on the Optuna trial (so ``recover_stale`` can tell a dead
driver's trials), detects an Arch already evaluated (``repeat_of``: not trained again), and
hands the trainable the current front for ``search.pruning.FrontPruner``. On
``on_trial_complete`` it copies the trial's figures into the Optuna trial's user attributes
and tells COMPLETE (objective values), PRUNED (``prune_reason``; also a trial cut by ASHA) or
FAIL (``fail_reason``) -- the study is the single source of truth, ``search.report`` and
``search.export`` read it unchanged.

Worker side (``_trainable``): rebuilds the Arch with ``space.arch_from_params(config)``,
calls the engine-free ``search.objective.evaluate_arch`` with a hook that reports each epoch's
accuracy to Tune (``--scheduler asha`` stops bad trials on it), and reports one final result
holding every figure as JSON. Latency goes through ``evaluators.latency`` and holds its
machine-wide ``measurement_lock`` (one measurement per node at a time); each figure records
its node. A trial that raises is reported as failed with its reason and the experiment goes
on; a worker process that dies is retried by Tune (``FailureConfig(max_failures)``).

Test hook: ``GROUPNAS_RAY_DIE_TRIALS=2,5`` with ``GROUPNAS_RAY_DIE_DIR=DIR`` kills the worker
process (``os._exit``) the first time it runs each of those trial numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from ..objective import OBJECTIVES, Settings
from ..pruning import Member, _front
from .optuna_backend import FIGURES, _previous, _trial_line, budget_used, make_sampler

__all__ = ["run_search", "StudySearch", "start_ray", "SCHEDULERS", "RAY_DEFAULTS", "ray_options"]

SCHEDULERS = ("none", "asha")
#: cpus_per_trial None: a local instance shares this machine's cores among --workers (as the Optuna
#: backend does); on a cluster each trial takes 1 CPU
RAY_DEFAULTS: dict[str, Any] = {"address": None, "cpus_per_trial": None, "scheduler": "none", "max_failures": 2}
META = "_groupnas"          # config key of the driver -> trainable message (not a search parameter)
DIE_ENV, DIE_DIR_ENV = "GROUPNAS_RAY_DIE_TRIALS", "GROUPNAS_RAY_DIE_DIR"
FORWARD_ENV_PREFIX = "GROUPNAS_"


# ----------------------------------------------------------------------------- worker side

_SPACES: dict[tuple, Any] = {}


def _space(run: dict[str, Any]) -> Any:
    """The run's space, built once per worker process (a reused actor keeps it)."""
    key = (run["space"], run["backbone"], tuple(run["input_shape"]), run["num_classes"])
    if key not in _SPACES:
        import spaces

        _SPACES[key] = spaces.get_space(run["space"], backbone=run["backbone"], input_shape=key[2],
                                        num_classes=run["num_classes"])
    return _SPACES[key]


def _die_hook(number: int) -> None:
    """Test hook: kill this worker process the first time it runs a listed trial."""
    listed = [s.strip() for s in os.environ.get(DIE_ENV, "").split(",") if s.strip()]
    folder = os.environ.get(DIE_DIR_ENV)
    if str(number) in listed and folder:
        marker = Path(folder) / f"died-{number}"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)


def _result(figures: dict[str, Any], objectives: list[str], **extra: Any) -> dict[str, Any]:
    """A Tune result: every objective's key (NaN while unknown) plus the figures as JSON."""
    out: dict[str, Any] = {OBJECTIVES[o][1]: float(figures.get(OBJECTIVES[o][1], math.nan)) for o in objectives}
    out["figures"] = json.dumps({k: figures[k] for k in FIGURES if k in figures}, default=float)
    out.update(extra)
    return out


def _trainable(config: dict[str, Any], run: dict[str, Any]) -> None:
    """One Tune trial: evaluate the Arch of ``config`` and report per epoch, then the figures."""
    from ray import tune

    from ..objective import evaluate_arch, test_hooks
    from ..pruning import FrontPruner, Pruned

    meta = config[META]
    number = int(meta["number"])
    objectives = list(run["settings"]["objectives"])
    start = time.perf_counter()
    if meta.get("error"):  # sampling failed in the driver: record it as this trial's failure
        tune.report(_result({}, objectives, final=True, status="failed", reason=meta["error"]))
        return
    if meta.get("repeat_of") is not None:  # figures are copied from the earlier trial by the driver
        tune.report(_result({}, objectives, final=True, status="repeat", reason=""))
        return
    _die_hook(number)
    import torch

    settings = Settings.from_dict(run["settings"])
    if settings.train_threads is None:
        torch.set_num_threads(max(1, int(run["cpus_per_trial"])))
    params = {k: v for k, v in config.items() if k != META}
    pruner = FrontPruner(settings.objectives, [Member(int(n), f) for n, f in meta.get("members", [])],
                         settings.prune and not meta.get("baseline"), settings.prune_margin)

    def hook(stage: str, figures: dict[str, Any]) -> None:
        pruner.report(stage, figures)
        if stage == "epoch":  # the last epoch's accuracy comes with the final result
            tune.report(_result(dict(figures, accuracy=figures["acc_epochs"][-1]), objectives,
                                final=False, epoch=len(figures["acc_epochs"])))

    figures: dict[str, Any] = {}
    try:
        test_hooks(number)
        arch = _space(run).arch_from_params(params)
        figures = evaluate_arch(arch, settings, report=hook)
        status, reason = "complete", ""
    except Pruned as p:
        figures, status, reason = p.figures, "pruned", p.reason
        if figures.get("acc_epochs"):
            figures.setdefault("accuracy", figures["acc_epochs"][-1])
    except Exception as err:  # a trial that raises is recorded as failed; the search goes on
        status, reason = "failed", f"{type(err).__name__}: {err}"[:2000]
    figures = {**figures, "node": figures.get("node") or socket.gethostname()}
    tune.report(_result(figures, objectives, final=True, status=status, reason=reason,
                        seconds=time.perf_counter() - start, worker=f"{socket.gethostname()}:{os.getpid()}"))


# ----------------------------------------------------------------------------- driver side

class _DefineByRun:
    """Picklable define-by-run space for ``OptunaSearch``: ``space.sample(trial)``, no constants."""

    def __init__(self, space: Any) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        self.space.sample(trial)
        return None


class StudySearch(OptunaSearch):
    """``OptunaSearch`` on the run's study that records what ``search.runfolder`` reads."""

    def __init__(self, space: Any, config: dict[str, Any], storage: Any, seed_offset: int = 0) -> None:
        objectives = list(config["settings"]["objectives"])
        sampler = make_sampler(config["sampler"], int(config["settings"]["seed"]) + seed_offset,
                               config.get("population"))
        super().__init__(space=_DefineByRun(space), metric=[OBJECTIVES[o][1] for o in objectives],
                         mode=["max" if OBJECTIVES[o][0] == "maximize" else "min" for o in objectives],
                         sampler=sampler, storage=storage, study_name=config["study_name"])
        self.space = space
        self.objectives = objectives
        self.prune = bool(config["settings"].get("prune", True))
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.numbers: dict[str, int] = {}          # Tune trial id -> Optuna trial number
        self._errored: dict[str, Any] = {}         # Tune trial id -> Optuna trial, told on on_trial_error

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        error = None
        try:
            config = super().suggest(trial_id)
        except Exception as err:  # the space raised while sampling: fail this trial, keep going
            config, error = {}, f"sampling failed: {type(err).__name__}: {err}"[:2000]
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        self.numbers[trial_id] = ot_trial.number
        ot_trial.set_user_attr("worker", self.worker)
        meta: dict[str, Any] = {"number": ot_trial.number}
        if error is None:
            try:
                arch = self.space.arch_from_params(dict(ot_trial.params))
                text = arch.to_json()
                sha = hashlib.sha1(text.encode()).hexdigest()
                ot_trial.set_user_attr("arch", text)
                ot_trial.set_user_attr("arch_sha1", sha)
                ot_trial.set_user_attr("choices", dict(self.space.layer_choices(arch)))
                done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                prev = _previous(done, sha, ot_trial.number)
                if prev is not None:
                    meta["repeat_of"] = prev.number
                elif ot_trial.user_attrs.get("baseline"):
                    meta["baseline"] = True  # evaluated in full: the front is judged against it
                elif self.prune:
                    members = [Member(t.number, t.user_attrs) for t in done
                               if t.state == TrialState.COMPLETE and t.user_attrs.get("repeat_of") is None]
                    meta["members"] = [[m.number, {k: m.figures[k] for k in FIGURES if k in m.figures}]
                                       for m in _front(members, self.objectives)]
            except Exception as err:
                error = f"{type(err).__name__}: {err}"[:2000]
        if error is not None:
            meta["error"] = error
        return {**config, META: meta}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        return None  # multi-objective: Optuna takes no intermediate values

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        self._completed_trials.add(trial_id)
        if error:  # the worker died (after Tune's retries): told FAIL once the reason is known
            self._errored[trial_id] = ot_trial
            return
        self._tell(ot_trial, result or {})

    def _tell(self, ot_trial: optuna.Trial, result: dict[str, Any]) -> None:
        figures = json.loads(result.get("figures") or "{}")
        for key in FIGURES:
            if figures.get(key) is not None:
                ot_trial.set_user_attr(key, figures[key])
        for key in ("seconds", "worker"):
            if result.get(key) is not None:
                ot_trial.set_user_attr(key, result[key])
        status = result.get("status") if result.get("final") else "stopped"
        if status == "complete":
            values = [float(figures[OBJECTIVES[o][1]]) for o in self.objectives]
            self.study.tell(ot_trial, values)
        elif status == "repeat":
            self._tell_repeat(ot_trial)
        elif status in ("pruned", "stopped"):
            reason = result.get("reason") or ""
            if status == "stopped":
                reason = (f"stopped by the ASHA scheduler at epoch {result.get('epoch')}: accuracy "
                          f"{result.get('accuracy', math.nan):.4f} below its rung's cutoff")
            ot_trial.set_user_attr("prune_reason", reason)
            self.study.tell(ot_trial, state=TrialState.PRUNED)
        else:
            self.fail(ot_trial, result.get("reason") or "the trial reported no final result")

    def _tell_repeat(self, ot_trial: optuna.Trial) -> None:
        frozen = self.study._storage.get_trial(ot_trial._trial_id)
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        prev = _previous(done, frozen.user_attrs.get("arch_sha1", ""), ot_trial.number)
        if prev is None:
            self.fail(ot_trial, "repeat of a trial that is no longer in the study")
            return
        for key in FIGURES:
            if prev.user_attrs.get(key) is not None:
                ot_trial.set_user_attr(key, prev.user_attrs[key])
        ot_trial.set_user_attr("repeat_of", prev.number)
        if prev.state == TrialState.COMPLETE:
            self.study.tell(ot_trial, list(prev.values))
        else:
            ot_trial.set_user_attr("prune_reason", f"repeat of pruned trial {prev.number}: "
                                   + str(prev.user_attrs.get("prune_reason", "")))
            self.study.tell(ot_trial, state=TrialState.PRUNED)

    def fail(self, ot_trial: optuna.Trial, reason: str, interrupted: bool = False) -> None:
        ot_trial.set_user_attr("fail_reason", reason[:2000])
        if interrupted:
            ot_trial.set_user_attr("interrupted", True)
        self.study.tell(ot_trial, state=TrialState.FAIL)

    def fail_errored(self, trial_id: str, reason: str) -> None:
        """Tell FAIL for a trial whose worker died (called by ``_Events.on_trial_error``)."""
        ot_trial = self._errored.pop(trial_id, None)
        if ot_trial is not None:
            self.fail(ot_trial, reason)

    def close(self, interrupted: bool) -> list[int]:
        """After ``fit``: fail what is left; an interrupted trial is queued again for ``--resume``."""
        for trial_id in list(self._errored):
            self.fail_errored(trial_id, "Ray trial errored (its worker died); see the Ray results folder")
        left = []
        for trial_id, ot_trial in self._ot_trials.items():
            if trial_id in self._completed_trials:
                continue
            frozen = self.study._storage.get_trial(ot_trial._trial_id)
            if frozen.state != TrialState.RUNNING:
                continue
            self.fail(ot_trial, "interrupted before it finished; retried on --resume", interrupted=True)
            attrs: dict[str, Any] = {"retry_of": ot_trial.number}
            if frozen.user_attrs.get("baseline"):
                attrs["baseline"] = frozen.user_attrs["baseline"]
            if frozen.params:
                self.study.enqueue_trial(frozen.params, user_attrs=attrs, skip_if_exists=False)
            left.append(ot_trial.number)
        return left

    def save(self, checkpoint_path: str) -> None:
        # The Optuna study is the state; Tune's experiment checkpoint keeps only the id map.
        Path(checkpoint_path).write_text(json.dumps(self.numbers))

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("resume a Ray run with search.run --resume (the Optuna study holds the state)")


def _events(searcher: StudySearch, printer: Callable[[str], None], total: int, workers: int,
            deadline: float | None) -> Any:
    from ray import tune

    from ..progress import summarise

    class _Events(tune.Callback):
        """Progress lines, and the reason of a trial whose worker died."""

        def _print(self, trial: Any) -> None:
            number = searcher.numbers.get(trial.trial_id)
            if number is None:
                return
            study = searcher.study
            trials = study.get_trials(deepcopy=False)
            printer(_trial_line(trials[number]))
            counted = [t for t in trials if not t.user_attrs.get("interrupted")]
            printer(summarise(trials, searcher.objectives, total, workers, deadline, counted=counted).line())

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


# ----------------------------------------------------------------------------- Ray itself

def _forwarded_env() -> dict[str, str]:
    """This project's ``GROUPNAS_*`` settings (latency lock, test hooks), sent to every worker."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARD_ENV_PREFIX)}


def _token_available() -> bool:
    """A Ray auth token is at hand: ``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def _use_token_auth() -> None:
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # Ray caches its config at import: refresh it the way Ray itself does
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
    except ImportError:
        pass


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (``ConnectionError``) when nothing listens at ``HOST:PORT`` (Ray itself retries for minutes)."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("expected auto or HOST:PORT")
    with socket.create_connection((host, int(port)), timeout=timeout):
        pass


def start_ray(address: str | None, num_cpus: int | None = None, run_dir: Path | None = None) -> float:
    """Join the cluster at ``address`` (``auto`` or ``HOST:PORT``), or start a local instance on
    loopback without a dashboard; returns the seconds it took."""
    import ray

    start = time.perf_counter()
    env = _forwarded_env()
    runtime_env = {"env_vars": env} if env else None
    common = dict(logging_level=logging.WARNING, log_to_driver=False, runtime_env=runtime_env,
                  configure_logging=True)
    if address:
        again = f" (then continue with --resume {run_dir})" if run_dir is not None else ""
        if "RAY_AUTH_MODE" not in os.environ and _token_available():
            _use_token_auth()  # `ray start` enables token auth by default: join with the token
        try:
            _reachable(address)
            ray.init(address=address, **common)
        except (ConnectionError, ValueError, RuntimeError, OSError) as err:
            from ..cli_errors import CliError

            raise CliError(f"cannot join the Ray cluster at --address {address}: {err}. Start one with "
                           f"`ray start --head`, or leave --address out for a local instance{again}") from None
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **common)
    return time.perf_counter() - start


def ray_options(config: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The run's Ray options: defaults < what config.json recorded < what this command gives."""
    opts = {**RAY_DEFAULTS, **config.get("ray", {}), **{k: v for k, v in given.items() if v is not None}}
    if opts["cpus_per_trial"] is None:
        workers = max(1, int(config.get("workers") or 1))
        opts["cpus_per_trial"] = 1.0 if opts["address"] else float(max(1, (os.cpu_count() or 1) // workers))
    if opts["scheduler"] not in SCHEDULERS:
        from ..cli_errors import CliError

        raise CliError(f"unknown scheduler {opts['scheduler']!r}; known schedulers: {', '.join(SCHEDULERS)}")
    if not float(opts["cpus_per_trial"]) > 0:
        from ..cli_errors import CliError

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


def run_search(run_dir: Path, config: dict[str, Any], storage: Any, deadline: float | None,
               printer: Callable[[str], None] = print, **given: Any) -> bool:
    """Run the rest of the study's budget as a Ray Tune experiment; False if interrupted.

    ``given``: ``address``, ``cpus_per_trial``, ``scheduler``, ``max_failures`` (None: as
    recorded in config.json, else the defaults); they are written back to config.json.
    """
    import ray
    from ray import tune

    from ..runfolder import write_config

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune prints nothing; we print progress
    opts = ray_options(config, given)
    config["ray"] = opts
    write_config(run_dir, config)
    workers = max(1, int(config.get("workers") or 1))
    total = int(config["total_trials"])
    space = _space(config)
    run = {k: config[k] for k in ("space", "backbone", "input_shape", "num_classes")}
    settings = dict(config["settings"])
    if settings.get("data_dir"):  # Tune may change a trial's working directory
        settings["data_dir"] = str(Path(settings["data_dir"]).resolve())
    run.update(settings=settings, cpus_per_trial=float(opts["cpus_per_trial"]))

    started_here = not ray.is_initialized()
    if started_here:
        seconds = start_ray(opts["address"], run_dir=run_dir)
        where = opts["address"] or "a local instance (127.0.0.1)"
        printer(f"ray: joined {where} in {seconds:.1f} s; {ray.cluster_resources().get('CPU', 0):g} CPUs")
    searcher = StudySearch(space, config, storage, seed_offset=len(config.get("resumed", [])))
    left = total - budget_used(searcher.study.get_trials(deepcopy=False))
    if left <= 0:
        printer("the study already holds its budget of trials")
        if started_here:
            ray.shutdown()
        return True
    scheduler = None
    if opts["scheduler"] == "asha":
        from ray.tune.schedulers import ASHAScheduler

        epochs = int(settings.get("epochs", 1))
        scheduler = ASHAScheduler(metric="accuracy", mode="max", time_attr="training_iteration",
                                  max_t=max(1, epochs), grace_period=1, reduction_factor=2)
    trainable = tune.with_resources(tune.with_parameters(_trainable, run=run), {"cpu": float(opts["cpus_per_trial"])})
    time_budget = None if deadline is None else max(1.0, deadline - time.time())
    ray_dir = (run_dir / "ray").resolve()
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=left,
                                    max_concurrent_trials=workers, reuse_actors=True, time_budget_s=time_budget,
                                    trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(storage_path=str(ray_dir), name=_tune_name(ray_dir), verbose=0,
                                  callbacks=[_events(searcher, printer, total, workers, deadline)],
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
    return not interrupted and (used >= total or timed_out)
