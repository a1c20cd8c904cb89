"""The run configuration: one typed, frozen ``RunConfig``, stored once in ``RUN/config.json``.

``search.run`` builds it from the validated command line (``search.options``); ``--resume``
reads it back (``RunConfig.from_dict``; files of older versions load too) and may change only
``trials``, ``timeout`` and ``workers`` (``dataclasses.replace``). The objectives are stored once,
at the top level; ``settings`` holds what a trial needs (``search.settings.Settings``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .settings import Settings

__all__ = ["RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    space: str
    backbone: str
    settings: Settings
    input_shape: tuple[int, ...]
    num_classes: int
    study_name: str
    storage: str = "study.journal"
    backend: str = "optuna"
    sampler: str = "nsga2"
    population: int | None = None
    trials: int = 40
    baselines: tuple[str, ...] = ()
    timeout: float | None = None
    workers: int = 1
    command: str = ""
    data_summary: str = ""
    space_size: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    resumed: tuple[str, ...] = ()
    ray: dict[str, Any] | None = None

    @property
    def objectives(self) -> tuple[str, ...]:
        return self.settings.objectives

    @property
    def proxy(self) -> str:
        return self.settings.proxy

    @property
    def total_trials(self) -> int:
        """The budget: ``trials`` searched on top of the baselines."""
        return self.trials + len(self.baselines)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of config.json (objectives at the top level only)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "settings":
                v = {k: x for k, x in v.to_dict().items() if k != "objectives"}
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        out["objectives"] = list(self.objectives)
        out["proxy"] = self.proxy
        out["total_trials"] = self.total_trials   # derived, for readers of the file
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RunConfig:
        """From config.json; raises ``ValueError`` naming the first field that is missing or wrong."""
        if not isinstance(doc, Mapping):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
        settings = doc.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise ValueError("'settings' must be an object")
        objectives = doc.get("objectives") or settings.get("objectives") or ("accuracy", "latency")
        settings = Settings.from_dict({**settings, "objectives": tuple(objectives)})
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {k: v for k, v in doc.items() if k in names and k != "settings"}
        for key in ("space", "backbone", "input_shape", "num_classes", "study_name"):
            if key not in kwargs:
                raise ValueError(f"missing field {key!r}")
        for key in ("input_shape", "baselines", "resumed"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key] or ())
        if "trials" not in kwargs and "total_trials" in doc:
            kwargs["trials"] = int(doc["total_trials"]) - len(kwargs.get("baselines", ()))
        return cls(settings=settings, **kwargs)
