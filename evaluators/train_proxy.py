"""Proxy accuracy by short training: ``train_and_evaluate(model, data, epochs) -> float``.

A few epochs of SGD with Nesterov momentum (Sutskever et al. 2013), weight decay and a
one-cycle learning rate (linear warm-up over the first ``warmup`` fraction of steps, then
cosine decay to zero; Smith & Topin 2017), cross-entropy loss. The accuracy after a short,
fixed budget ranks architectures well enough to search with (the training-budget proxies of
Zhou et al. 2020, "EcoNAS"); ``bench/proxy_correlation.py`` measures how well. Before each
evaluation the BatchNorm statistics are re-estimated on a fixed subset of the training
inputs (``recalibrate_bn``): after so few steps the running averages still lag the weights.

Learned-grouping ops (``spaces.LearnedOp``) train through a hook: the loss gains
``sum(op.regularizer())``, after epoch ``e`` of ``E`` every op gets ``op.schedule(e / E)``,
and the final accuracy is that of ``spaces.condense_model(model)``.

The final epoch's validation accuracy also counts ``data.val_extra`` when the data has it
(``evaluators.data.load_data(val_examples=...)``): the accuracy over val and val_extra
together, ``(a_val n_val + a_extra n_extra) / (n_val + n_extra)``. Earlier epochs, which only
feed pruning, stay on the small val split, so the extra examples cost one evaluation a trial.

Deterministic for a seed: shuffling uses its own ``torch.Generator``, and dropout draws from
the global RNG inside ``torch.random.fork_rng`` seeded with ``seed`` (the caller's RNG state is
left as it was). Weight initialisation is the builder's job. Thread count: the caller's,
unless ``threads`` is given (then restored afterwards).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .latency import compute_slot

if TYPE_CHECKING:
    from .data import Images

__all__ = ["TrainingDiverged", "TrainResult", "train", "train_and_evaluate", "evaluate", "recalibrate_bn",
           "pooled_accuracy",
           "DEFAULT_EPOCHS", "DEFAULT_LR", "DEFAULT_BATCH_SIZE"]

DEFAULT_EPOCHS = 3
DEFAULT_LR = 0.1
DEFAULT_BATCH_SIZE = 64

Report = Callable[[int, float], Any]


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or blew up; the message gives the reason, epoch and step."""


@dataclass
class TrainResult:
    """What a proxy training run produced. ``model`` is the condensed inference model."""

    accuracy: float
    history: list[float] = field(default_factory=list)
    model: nn.Module | None = None
    seconds: float = 0.0
    final_loss: float = float("nan")


def _positive(name: str, value: Any, kind: type = float) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{name} must be a positive {kind.__name__}, got {value!r}")


@torch.inference_mode()
def _accuracy(model: nn.Module, x: Images, y: Tensor, batch_size: int, device: torch.device) -> float:
    from .data import batches

    correct, i = 0, 0
    for xb in batches(x, torch.arange(len(y)), batch_size):
        with compute_slot():
            out = model(xb.to(device))
        correct += int((out.argmax(1).cpu() == y[i:i + len(xb)]).sum())
        i += len(xb)
    return correct / max(1, len(y))


def evaluate(model: nn.Module, x: Images, y: Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on (``x``, ``y``) in eval mode; the mode is restored after."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    if len(y) == 0:
        raise ValueError("cannot evaluate on an empty split")
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval()
    try:
        return _accuracy(model, x, y, batch_size, device)
    finally:
        model.train(was_training)


@torch.no_grad()
def pooled_accuracy(model: nn.Module, accuracy: float, n_scored: int, extra: Any) -> float:
    """``accuracy`` (measured on ``n_scored`` examples) pooled with ``model``'s accuracy on the
    split ``extra``: ``(a n + a_extra n_extra) / (n + n_extra)``; ``accuracy`` when ``extra`` is
    None or empty."""
    if extra is None or len(extra) == 0:
        return accuracy
    n_extra = len(extra)
    return (accuracy * n_scored + evaluate(model, extra.x, extra.y) * n_extra) / (n_scored + n_extra)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: Images, batch_size: int, max_examples: int = 512) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over
    ``max_examples`` training inputs (train-mode forward passes, no gradient).

    After a few hundred steps the exponential running averages still lag the weights, so an
    eval-mode model scores near chance although it has learned; recalibrating (as one-shot
    NAS does for sub-networks, Guo et al. 2020 "SPOS") makes short-budget accuracies usable.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        model.train()
        for i in range(0, min(len(x), max_examples), batch_size):
            chunk = x[i:min(i + batch_size, max_examples)]
            if len(chunk) > 1:
                with compute_slot():
                    model(chunk.to(device))
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.train(was_training)


def _lr_at(step: int, total: int, lr: float, warmup: float) -> float:
    """One-cycle: linear warm-up to ``lr`` over ``warmup * total`` steps, then cosine to 0."""
    w = max(1, int(round(warmup * total))) if warmup > 0 else 0
    if step < w:
        return lr * (step + 1) / w
    progress = (step - w) / max(1, total - w)
    return 0.5 * lr * (1.0 + math.cos(math.pi * progress))


