"""``build_model(arch)``: an ``Arch`` to an ``nn.Module``, deterministically.

Modules mirror the ``Arch``:

- ``Layer`` (one ``LayerSpec``): attributes ``.op`` (from ``make_op``), ``.bn`` (BatchNorm2d or
  ``None``), ``.act`` (or ``None``), ``.preact``; post-activation computes act(bn(op(x))), pre-
  activation op(act(bn(x))). A format-1 ``residual`` layer computes act(bn(op(x)) + shortcut(x))
  with the identity or a strided 1x1 conv + BN (ResNet option B). So every conv followed by a
  BatchNorm is an ``.op`` / ``.bn`` pair a BN folder can find (``Block.project`` too).
- ``Block`` (a ``BlockSpec`` with a shortcut or several layers): ``.layers`` (``Layer`` s),
  ``.project`` (a ``Layer``: 1x1 conv + BN, no act) / ``.pool`` / ``.branch``, then add or concat,
  ``.norm``, ``.act``, a channel shuffle and ``.post_pool``. A one-layer block with nothing
  around its layer is built as its ``Layer``.

``model.layers`` is every block in order (stages flattened); ``model.stem`` is a ``Layer``.
The head is global average pooling or a global depthwise conv (GDC), then a linear layer.
Weights are initialised from ``seed`` inside a forked RNG, so building a model neither reads
nor changes the global random state. ``check_arch_limits`` runs first.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .arch import Arch, BlockSpec, HeadSpec, LayerSpec
from .limits import DEFAULT_LIMITS, check_arch_limits
from .ops.base import LearnedOp
from .ops.registry import make_op
from .ops.shuffle import ChannelShuffle

__all__ = ["build_model", "GroupNet", "Layer", "Block", "condense_model", "learned_ops", "make_act"]


def make_act(name: str, channels: int) -> nn.Module | None:
    """The activation module for ``name`` (``none`` -> ``None``); PReLU is per channel."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "prelu":
        return nn.PReLU(channels)
    return None


def _pool(kind: str) -> nn.Module | None:
    return {"max": nn.MaxPool2d(2), "max3": nn.MaxPool2d(3, 2, 1), "avg": nn.AvgPool2d(2)}.get(kind)


class Layer(nn.Module):
    """One ``LayerSpec``: op, norm, act (see the module docstring)."""

    def __init__(self, spec: LayerSpec, in_channels: int) -> None:
        super().__init__()
        self.preact = spec.preact
        self.op = make_op(spec.op, in_channels, spec.out_channels, spec.kernel_size, spec.stride, **spec.p)
        norm_c = in_channels if spec.preact else spec.out_channels
        self.bn: nn.Module | None = nn.BatchNorm2d(norm_c) if spec.norm == "bn" else None  # Identity once folded
        self.act = make_act(spec.act, norm_c)
        self.shortcut: nn.Module | None = None
        if spec.residual:
            if in_channels == spec.out_channels and spec.stride == 1:
                self.shortcut = nn.Identity()
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, spec.out_channels, 1, spec.stride, bias=False),
                    nn.BatchNorm2d(spec.out_channels),
                )
        self.pool = _pool(spec.pool)

    def forward(self, x: Tensor) -> Tensor:
        if self.preact:
            y = x if self.bn is None else self.bn(x)
            y = self.op(y if self.act is None else self.act(y))
        else:
            y = self.op(x)
            if self.bn is not None:
                y = self.bn(y)
            if self.shortcut is not None:
                y = y + self.shortcut(x)
            if self.act is not None:
                y = self.act(y)
        return y if self.pool is None else self.pool(y)


