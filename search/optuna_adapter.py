"""Every use of Optuna beyond its documented user API, in one place (``tests/test_adapters.py``
pins the behaviour relied on here).

- A trial's id in its storage (``FrozenTrial._trial_id``, ``Trial._trial_id``): the public API
  offers numbers only, but the storage is keyed by id.
- The study's storage (``Study._storage``): to read one trial fresh after a ``tell`` and to
  write a user attribute or a state on a trial that another (dead) process was running, which
  ``Study.tell`` cannot do for attributes.
- The journal file's record format and replay (``journal_replayer``, ``JOURNAL_RECORD_START``):
  to tell a whole record from a torn one (``search.journal_repair``) as Optuna's reader would.
"""

from __future__ import annotations

from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["storage_of", "trial_id", "fresh", "set_attr", "set_state", "journal_replayer", "JOURNAL_RECORD_START"]

#: How every record Optuna's journal file writes begins (``_write_log`` puts op_code first).
JOURNAL_RECORD_START = b'{"op_code":'


def storage_of(study: optuna.Study) -> Any:
    """The storage object the study reads and writes."""
    return study._storage


def trial_id(trial: optuna.trial.Trial | FrozenTrial) -> int:
    """The storage key of a trial (not its number)."""
    return int(trial._trial_id)


def fresh(study: optuna.Study, trial: optuna.trial.Trial | FrozenTrial) -> FrozenTrial:
    """The trial as the storage holds it now (state, values, user attributes)."""
    return storage_of(study).get_trial(trial_id(trial))


def set_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """A user attribute on a trial that need not belong to this process."""
    storage_of(study).set_trial_user_attr(trial_id(trial), key, value)


def set_state(study: optuna.Study, trial: FrozenTrial, state: TrialState) -> None:
    """Finish a RUNNING trial of another process without values (FAIL)."""
    storage_of(study).set_trial_state_values(trial_id(trial), state)


def journal_replayer() -> Callable[[dict[str, Any]], None]:
    """``apply(record)``: replays one journal record as Optuna's reader does; raises if Optuna would."""
    try:
        from optuna.storages.journal._storage import JournalStorageReplayResult
    except ImportError:  # pragma: no cover - a future Optuna without it: check the shape only
        def apply_shape(record: dict[str, Any]) -> None:
            if not isinstance(record.get("op_code"), int) or not isinstance(record.get("worker_id"), str):
                raise ValueError("no op_code / worker_id")
        return apply_shape
    replay = JournalStorageReplayResult("journal-repair-check-")  # never one of the file's workers

    def apply(record: dict[str, Any]) -> None:
        replay.apply_logs([record])
    return apply
