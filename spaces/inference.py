"""``inference_model(model)``: the fastest equivalent eval-mode form of a built network.

Three rewrites, each exact up to float rounding (tests: |diff| <= 1e-4 + 1e-4 |ref| on the
logits):

1. Learned ops are condensed (``spaces.build.condense_model``).
2. BatchNorm is folded into the op before it (``op.fold_bn(bn)``, see ``spaces.fold``):
   where a module pairs an op with the BN that normalises its output (the builder's
   post-activation ``Layer``: ``.op`` then ``.bn``; ``nn.Sequential``: a conv followed by a
   BN), the op is replaced by its folded inference form and the BN by ``nn.Identity``. A
   pre-activation BN (bn -> act -> op) folds into the previous layer's op only where nothing
   else reads that op's output (``spaces.inference_builder.fold_preact_bns``); else it stays.
3. Channel permutations are moved into weights. Along a chain of modules (an
   ``nn.Sequential``, the builder's ``GroupNet``: stem, layers, head) the output index of one
   ``PermutedOp`` and the input index of the next (only per-channel modules, ReLU / pooling,
   in between, which commute with a permutation) compose into one permutation ``q``. It is
   absorbed by the producer (reordered filters and bias) or the consumer (reordered input
   columns; the classifier after global average pooling takes any), when ``q`` keeps the
   groups of that conv whole; else a depthwise consumer passes it on to its output (exact, and
   smaller after a stride); otherwise it stays, once, in front of the consumer (after its
   max-pool: the smaller tensor).

   What folds: HetConv's input and output permutations cancel between HetConv layers of equal
   part P (the output class order of one is the input class order of the next), and vanish
   into the dense stem and the classifier; condensed learned ops' gathers merge with the
   neighbours' filter orders into one gather; IGC's interleavings are done inside its
   contraction (``IGCKernel``). What cannot: a ShuffleNet shuffle between two grouped convs
   (its purpose is to mix the groups, so neither conv's blocks stay whole); it stays as one
   index per layer, except the last one, which the classifier absorbs. Residual blocks are
   barriers (input and output orders would have to agree; a shortcut reads the input too);
   the layers inside a block are folded as a chain of their own.

Extension protocol for new block types (what a builder provides to opt in):

- an op: ``fold_bn(bn) -> nn.Module`` returning ``bn(op(x))`` (ideally a ``PermutedOp``);
- a block: class attribute ``inference_bn_pairs = (("op", "bn"), ...)`` naming each op and
  the BN applied directly to its output, and optionally ``inference_ports(self) -> (entry,
  exit) | None``: the ``PermutedOp`` that first sees the block's input and the one whose output
  is the block's output, when everything else in between is per-channel;
- a network: ``inference_chain(self) -> list[nn.Module]``, its children in the order its
  forward composes them (a plain composition);
- a barrier block: ``inference_inner(self) -> list[list[nn.Module]]``, the plain compositions
  inside it (folded each as a chain, nothing moved across the block's ends).

``bn_pairs`` may also be a function of the instance. The builder's classes (``spaces.build``)
are registered here with ``register_inference`` from ``spaces.inference_builder.builder_rules``.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, TypeGuard

import torch
from torch import Tensor, nn

from .build import condense_model
from .fold import ConvKernel, PermutedOp, fold_bn_into, fold_conv_bn, inverse_permutation
from .inference_builder import builder_rules, fold_preact_bns

__all__ = ["inference_model", "register_inference", "INFERENCE_FORM_VERSION"]

# Raised whenever a change here or in ``spaces.fold`` changes what a layer's inference form
# costs; per-layer timings stored under another version are not reused
# (``evaluators.latency_model``). 2: IGC's secondary exported as gather, M-group 1x1, gather
# where it is wide enough (``fold.IGC_SHUFFLE_MIN_WIDTH``, ``fold.IGC_SHUFFLE_MIN_M``); exported
# channel shuffles with constant shapes.
INFERENCE_FORM_VERSION = 2

_PER_CHANNEL = (nn.ReLU, nn.ReLU6, nn.Identity, nn.Dropout, nn.MaxPool2d, nn.AvgPool2d, nn.Hardswish,
                nn.SiLU, nn.LeakyReLU)
_REGISTRY: dict[type, dict[str, Any]] = {}
BnPairs = tuple[tuple[str, str], ...]


def register_inference(cls: type, *, bn_pairs: BnPairs | Callable[[Any], BnPairs] | None = None,
                       chain: Callable[[Any], list[nn.Module] | None] | None = None,
                       ports: Callable[[Any], tuple[Any, Any] | None] | None = None,
                       inner: Callable[[Any], list[list[nn.Module]]] | None = None) -> None:
    """Declare how ``inference_model`` may rewrite instances of ``cls`` (see module doc)."""
    _REGISTRY[cls] = {"bn_pairs": bn_pairs, "chain": chain, "ports": ports, "inner": inner}


def _lookup(module: nn.Module, what: str) -> Any:
    for klass in type(module).__mro__:
        if klass in _REGISTRY and _REGISTRY[klass][what] is not None:
            return _REGISTRY[klass][what]
    attr = {"bn_pairs": "inference_bn_pairs", "chain": "inference_chain", "ports": "inference_ports",
            "inner": "inference_inner"}[what]
    value = getattr(type(module), attr, None)
    if value is None:
        return None
    return value if what == "bn_pairs" else (lambda m, _f=value: _f(m))


# -- 2. BatchNorm folding -------------------------------------------------------------------
def _foldable(bn: object) -> TypeGuard[nn.BatchNorm2d]:
    return isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None


def _fold_bns(module: nn.Module) -> None:
    pairs = _lookup(module, "bn_pairs") or ()
    if callable(pairs):
        pairs = pairs(module)
    for op_name, bn_name in pairs:
        op, bn = getattr(module, op_name, None), getattr(module, bn_name, None)
        if op is not None and _foldable(bn):
            folded = fold_bn_into(op, bn)
            if folded is not None:
                setattr(module, op_name, folded)
                setattr(module, bn_name, nn.Identity())
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            op, bn = module._modules[a], module._modules[b]
            if isinstance(op, nn.Conv2d) and _foldable(bn):
                module._modules[a] = fold_conv_bn(op, bn)
                module._modules[b] = nn.Identity()
    for child in module.children():
        _fold_bns(child)


# -- 3. permutation folding ----------------------------------------------------------------
def _is_permutation(q: Tensor, width: int) -> bool:
    """``x[:, q]`` reorders all ``width`` channels of ``x`` (a gather of fewer is a selection)."""
    return len(q) == width and bool(torch.equal(torch.sort(q).values, torch.arange(width, device=q.device)))


def _join(producer: Any, consumer: Any) -> None:
    """Compose the producer's output index with the consumer's input index, then absorb it."""
    qa, qb = producer.out_index, consumer.in_index
    if qa is None and qb is None:
        return
    q = qb if qa is None else qa if qb is None else qa.index_select(0, qb)
    # the channels q indexes: the producer's outputs (its own index reorders all of them)
    width = len(qa) if qa is not None else getattr(consumer, "in_width", None) or len(q)
    producer.out_index = None
    if isinstance(consumer, PermutedOp):
        consumer.in_index = None
    if _is_permutation(q, width):
        if torch.equal(q, torch.arange(len(q), device=q.device)):
            return
        if producer.permute_out(q) or consumer.permute_in(q) or _through_depthwise(consumer, q):
            return
    if isinstance(consumer, PermutedOp):
        consumer.in_index = q
    else:
        producer.out_index = q


def _through_depthwise(op: Any, q: Tensor) -> bool:
    """Move ``x[:, q]`` in front of a depthwise conv to its output: ``dw(x[:, q]) = dw'(x)[:, q]``
    with filter ``q[c]`` of ``dw'`` = filter ``c`` of ``dw`` (per-channel, exact). There it is
    smaller after a stride, and the next join may absorb it."""
    if not (isinstance(op, PermutedOp) and isinstance(op.kernel, ConvKernel) and op.out_index is None):
        return False
    conv = op.kernel.conv
    if not (conv.groups == conv.in_channels == conv.out_channels == len(q)):
        return False
    inv = inverse_permutation(q)
    with torch.no_grad():
        conv.weight.copy_(conv.weight[inv])
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[inv])
    op.kernel._export_cache = None
    op.out_index = q
    return True


def _ports(module: nn.Module) -> tuple[Any, Any] | None:
    if isinstance(module, PermutedOp):
        return module, module
    fn = _lookup(module, "ports")
    return fn(module) if fn is not None else None


def _chain(module: nn.Module) -> list[nn.Module] | None:
    fn = _lookup(module, "chain")
    if fn is not None:
        items = fn(module)
        if items is None:
            return None
    elif type(module) is nn.Sequential:
        items = list(module)
    else:
        return None
    flat: list[nn.Module] = []
    for m in items:
        sub = _chain(m)
        flat.extend(sub if sub is not None else [m])
    return flat


def _fold_permutations(module: nn.Module) -> None:
    chain = _chain(module)
    if chain is None:
        inner = _lookup(module, "inner")
        if inner is not None:  # a barrier with plain compositions inside
            seen: set[int] = set()
            for seq in inner(module):
                seen.update(id(m) for m in seq)
                _fold_chain(seq)
            for child in module.children():
                for m in (list(child) if isinstance(child, nn.ModuleList) else [child]):
                    if id(m) not in seen:
                        _fold_permutations(m)
            return
        for child in module.children():
            _fold_permutations(child)
        return
    _fold_chain(chain)


def _fold_chain(chain: list[nn.Module]) -> None:
    last = None
    for m in chain:
        if isinstance(m, _PER_CHANNEL):
            continue
        ports = _ports(m)
        if ports is not None and not isinstance(m, PermutedOp) and _lookup(m, "inner") is not None:
            _fold_permutations(m)  # a barrier with an exit port: fold inside it too
        if ports is None:
            last = None
            _fold_permutations(m)
            continue
        entry, exit_ = ports
        if last is not None and entry is not None:
            _join(last, entry)
        last = exit_


# -- the builder's classes (spaces.inference_builder) -------------------------------------
for _cls, _rules in builder_rules():
    register_inference(_cls, **_rules)


def inference_model(model: nn.Module) -> nn.Module:
    """A new eval-mode module computing what ``model`` computes in eval mode, faster.

    ``model`` is left unchanged. The result is for inference only (no gradients).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"inference_model expects an nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        condensed = condense_model(model)
        work = copy.deepcopy(condensed) if condensed is model else condensed
    finally:
        model.train(was_training)
    work.eval()
    with torch.no_grad():
        fold_preact_bns(work)
        _fold_bns(work)
        _fold_permutations(work)
        for m in work.modules():
            prepare = getattr(m, "prepare_export", None)
            if callable(prepare):
                prepare()
    work.requires_grad_(False)
    return work.eval()
