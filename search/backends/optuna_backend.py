"""The Optuna backend: ask/tell loop over one study, in one or several local processes.

Every worker runs the same loop on the shared storage: take a machine-local lock on the
run folder, count the trials that count towards the budget (finished ones not interrupted,
plus running ones), ``study.ask()`` if there is room, release the lock, evaluate with
``search.objective.evaluate_arch`` (the shared, engine-free trial), ``study.tell``. The lock
makes the budget exact across local workers (no trial created beyond it); the storage
(Optuna's journal file by default) makes creation and updates safe across processes, so no
trial is lost or duplicated. Latency measurements never overlap: ``evaluate_arch`` measures
through ``evaluators.latency``, which holds the machine-wide measurement lock.

Ctrl-C: SIGINT interrupts an evaluation (the trial is told FAIL with
``fail_reason="interrupted"`` and ``interrupted=True``, so it does not count towards the
budget) but never a storage write; the loop then stops. After a SIGKILL, ``recover_stale``
marks the dead process's RUNNING trials FAIL and enqueues their parameters again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import TrialState

from ..objective import Settings, evaluate_arch, objective_values, test_hooks
from ..pruning import FrontPruner, Member, Pruned

__all__ = ["SAMPLERS", "make_sampler", "create_study", "load_study", "enqueue_baselines", "recover_stale",
           "run_trial", "worker_loop", "run_search", "budget_used"]

SAMPLERS = ("nsga2", "tpe", "random")
PLUGIN_ENV = "GROUPNAS_WORKER_PLUGIN"
FIGURES = ("accuracy", "latency_ms", "latency_iqr_ms", "latency_runs", "latency_batch", "threads",
           "memory_format", "node", "params", "macs", "acc_epochs", "learned", "proxy", "eval_seconds")


def make_sampler(name: str, seed: int, population_size: int | None = None) -> optuna.samplers.BaseSampler:
    """Optuna's own samplers: NSGA-II (default), multi-objective TPE, or random search."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population_size or 50, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)}")


def create_study(storage: Any, name: str, settings: Settings, sampler: optuna.samplers.BaseSampler,
                 config: dict[str, Any]) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, directions=settings.directions,
                                sampler=sampler, load_if_exists=False)
    study.set_user_attr("objectives", list(settings.objectives))
    study.set_user_attr("config", config)
    return study


