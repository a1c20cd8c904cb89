"""``RunConfig``: typed, frozen, stored once in config.json; older files load; broken ones are named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from search.cli_errors import CliError
from search.config import RunConfig
from search.settings import Settings
from search.storage import read_config, write_config


def _config() -> RunConfig:
    return RunConfig(space="groups", backbone="small", settings=Settings(objectives=("accuracy", "params"), seed=7),
                     input_shape=(1, 8, 8), num_classes=10, study_name="r", trials=5, baselines=("b0", "b1"))


def test_round_trip_and_objectives_stored_once(tmp_path: Path) -> None:
    config = _config()
    write_config(tmp_path, config)
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["objectives"] == ["accuracy", "params"] and "objectives" not in doc["settings"]
    assert doc["total_trials"] == 7
    back = RunConfig.from_dict(read_config(tmp_path))
    assert back == config and back.settings.objectives == ("accuracy", "params") and back.total_trials == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.trials = 3  # type: ignore[misc]
    assert config.replace(trials=3).total_trials == 5


def test_an_older_config_loads() -> None:
    """The layout before the typed config: objectives three times, total_trials, space in settings."""
    old = {"space": "igc", "backbone": "small", "input_shape": [1, 8, 8], "num_classes": 10, "study_name": "x",
           "total_trials": 12, "baselines": ["a", "b"], "objectives": ["accuracy", "latency"], "population": 8,
           "settings": {"space": "igc", "backbone": "small", "objectives": ["accuracy", "latency"], "epochs": 2}}
    c = RunConfig.from_dict(old)
    assert c.trials == 10 and c.total_trials == 12 and c.settings.epochs == 2 and c.population == 8
    assert c.objectives == ("accuracy", "latency")


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", "\"text\""])
def test_a_broken_config_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CliError, match="config.json"):
        read_config(tmp_path)


def test_missing_fields_are_named() -> None:
    with pytest.raises(ValueError, match="'space'"):
        RunConfig.from_dict({"backbone": "small"})


def test_latency_settings_are_typed_and_checked(tmp_path: Path) -> None:
    """Issue 12: latency shape, runtime and mode are validated when built and survive config.json."""
    s = Settings(latency_shape=[3, 224, 224], runtime="onnxruntime", latency="predicted")  # type: ignore[arg-type]
    assert s.latency_shape == (3, 224, 224)
    config = dataclasses.replace(_config(), settings=s)
    write_config(tmp_path, config)
    assert json.loads((tmp_path / "config.json").read_text())["settings"]["latency_shape"] == [3, 224, 224]
    assert RunConfig.from_dict(read_config(tmp_path)) == config
    for bad in ({"runtime": "tvm"}, {"latency": "guess"}, {"latency_shape": (3, 224)}, {"latency_shape": (3, 0, 8)},
                {"latency_shape": (3.0, 8, 8)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Settings(**bad)  # type: ignore[arg-type]
    old = Settings.from_dict({"epochs": 2})     # a config.json from before: eager torch at the data's size
    assert (old.runtime, old.latency_shape, old.latency) == ("torch", None, "measured")
    assert old.val_examples is None  # issue 14: older runs keep scoring on their val split alone
    assert Settings.from_dict(Settings(val_examples=5000).to_dict()).val_examples == 5000
