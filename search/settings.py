"""What one trial needs (``Settings``), typed and frozen; stored under ``settings`` in config.json.

The run as a whole (space, sampler, budget, workers, storage ...) is ``search.config.RunConfig``;
the objectives are stored once, at its top level, and handed to ``Settings`` when it is built.
``val_examples``: how many validation examples a trial's final accuracy is scored on
(``evaluators.data.load_data``; per-epoch pruning stays on the val split).
Thread counts are explicit: ``threads`` for the latency measurement, ``train_threads`` for the
training (None: the backend gives each trial its share of the cores); both are set for the call
that uses them and restored afterwards (``evaluators.train_proxy.train``, ``evaluators.latency``).
Latency (issue 12): ``latency_shape`` (C, H, W) the nets are timed at (None: the data's own
size, as in runs made before it existed), ``runtime`` (``torch`` | ``onnxruntime``) and
``latency`` (``measured``, the figures of record, or ``predicted`` by
``evaluators.latency_model.predict_latency``, for cheap screening). Values are checked when
built (``ValueError`` naming the field), so a broken config.json fails on load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .objectives import directions

__all__ = ["Settings", "RUNTIMES", "LATENCY_MODES"]

RUNTIMES = ("torch", "onnxruntime")
LATENCY_MODES = ("measured", "predicted")


@dataclass(frozen=True)
class Settings:
    """Everything a trial needs; JSON-able (``to_dict``/``from_dict``)."""

    data: str = "digits"
    data_dir: str | None = None
    data_limit: int | None = None
    #: the final score's validation examples, topped up from outside ``data_limit`` (issue 14);
    #: None (runs made before it existed): the val split alone
    val_examples: int | None = None
    proxy: str = "train"
    epochs: int = 3
    #: epochs of the end-of-run confirmation round (``search.confirm``); None/0: no round
    confirm_epochs: int | None = None
    #: at most this many nets re-trained by that round (None: no cap)
    confirm_nets: int | None = None
    #: that round starts a net only while its time so far plus its slowest net so far fits in
    #: this many seconds (None: no limit); the nets left out leave their claims unchecked
    confirm_timeout: float | None = None
    lr: float = 0.1
    batch_size: int = 64
    objectives: tuple[str, ...] = ("accuracy", "latency")
    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None
    latency_batch: int = 1
    threads: int = 1
    latency_seconds: float = 1.0
    latency_shape: tuple[int, int, int] | None = None
    runtime: str = "torch"
    latency: str = "measured"
    train_threads: int | None = None
    seed: int = 0
    prune: bool = True
    prune_margin: float = 0.01
    zero_cost_batch: int = 64
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.latency not in LATENCY_MODES:
            raise ValueError(f"latency must be one of {', '.join(LATENCY_MODES)}, got {self.latency!r}")
        shape = self.latency_shape
        if shape is not None:
            if not (isinstance(shape, (tuple, list)) and len(shape) == 3
                    and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
                raise ValueError(f"latency_shape must be (C, H, W) positive integers, got {shape!r}")
            object.__setattr__(self, "latency_shape", tuple(shape))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["objectives"] = list(self.objectives)
        d["latency_shape"] = list(self.latency_shape) if self.latency_shape else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        """Unknown keys (older config.json files: ``space``, ``backbone``) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "objectives" in kwargs:
            kwargs["objectives"] = tuple(kwargs["objectives"])
        return cls(**kwargs)

    @property
    def directions(self) -> list[str]:
        return directions(self.objectives)

    def with_train_threads(self, threads: int) -> Settings:
        """These settings with an explicit training thread count (kept if already given)."""
        if self.train_threads is not None:
            return self
        return dataclasses.replace(self, train_threads=max(1, int(threads)))