def load_study(storage: Any, name: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


def enqueue_baselines(study: optuna.Study, space: Any) -> list[str]:
    """Enqueue ``space.baseline_params()`` (each labelled ``baseline=<name>``) before any search."""
    names = []
    for name, params in space.baseline_params().items():
        study.enqueue_trial(params, user_attrs={"baseline": name}, skip_if_exists=False)
        names.append(name)
    return names


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials whose process on this machine is gone as FAIL; enqueue them again.

    Trials run by another machine (a shared storage) are left alone.
    """
    host = socket.gethostname()
    storage = study._storage
    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        if worker:
            w_host, _, pid = worker.rpartition(":")
            if w_host != host or (pid.isdigit() and _pid_alive(int(pid)) and int(pid) != os.getpid()):
                continue
        storage.set_trial_user_attr(t._trial_id, "fail_reason", "stale: its process stopped (killed?) "
                                    "before the trial finished; retried on resume")
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        attrs = {"retry_of": t.number}
        if t.user_attrs.get("baseline"):
            attrs["baseline"] = t.user_attrs["baseline"]
        if t.params:
            study.enqueue_trial(t.params, user_attrs=attrs, skip_if_exists=False)
        stale.append(t.number)
    return stale


def budget_used(trials: list[Any]) -> int:
    """Trials that count towards ``--trials``: running, or finished without being interrupted."""
    return sum(1 for t in trials if t.state == TrialState.RUNNING
               or (t.state.is_finished() and not t.user_attrs.get("interrupted")))


# ----------------------------------------------------------------------------- interrupts

class _Interrupts:
    """SIGINT raises KeyboardInterrupt only inside ``interruptible()``; elsewhere it sets ``stop``."""

    def __init__(self) -> None:
        self.stop = False
        self.inside = False

    def handler(self, signum: int, frame: Any) -> None:
        self.stop = True
        if self.inside:
            self.inside = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.stop:
            raise KeyboardInterrupt
        self.inside = True
        try:
            yield
        finally:
            self.inside = False

    @contextlib.contextmanager
    def installed(self) -> Iterator["_Interrupts"]:
        try:
            old = signal.signal(signal.SIGINT, self.handler)
        except ValueError:  # not the main thread: leave signals alone
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ----------------------------------------------------------------------------- one trial

def _set_figures(trial: optuna.trial.Trial, figures: dict[str, Any]) -> None:
    for key in FIGURES:
        if key in figures and figures[key] is not None:
            trial.set_user_attr(key, figures[key])


def _previous(trials: list[Any], sha: str, number: int) -> Any | None:
    for t in trials:
        if t.number != number and t.user_attrs.get("arch_sha1") == sha and t.user_attrs.get("repeat_of") is None \
                and t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            return t
    return None


def run_trial(study: optuna.Study, trial: optuna.trial.Trial, space: Any, settings: Settings,
              interrupts: _Interrupts | None = None) -> TrialState:
    """Evaluate one asked trial and tell the study; returns the state it was told."""
    start = time.perf_counter()
    interrupts = interrupts or _Interrupts()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    try:
        arch = space.sample(trial)
        text = arch.to_json()
        sha = hashlib.sha1(text.encode()).hexdigest()
        trial.set_user_attr("arch", text)
        trial.set_user_attr("arch_sha1", sha)
        trial.set_user_attr("choices", dict(space.layer_choices(arch)))
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        prev = _previous(done, sha, trial.number)
        with interrupts.interruptible():
            test_hooks(trial.number)
            if prev is None:
                members = [Member(t.number, t.user_attrs) for t in done
                           if t.state == TrialState.COMPLETE and t.user_attrs.get("repeat_of") is None]
                # baselines are always evaluated in full: the front is judged against them
                prune = settings.prune and not trial.user_attrs.get("baseline")
                pruner = FrontPruner(settings.objectives, members, prune, settings.prune_margin)
                figures = evaluate_arch(arch, settings, report=pruner.report)
        if prev is not None:  # same canonical Arch already evaluated: reuse, do not train again
            _set_figures(trial, prev.user_attrs)
            trial.set_user_attr("repeat_of", prev.number)
            trial.set_user_attr("seconds", time.perf_counter() - start)
            if prev.state == TrialState.COMPLETE:
                study.tell(trial, list(prev.values))
                return TrialState.COMPLETE
            trial.set_user_attr("prune_reason", f"repeat of pruned trial {prev.number}: "
                                + str(prev.user_attrs.get("prune_reason", "")))
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED
        _set_figures(trial, figures)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        study.tell(trial, objective_values(figures, settings.objectives))
        return TrialState.COMPLETE
    except Pruned as p:
        _set_figures(trial, p.figures)
        trial.set_user_attr("prune_reason", p.reason)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    except KeyboardInterrupt:
        trial.set_user_attr("fail_reason", "interrupted (Ctrl-C); retried on --resume")
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
        if trial.params:
            attrs = {"retry_of": trial.number}
            if trial.user_attrs.get("baseline"):
                attrs["baseline"] = trial.user_attrs["baseline"]
            study.enqueue_trial(trial.params, user_attrs=attrs, skip_if_exists=False)
        raise
    except Exception as err:  # a trial that raises is recorded as failed; the search goes on
        trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}"[:2000])
        trial.set_user_attr("seconds", time.perf_counter() - start)
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL


# ----------------------------------------------------------------------------- the loop

def _space(config: dict[str, Any]) -> Any:
    import spaces

    return spaces.get_space(config["space"], backbone=config["backbone"],
                            input_shape=tuple(config["input_shape"]), num_classes=config["num_classes"])


def worker_loop(run_dir: Path, config: dict[str, Any], storage: Any, worker_index: int = 0,
                deadline: float | None = None,
                on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
                interrupts: _Interrupts | None = None) -> int:
    """Ask/evaluate/tell until the budget, the deadline or Ctrl-C; returns trials run here."""
    import torch

    settings = Settings.from_dict(config["settings"])
    workers = max(1, int(config.get("workers", 1)))
    if settings.train_threads is None:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    sampler = make_sampler(config["sampler"], settings.seed + 1000 * worker_index, config.get("population"))
    study = load_study(storage, config["study_name"], sampler)
    space = _space(config)
    total = int(config["total_trials"])
    interrupts = interrupts or _Interrupts()
    lock = run_dir / ".ask.lock"
    ran = 0
    while not interrupts.stop:
        if deadline is not None and time.time() >= deadline:
            break
        with _file_lock(lock):
            if budget_used(study.get_trials(deepcopy=False)) >= total:
                break
            trial = study.ask()
        try:
            run_trial(study, trial, space, settings, interrupts)
        except KeyboardInterrupt:
            break
        ran += 1
        if on_trial is not None:
            on_trial(study, study._storage.get_trial(trial._trial_id))
    return ran


def _worker_entry(run_dir: str, config: dict[str, Any], worker_index: int, deadline: float | None) -> None:
    """Entry point of a spawned worker process (quiet: the parent prints progress)."""
    from ..runfolder import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plugin = os.environ.get(PLUGIN_ENV)
    if plugin:  # "module:function" run first in each worker, e.g. to register a space
        module, _, func = plugin.partition(":")
        getattr(importlib.import_module(module), func or "install")()
    interrupts = _Interrupts()
    with interrupts.installed():
        storage = open_storage(config["storage"], Path(run_dir))
        worker_loop(Path(run_dir), config, storage, worker_index, deadline, interrupts=interrupts)


def run_search(run_dir: Path, config: dict[str, Any], storage: Any, deadline: float | None,
               printer: Callable[[str], None] = print) -> bool:
    """Run the search with ``config["workers"]`` processes; returns False if interrupted."""
    from ..progress import summarise

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workers = max(1, int(config.get("workers", 1)))
    objectives = config["settings"]["objectives"]
    total = int(config["total_trials"])
    interrupts = _Interrupts()

    def line(study: optuna.Study) -> str:
        trials = study.get_trials(deepcopy=False)
        counted = [t for t in trials if not t.user_attrs.get("interrupted")]
        return summarise(trials, objectives, total, workers, deadline, counted=counted).line()

    with interrupts.installed():
        if workers == 1:
            def on_trial(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
                printer(_trial_line(t))
                printer(line(study))

            worker_loop(run_dir, config, storage, 0, deadline, on_trial, interrupts)
            return not interrupts.stop
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_worker_entry, args=(str(run_dir), config, i, deadline), daemon=False)
                 for i in range(workers)]
        for p in procs:
            p.start()
        study = optuna.load_study(study_name=config["study_name"], storage=storage)
        last = -1
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            trials = study.get_trials(deepcopy=False)
            n = sum(t.state.is_finished() for t in trials)
            if n != last:
                last = n
                printer(line(study))
        for p in procs:
            p.join()
        printer(line(study))
        crashed = [f"worker {i} exited with code {p.exitcode}" for i, p in enumerate(procs)
                   if p.exitcode not in (0, None) and not interrupts.stop]
        if crashed:
            raise RuntimeError("; ".join(crashed) + " (see its traceback above)")
        return not interrupts.stop


def _trial_line(t: optuna.trial.FrozenTrial) -> str:
    a = t.user_attrs
    s = f"trial {t.number} {t.state.name.lower()}"
    if a.get("accuracy") is not None:
        s += f": accuracy {a['accuracy']:.4f}"
    if a.get("latency_ms") is not None:
        s += f", {a['latency_ms']:.3f} ms"
    if a.get("params") is not None:
        s += f", {a['params']:,} params"
    if a.get("baseline"):
        s += f" [baseline {a['baseline']}]"
    if a.get("repeat_of") is not None:
        s += f" (repeat of trial {a['repeat_of']})"
    if a.get("prune_reason"):
        s += f" ({a['prune_reason']})"
    if a.get("fail_reason"):
        s += f" ({a['fail_reason']})"
    return s


def _flush() -> None:
    sys.stdout.flush()