def train(model: nn.Module, data: Any, epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
          batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, report: Report | None = None, *,
          momentum: float = 0.9, weight_decay: float = 5e-4, warmup: float = 0.15,
          label_smoothing: float = 0.0, diverge_factor: float = 10.0, split: str = "val",
          recalibrate: bool = True, score_every_epoch: bool = True,
          threads: int | None = None, device: str = "cpu") -> TrainResult:
    """Train ``model`` in place on ``data.train`` and return a ``TrainResult``.

    ``split`` ("val" or "test") is the split the accuracy is measured on (with "val", the final
    epoch adds ``data.val_extra`` when present; see the module doc). ``report(epoch,
    accuracy)`` is called after each epoch (1-based); whatever it raises propagates unchanged.
    Raises ``TrainingDiverged`` when the loss is NaN/inf or its running mean exceeds
    ``diverge_factor * ln(num_classes)`` (ten times the loss of a uniform guess).
    ``recalibrate``: re-estimate BatchNorm statistics before each evaluation
    (``recalibrate_bn``, on a fixed subset of the training inputs). ``score_every_epoch=False``
    scores the final epoch only (``report`` is then called once, and ``history`` holds one
    figure): the weights, and so the final accuracy, are the same.
    """
    from spaces.build import condense_model, learned_ops

    from .data import batches

    _positive("epochs", epochs, int)
    _positive("lr", lr)
    _positive("batch_size", batch_size, int)
    _positive("diverge_factor", diverge_factor)
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    if threads is not None:
        _positive("threads", threads, int)
    x_tr, y_tr = data.train.x, data.train.y
    x_ev, y_ev = getattr(data, split).x, getattr(data, split).y
    extra = getattr(data, "val_extra", None) if split == "val" else None
    if len(y_tr) == 0:
        raise ValueError("the training split is empty")
    dev = torch.device(device)
    model.to(dev)
    ops = learned_ops(model)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=lr, momentum=momentum, nesterov=momentum > 0)
    steps_per_epoch = math.ceil(len(y_tr) / batch_size)
    total = epochs * steps_per_epoch
    limit = diverge_factor * math.log(max(2, int(getattr(data, "num_classes", 2))))
    gen = torch.Generator().manual_seed(seed)
    x_calib = x_tr[torch.randperm(len(y_tr), generator=torch.Generator().manual_seed(seed + 1))[:512]]
    old_threads = torch.get_num_threads()
    history: list[float] = []
    running = float("nan")
    start = time.perf_counter()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            step = 0
            for epoch in range(1, epochs + 1):
                model.train()
                order = torch.randperm(len(y_tr), generator=gen)
                if len(order) > batch_size and len(order) % batch_size == 1:
                    order = order[:-1]  # a single-example batch breaks BatchNorm
                chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
                for idx, x_batch in zip(chunks, batches(x_tr, order, batch_size)):
                    for g in opt.param_groups:
                        g["lr"] = _lr_at(step, total, lr, warmup)
                    with compute_slot():  # no latency is timed on this machine meanwhile
                        xb, yb = x_batch.to(dev), y_tr[idx].to(dev)
                        loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
                        for op in ops:
                            reg = op.regularizer()
                            if reg is not None:
                                loss = loss + reg
                        value = float(loss.detach())
                        if not math.isfinite(value):
                            raise TrainingDiverged(f"loss became {value} at epoch {epoch}, step {step + 1} "
                                                   f"(lr={lr}); lower the learning rate")
                        running = value if math.isnan(running) else 0.9 * running + 0.1 * value
                        if running > limit:
                            raise TrainingDiverged(
                                f"loss diverged: running loss {running:.3g} > {limit:.3g} "
                                f"({diverge_factor} x chance-level loss) at epoch {epoch}, step {step + 1} "
                                f"(lr={lr}); lower the learning rate")
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                    step += 1
                for op in ops:
                    op.schedule(epoch / epochs)
                final = epoch == epochs
                if not (final or score_every_epoch):
                    continue
                scored = condense_model(model) if final else model
                if recalibrate:
                    recalibrate_bn(scored, x_calib, batch_size)
                acc = evaluate(scored, x_ev, y_ev)
                if final:
                    acc = pooled_accuracy(scored, acc, len(y_ev), extra)
                history.append(acc)
                if report is not None:
                    report(epoch, acc)
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)
    return TrainResult(history[-1], history, scored, time.perf_counter() - start, running)


def train_and_evaluate(model: nn.Module, data: Any, epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
                       batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, report: Report | None = None,
                       **options: Any) -> float:
    """Train ``model`` for ``epochs`` and return the validation accuracy in [0, 1].

    See ``train`` for ``options`` (momentum, weight_decay, warmup, label_smoothing,
    diverge_factor, split, threads, device). With learned ops the accuracy is that of the
    condensed model; get it with ``spaces.condense_model(model)`` to price and time it.
    """
    return train(model, data, epochs, lr, batch_size, seed, report, **options).accuracy
