"""How ``spaces.inference_model`` rewrites the builder's modules (``spaces.build``, Arch format 2).

``builder_rules()`` returns the ``register_inference`` arguments for each builder class;
``spaces.inference`` registers them explicitly. Nothing here runs at import time.

BatchNorm in eval mode is per-channel affine, ``bn(z) = s z + t`` (Ioffe & Szegedy, ICML 2015),
so it folds into a linear op whose output it normalises, ``W' = s W``, bias ``t``:

- ``Layer``, post-activation (act(bn(op(x)))): ``bn`` folds into ``op``. Also a shortcut
  projection (a ``Layer`` with act none) and a format-1 residual layer's shortcut (conv + BN in
  an ``nn.Sequential``, folded by the generic rule).
- ``Layer``, pre-activation (op(act(bn(x))), CondenseNet, Huang et al., CVPR 2018): the BN
  normalises the layer's *input*. It cannot fold into its own op (the activation sits between),
  and folding it into the op that produced the input is exact only when that op's output is read
  by nothing else and reaches the BN unchanged: the previous ``Layer`` of the same plain
  composition (``GroupNet.layers``, a ``Block``'s ``layers`` / ``branch``), itself pre-activation
  or with neither BN, act nor pool, and no shortcut. ``fold_preact_bns`` does that fold; every
  other pre-activation BN (after a post-activation layer, at a block's entry, whose input the
  shortcut also reads) stays, unfolded and correct.
- ``Head``: a GDC head's depthwise conv + BN (an ``nn.Sequential``, generic rule).

Channel permutations: a ``Layer`` is a port (entry = exit = its ``PermutedOp``) when everything
after the op commutes with a channel permutation (ReLU / ReLU6, max / average pooling, no BN
left, no shortcut; pre-activation once its BN is folded away). A ``Block`` (shortcut add / concat, split, shuffle) is a
barrier to the chain around it: its input is read twice and its output is a sum or
concatenation, so an index moved across it would have to act on both paths; inside it, its
``layers`` and ``branch`` are each folded as a chain of their own (exact: only the joins between
two consecutive layers move). Its trailing shuffle is an exit port (``ShuffleExit``): a next
``Layer`` whose op takes the order (a dense conv) absorbs it, and the shuffle goes (ShuffleNet
v2's last unit, before conv5); before another unit it stays (the split sends one half of it
through the identity shortcut, where no weight can absorb it). The classifier after global
average pooling absorbs any input permutation (``LinearPort``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .build import Block, GroupNet, Head, Layer
from .fold import PermutedOp, fold_bn_into, inverse_permutation
from .ops.shuffle import shuffle_permutation

__all__ = ["builder_rules", "fold_preact_bns", "LinearPort"]

_COMMUTES = (nn.ReLU, nn.ReLU6, nn.Identity, nn.MaxPool2d, nn.AvgPool2d)


class LinearPort:
    """The classifier after global average pooling: it absorbs any input permutation."""

    in_index = None

    def __init__(self, fc: nn.Linear) -> None:
        self.fc = fc

    def permute_in(self, q: Tensor) -> bool:
        with torch.no_grad():
            self.fc.weight.copy_(self.fc.weight.index_select(1, inverse_permutation(q)))
        return True


def _bn_gone(bn: nn.Module | None) -> bool:
    return bn is None or isinstance(bn, nn.Identity)


def _layer_bn_pairs(layer: Layer) -> tuple[tuple[str, str], ...]:
    return () if layer.preact else (("op", "bn"),)


def _layer_ports(layer: Layer) -> tuple[Any, Any] | None:
    if layer.shortcut is not None or not isinstance(layer.op, PermutedOp) or not _bn_gone(layer.bn):
        return None  # a BN left (before or after the op) would have to be permuted too
    if any(m is not None and not isinstance(m, _COMMUTES) for m in (layer.act, layer.pool)):
        return None  # e.g. PReLU: per channel, but its slopes would have to move with the channels
    return layer.op, layer.op


class ShuffleExit:
    """A block's trailing channel shuffle as the exit port of a chain: the next layer may absorb
    it (a dense conv or the classifier takes any input order); then the shuffle is removed."""

    def __init__(self, block: Block) -> None:
        self.block = block
        device = next((p.device for p in block.parameters()), torch.device("cpu"))
        shuffle, channels = block.shuffle, block._inference_channels
        assert shuffle is not None and channels is not None, "_block_ports checks both"
        self._index = torch.tensor(shuffle_permutation(channels, shuffle.groups), device=device)

    @property
    def out_index(self) -> Tensor | None:
        return self._index if self.block.shuffle is not None else None

    @out_index.setter
    def out_index(self, q: Tensor | None) -> None:
        if q is None:
            self.block.shuffle = None
        elif not torch.equal(q, self._index):  # pragma: no cover - _join only clears or restores it
            raise ValueError("a block's shuffle can only be kept or absorbed")

    def permute_out(self, q: Tensor) -> bool:
        return False


def _block_ports(block: Block) -> tuple[Any, Any] | None:
    """Entry: none (the input feeds the layers and the shortcut). Exit: the trailing shuffle."""
    if block.shuffle is None or block._inference_channels is None:
        return None
    return None, ShuffleExit(block)


def _block_inner(block: Block) -> list[list[nn.Module]]:
    return [list(block.layers)] + ([list(block.branch)] if block.branch is not None else [])


def _head_ports(head: Head) -> tuple[Any, Any] | None:
    pool = list(head.pool) if isinstance(head.pool, nn.Sequential) else []
    gap = (len(pool) == 2 and isinstance(pool[0], nn.AdaptiveAvgPool2d) and pool[0].output_size in (1, (1, 1))
           and isinstance(pool[1], nn.Flatten))
    return (LinearPort(head.fc), None) if gap else None


def _net_chain(net: GroupNet) -> list[nn.Module] | None:
    parts: list[Any] = [getattr(net, name, None) for name in ("stem", "layers", "head")]
    if not all(isinstance(p, nn.Module) for p in parts):
        return None  # else: no chain, recurse
    arch: Any = getattr(net, "arch", None)
    if isinstance(parts[1], nn.Sequential) and hasattr(arch, "feature_shapes"):
        shapes = arch.feature_shapes()
        if len(shapes) == len(parts[1]) + 1:
            for block, shape in zip(parts[1], shapes[1:]):
                if isinstance(block, Block):  # the output width a block's shuffle port needs
                    block._inference_channels = shape[0]
    return parts


def builder_rules() -> list[tuple[type, dict[str, Any]]]:
    """``(cls, keyword arguments of register_inference)`` for each builder class."""
    return [
        (Layer, {"bn_pairs": _layer_bn_pairs, "ports": _layer_ports}),
        (Block, {"inner": _block_inner, "ports": _block_ports}),
        (Head, {"ports": _head_ports}),
        (GroupNet, {"chain": _net_chain}),
    ]


# -- pre-activation BN into the previous layer's op ----------------------------------------
def _output_is_op(layer: nn.Module) -> bool:
    """Whether ``layer``'s output is its op's output, untouched."""
    if not isinstance(layer, Layer) or layer.pool is not None or layer.shortcut is not None:
        return False
    return layer.preact or (_bn_gone(layer.bn) and layer.act is None)


def _fold_into(op: nn.Module, bn: nn.BatchNorm2d) -> nn.Module | None:
    if isinstance(op, PermutedOp):
        return None  # already folded (its own BN); two affines in a row are left as they are
    return fold_bn_into(op, bn)


def _sequences(module: nn.Module) -> list[list[nn.Module]]:
    if isinstance(module, GroupNet):
        return [[module.stem, *module.layers]]
    if isinstance(module, Block):
        return _block_inner(module)
    if type(module) is nn.Sequential:
        return [list(module)]
    return []


def fold_preact_bns(model: nn.Module) -> int:
    """Fold each pre-activation BN into the op of the layer before it, where exact (module
    doc); returns how many were folded. Run before the post-activation folds."""
    done = 0
    for module in model.modules():
        for seq in _sequences(module):
            for prev, layer in zip(seq, seq[1:]):
                if not (isinstance(layer, Layer) and layer.preact and isinstance(layer.bn, nn.BatchNorm2d)):
                    continue
                if layer.bn.running_mean is None or not isinstance(prev, Layer) or not _output_is_op(prev):
                    continue
                folded = _fold_into(prev.op, layer.bn)
                if folded is not None:
                    prev.op, layer.bn = folded, nn.Identity()
                    done += 1
    return done
