"""Pins the Optuna and Ray behaviour that ``search.optuna_adapter`` and ``search.ray_adapter`` rely on.

If an upgrade of either library changes one of these, this file fails, not a run in the middle.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from search import optuna_adapter as ota

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _journal(path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(path)))



def test_journal_records_start_and_replay(tmp_path: Path) -> None:
    """Each journal line starts with JOURNAL_RECORD_START; the replayer takes the file's records in
    order and raises on one Optuna's reader would choke on (an unknown op code, a create-study record
    without its fields)."""
    import json

    study = optuna.create_study(storage=_journal(tmp_path / "j"), study_name="s", directions=["maximize"])
    study.tell(study.ask(), 1.0)
    lines = (tmp_path / "j").read_bytes().splitlines()
    assert lines and all(line.startswith(ota.JOURNAL_RECORD_START) for line in lines)
    apply = ota.journal_replayer()
    for line in lines:
        apply(json.loads(line))
    for bad in ({"op_code": 99, "worker_id": "x"}, {"op_code": 0, "worker_id": "x"}):
        with pytest.raises(Exception):  # whatever Optuna raises
            ota.journal_replayer()(bad)

def test_trial_ids_and_fresh_reads(tmp_path: Path) -> None:
    study = optuna.create_study(storage=_journal(tmp_path / "j"), study_name="s", directions=["maximize", "minimize"])
    asked = [study.ask() for _ in range(3)]
    listed = study.get_trials(deepcopy=False)
    assert [ota.trial_id(t) for t in asked] == [ota.trial_id(t) for t in listed]
    assert len({ota.trial_id(t) for t in asked}) == 3
    study.tell(asked[1], [0.5, 2.0])
    got = ota.fresh(study, asked[1])
    assert got.number == asked[1].number and got.state == TrialState.COMPLETE and got.values == [0.5, 2.0]
    assert ota.fresh(study, asked[0]).state == TrialState.RUNNING


def test_another_process_can_finish_a_running_trial(tmp_path: Path) -> None:
    """What ``recover_stale`` does to a dead process's trial, through a second handle on the storage."""
    study = optuna.create_study(storage=_journal(tmp_path / "j"), study_name="s", directions=["maximize", "minimize"])
    trial = study.ask()
    trial.suggest_int("x", 0, 3)
    other = optuna.load_study(study_name="s", storage=_journal(tmp_path / "j"))
    frozen = other.get_trials(deepcopy=False)[0]
    ota.set_attr(other, frozen, "fail_reason", "stale")
    ota.set_state(other, frozen, TrialState.FAIL)
    again = optuna.load_study(study_name="s", storage=_journal(tmp_path / "j")).get_trials(deepcopy=False)[0]
    assert again.state == TrialState.FAIL and again.user_attrs["fail_reason"] == "stale"
    assert again.params == {"x": frozen.params["x"]}


def test_enqueued_trial_comes_first_with_its_params_and_attrs(tmp_path: Path) -> None:
    """Baselines and re-queued trials: ``ask`` hands out the enqueued one, fixed params, user attrs set."""
    study = optuna.create_study(storage=_journal(tmp_path / "j"), study_name="s", directions=["maximize", "minimize"])
    study.enqueue_trial({"x": 2}, user_attrs={"baseline": "b0"}, skip_if_exists=False)
    trial = study.ask()
    assert trial.user_attrs == {"baseline": "b0"}
    assert trial.suggest_int("x", 0, 3) == 2 and trial.params == {"x": 2}
    assert trial.distributions == {"x": IntDistribution(0, 3)}


def test_ray_optuna_search_bookkeeping() -> None:
    """``StudyOptunaSearch`` names for OptunaSearch's private per-trial state."""
    from search.ray_adapter import StudyOptunaSearch

    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])

    def space(trial: optuna.trial.Trial) -> None:
        trial.suggest_int("x", 0, 3)

    s = StudyOptunaSearch(space=space, metric=["a", "b"], mode=["max", "min"], storage=storage, study_name="s",
                          sampler=optuna.samplers.RandomSampler(seed=0))
    config = s.suggest("t1")
    assert set(config) == {"x"}
    assert s.has_trial("t1") and not s.has_trial("t2")
    trial = s.optuna_trial("t1")
    assert trial.number == 0 and trial.params == config and s.study.get_trials(deepcopy=False)[0].number == 0
    assert [tid for tid, _ in s.optuna_trials()] == ["t1"]
    assert not s.is_done("t1")
    s.mark_done("t1")
    assert s.is_done("t1")
    s.on_trial_complete("t1", {"a": 1.0, "b": 2.0})   # OptunaSearch itself skips a trial marked done
    assert s.study.get_trials(deepcopy=False)[0].state == TrialState.RUNNING
