"""``build_model(arch)``: an ``Arch`` to an ``nn.Module``, deterministically.

Each layer is ``op -> BatchNorm -> ReLU``; with ``residual`` the block output is
``ReLU(BN(op(x)) + shortcut(x))`` where the shortcut is the identity, or a strided 1x1
conv + BN (ResNet option B) when the shape changes. ``pool="max"`` adds a 2x2 max-pool.
The head is global average pooling or a global depthwise conv (GDC), then a linear layer.

Weights are initialised from ``seed`` inside a forked RNG, so building a model neither reads
nor changes the global random state.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .arch import Arch, HeadSpec, LayerSpec
from .ops.base import LearnedOp
from .ops.registry import make_op

__all__ = ["build_model", "GroupNet", "Block", "condense_model", "learned_ops"]


class Block(nn.Module):
    """One layer of an ``Arch``."""

    def __init__(self, spec: LayerSpec, in_channels: int) -> None:
        super().__init__()
        self.op = make_op(spec.op, in_channels, spec.out_channels, spec.kernel_size, spec.stride, **spec.p)
        self.bn = nn.BatchNorm2d(spec.out_channels)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if spec.residual:
            if in_channels == spec.out_channels and spec.stride == 1:
                self.shortcut = nn.Identity()
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, spec.out_channels, 1, spec.stride, bias=False),
                    nn.BatchNorm2d(spec.out_channels),
                )
        self.pool = nn.MaxPool2d(2) if spec.pool == "max" else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(self.op(x))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        y = self.act(y)
        if self.pool is not None:
            y = self.pool(y)
        return y


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


class GroupNet(nn.Module):
    """The network an ``Arch`` describes; ``model.arch`` keeps the description."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        self.stem = Block(arch.stem, arch.input_shape[0])
        blocks = []
        in_channels = arch.stem.out_channels
        for spec in arch.layers:
            blocks.append(Block(spec, in_channels))
            in_channels = spec.out_channels
        self.layers = nn.Sequential(*blocks)
        self.head = Head(arch.head, arch.feature_shapes()[-1], arch.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


def build_model(arch: Arch, seed: int = 0) -> GroupNet:
    """Build ``arch`` with weights initialised from ``seed`` (global RNG untouched)."""
    if not isinstance(arch, Arch):
        raise TypeError(f"build_model expects an Arch, got {type(arch).__name__}")
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