class Block(nn.Module):
    """A ``BlockSpec``: layers, shortcut, add / concat, act, shuffle."""

    def __init__(self, spec: BlockSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.split = spec.split
        self.combine = spec.combine
        self.kind = spec.shortcut
        c = in_channels - in_channels // 2 if spec.split else in_channels
        layers = []
        for ls in spec.layers:
            layers.append(Layer(ls, c))
            c = ls.out_channels
        self.layers = nn.ModuleList(layers)
        self.project: Layer | None = None
        self.pool: nn.Module | None = None
        self.branch: nn.ModuleList | None = None
        if spec.shortcut == "projection":
            stride = 1 if sum(l.stride for l in spec.layers) == len(spec.layers) and not any(
                l.pool != "none" for l in spec.layers) else 2
            op, p = ("group", {"groups": spec.proj_groups}) if spec.proj_groups > 1 else ("conv", {})
            self.project = Layer(LayerSpec(op, c, 1, stride, p, act="none"), in_channels)  # type: ignore[arg-type]  # LayerSpec freezes a mapping
        elif spec.shortcut == "avgpool":
            self.pool = nn.AvgPool2d(3, 2, 1)
        elif spec.shortcut == "branch":
            b, bc = [], in_channels
            for ls in spec.branch:
                b.append(Layer(ls, bc))
                bc = ls.out_channels
            self.branch = nn.ModuleList(b)
        self.norm = nn.BatchNorm2d(out_channels) if spec.norm == "bn" else None
        self.act = make_act(spec.act, out_channels)
        self.shuffle = ChannelShuffle(spec.shuffle) if spec.shuffle > 1 else None
        #: the width the trailing shuffle sees, set by ``spaces.inference_builder`` for the inference form
        self._inference_channels: int | None = None
        self.post_pool = _pool(spec.pool)

    def forward(self, x: Tensor) -> Tensor:
        if self.split:
            short, y = x[:, : x.shape[1] // 2], x[:, x.shape[1] // 2:]
        else:
            short, y = x, x
        for layer in self.layers:
            y = layer(y)
        if self.kind == "none":
            out = y
        else:
            if self.project is not None:
                short = self.project(short)
            elif self.pool is not None:
                short = self.pool(short)
            elif self.branch is not None:
                for layer in self.branch:
                    short = layer(short)
            out = y + short if self.combine == "add" else torch.cat((short, y), 1)
        if self.norm is not None:
            out = self.norm(out)
        if self.act is not None:
            out = self.act(out)
        if self.shuffle is not None:
            out = self.shuffle(out)
        return out if self.post_pool is None else self.post_pool(out)


class Head(nn.Module):
    """Global average pooling or global depthwise conv, dropout, linear classifier."""

    def __init__(self, spec: HeadSpec, feature_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c, h, w = feature_shape
        if spec.kind == "gdc":
            self.pool: nn.Module = nn.Sequential(
                nn.Conv2d(c, c, (h, w), groups=c, bias=False), nn.BatchNorm2d(c), nn.Flatten()
            )
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(x)))


def _block_module(spec: BlockSpec, in_channels: int, out_channels: int) -> nn.Module:
    if (len(spec.layers) == 1 and spec.shortcut == "none" and spec.act == "none" and spec.shuffle == 1
            and spec.norm == "none" and spec.pool == "none"):
        return Layer(spec.layers[0], in_channels)
    return Block(spec, in_channels, out_channels)


class GroupNet(nn.Module):
    """The network an ``Arch`` describes; ``model.arch`` keeps the description."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        self.stem = Layer(arch.stem, arch.input_shape[0])
        shapes = arch.feature_shapes()
        self.layers = nn.Sequential(*(_block_module(b, shapes[i][0], shapes[i + 1][0])
                                      for i, b in enumerate(arch.blocks)))
        self.head = Head(arch.head, shapes[-1], arch.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


def build_model(arch: Arch, seed: int = 0, *, limits: dict[str, int] | None = None) -> GroupNet:
    """Build ``arch`` with weights initialised from ``seed`` (global RNG untouched).

    ``limits``: keyword arguments of ``check_arch_limits`` (default ``DEFAULT_LIMITS``).
    """
    if not isinstance(arch, Arch):
        raise TypeError(f"build_model expects an Arch, got {type(arch).__name__}")
    check_arch_limits(arch, **{**DEFAULT_LIMITS, **(limits or {})})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroupNet(arch)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    return model


def learned_ops(model: nn.Module) -> list[LearnedOp]:
    """Every learned-grouping op inside ``model``."""
    return [m for m in model.modules() if isinstance(m, LearnedOp)]


def condense_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every learned op replaced by its condensed inference module.

    A model without learned ops is returned as is (no copy).
    """
    if not learned_ops(model):
        return model
    model = copy.deepcopy(model)

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, LearnedOp):
                setattr(parent, name, child.condense())
            else:
                swap(child)

    swap(model)
    return model
