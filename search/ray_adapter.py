"""Every use of Ray beyond its documented user API, in one place (``tests/test_adapters.py`` pins
the behaviour relied on here), and how this project starts or joins Ray.

- ``OptunaSearch``'s own bookkeeping (``_ot_study``, ``_ot_trials``, ``_completed_trials``):
  ``StudyOptunaSearch`` exposes it as ``study``, ``optuna_trial(tid)``, ``optuna_trials()``,
  ``is_done(tid)`` and ``mark_done(tid)``, so the searcher never touches the names.
- Token authentication (``ray._private.authentication``): Ray reads its auth mode once at
  import; joining a ``ray start`` cluster that has token auth needs it refreshed.
- A local instance binds to loopback: ``_node_ip_address="127.0.0.1"``, no dashboard, and (Ray's
  servers listen on ``*:port`` whatever they are told) ``search.run`` runs it in a private network
  namespace whose only interface is ``lo`` (``search.netns``); ``local_network()`` says which.
  To use a real cluster deliberately, start it with ``ray start --head`` on the address you
  choose and give ``--address``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import optuna
from ray.tune.search.optuna import OptunaSearch

from .cli_errors import CliError

__all__ = ["StudyOptunaSearch", "start_ray", "forwarded_env", "quiet_tune", "local_network", "LOOPBACK"]

LOOPBACK = "127.0.0.1"
FORWARD_ENV_PREFIX = "GROUPNAS_"


class StudyOptunaSearch(OptunaSearch):
    """``OptunaSearch`` with its per-trial bookkeeping behind named methods."""

    @property
    def study(self) -> optuna.Study:
        study = self._ot_study
        assert study is not None, "OptunaSearch sets up its study in __init__ when given a space"
        return study

    def optuna_trial(self, trial_id: str) -> optuna.trial.Trial:
        return self._ot_trials[trial_id]

    def has_trial(self, trial_id: str) -> bool:
        return trial_id in self._ot_trials

    def optuna_trials(self) -> Iterator[tuple[str, optuna.trial.Trial]]:
        return iter(list(self._ot_trials.items()))

    def is_done(self, trial_id: str) -> bool:
        return trial_id in self._completed_trials

    def mark_done(self, trial_id: str) -> None:
        self._completed_trials.add(trial_id)


def local_network() -> str:
    """Where a local instance started by this process can be reached from."""
    from .netns import only_loopback, state

    if only_loopback():
        return "loopback only (private network namespace)"
    why = state() or "not isolated (not started through python -m search.run)"
    return f"all interfaces: {why}; firewall it or use --address"


def forwarded_env() -> dict[str, str]:
    """This project's ``GROUPNAS_*`` settings (the latency lock), sent to every Ray worker."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARD_ENV_PREFIX)}


def quiet_tune() -> None:
    """Tune's old console output, which ``verbose=0`` silences (this project prints progress)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


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
    env = forwarded_env()
    runtime_env = {"env_vars": env} if env else None
    common: dict[str, Any] = dict(logging_level=logging.WARNING, log_to_driver=False, runtime_env=runtime_env,
                                  configure_logging=True)
    if address:
        again = f" (then continue with --resume {run_dir})" if run_dir is not None else ""
        if "RAY_AUTH_MODE" not in os.environ and _token_available():
            _use_token_auth()  # `ray start` enables token auth by default: join with the token
        try:
            _reachable(address)
            ray.init(address=address, **common)
        except (ConnectionError, ValueError, RuntimeError, OSError) as err:
            raise CliError(f"cannot join the Ray cluster at --address {address}: {err}. Start one with "
                           f"`ray start --head`, or leave --address out for a local instance{again}") from None
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK, **common)
    return time.perf_counter() - start
