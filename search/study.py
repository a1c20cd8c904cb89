"""The study layer, shared by ``search.run`` and both backends: one Optuna study per run.

Creation and loading (``create_study`` / ``load_study``, the sampler from
``search.sampling.make_sampler``), the baselines (``enqueue_baselines``: the space's
hand-designed networks, enqueued first and labelled ``baseline=<name>``), the budget
(``budget_used``: running trials plus finished ones not interrupted), re-queueing an
interrupted trial (``requeue``: same parameters, ``retry_of``) and stale-trial recovery
(``recover_stale``: RUNNING trials whose process on this machine is gone). What a trial
records is ``search.trials``. Optuna internals go through ``search.optuna_adapter``.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import optuna_adapter as ota
from .config import RunConfig
from .sampling import make_sampler

__all__ = ["sampler_for", "latency_price", "settings_price",
           "create_study", "load_study", "enqueue_baselines", "budget_used", "requeue",
           "recover_stale", "worker_tag", "space_of", "cores_per_worker"]


def worker_tag() -> str:
    """``host:pid`` of this process, recorded on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def latency_price(config: RunConfig) -> Any:
    """``arch -> predicted ms`` at the run's latency shape and runtime, for the screened sampler,
    whenever latency is an objective (None otherwise).

    With ``--latency measured`` too: the latency model (``evaluators.latency_model``, a sum of
    per-layer costs timed once per machine and kept in its table) prices every candidate before
    training, so the sampler's latency surrogate starts from a figure that ranks nearly as the
    measurement does (Spearman 0.96 on 30 ``igc`` trials at 1x224x224 onnxruntime) instead of
    from params and MACs alone. The first trials that need a new layer pay its timing (about
    0.3 s a layer; some 100 layers for ``igc`` on the small backbone, 600 for ``mixed``); the trials' latency of
    record stays the measured one."""
    return settings_price(config.settings)


def settings_price(s: Any) -> Any:
    """``latency_price`` of a run with trial settings ``s`` (a ``search.settings.Settings``)."""
    if "latency" not in s.objectives:
        return None

    def price(arch: Any) -> float:
        from evaluators.latency_model import predict_latency

        return predict_latency(arch, input_shape=s.latency_shape, batch_size=s.latency_batch, threads=s.threads,
                               runtime=s.runtime)
    return price


def sampler_for(config: RunConfig, space: Any, worker_id: int = 0) -> optuna.samplers.BaseSampler:
    return make_sampler(config.sampler, seed=config.settings.seed, n_trials=config.trials, space=space,
                        price=latency_price(config), worker_id=worker_id, population=config.population)


def create_study(storage: Any, config: RunConfig, space: Any) -> optuna.Study:
    """A new study named ``config.study_name`` with the run's directions and sampler."""
    study = optuna.create_study(storage=storage, study_name=config.study_name,
                                directions=config.settings.directions,  # type: ignore[arg-type]
                                sampler=sampler_for(config, space),
                                load_if_exists=False)
    # the screened sampler reads which objective each value is (accuracy, latency, params, macs)
    study.set_user_attr("objectives", list(config.settings.objectives))
    return study


def load_study(storage: Any, name: str, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


def enqueue_baselines(study: optuna.Study, space: Any) -> list[str]:
    """Enqueue ``space.baseline_params()`` (each labelled ``baseline=<name>``) before any search."""
    names = []
    for name, params in space.baseline_params().items():
        study.enqueue_trial(params, user_attrs={"baseline": name}, skip_if_exists=False)
        names.append(name)
    return names


def budget_used(trials: Sequence[FrozenTrial]) -> int:
    """Trials that count towards ``--trials``: running, or finished without being interrupted."""
    return sum(1 for t in trials if t.state == TrialState.RUNNING
               or (t.state.is_finished() and not t.user_attrs.get("interrupted")))


def requeue(study: optuna.Study, trial: FrozenTrial | optuna.trial.Trial) -> bool:
    """Enqueue the parameters of an interrupted trial again (``retry_of``; a baseline stays one)."""
    params = dict(trial.params)
    if not params:
        return False
    attrs: dict[str, Any] = {"retry_of": trial.number}
    if trial.user_attrs.get("baseline"):
        attrs["baseline"] = trial.user_attrs["baseline"]
    study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
    return True


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
    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        if worker:
            w_host, _, pid = worker.rpartition(":")
            if w_host != host or (pid.isdigit() and _pid_alive(int(pid)) and int(pid) != os.getpid()):
                continue
        ota.set_attr(study, t, "fail_reason", "stale: its process stopped (killed?) before the trial "
                     "finished; retried on resume")
        ota.set_attr(study, t, "interrupted", True)
        ota.set_state(study, t, TrialState.FAIL)
        requeue(study, t)
        stale.append(t.number)
    return stale


_SPACES: dict[tuple[Any, ...], Any] = {}


def space_of(config: RunConfig) -> Any:
    """The run's space, built once per process (a reused worker keeps it)."""
    key = (config.space, config.backbone, tuple(config.input_shape), config.num_classes)
    if key not in _SPACES:
        import spaces

        _SPACES[key] = spaces.get_space(config.space, backbone=config.backbone, input_shape=key[2],
                                        num_classes=config.num_classes)
    return _SPACES[key]


def cores_per_worker(workers: int) -> int:
    """This machine's cores shared among ``workers`` trial processes (at least 1 each)."""
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))
