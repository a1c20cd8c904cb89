"""Parameter and multiply-add counts of a module, the figures the grouping papers report.

``count_macs`` counts multiply-adds (what the papers call FLOPs) for one input of shape
(C, H, W) at batch 1, from forward hooks:

- a module that defines ``cost_params(self) -> int`` and ``cost_macs(self, x, y) -> int``
  (``x``/``y`` the input and output tensor of one forward) is counted by those and its children
  are not visited: a masked or relaxed op reports its condensed figures, an op whose fast form
  keeps structural zeros (HetConv) reports only the real entries;
- otherwise every convolution counts (output elements) * (C_in / groups) * prod(kernel)
  (transposed: input elements * (C_out / groups) * prod(kernel)) and every ``nn.Linear``
  (output elements / out_features) * in_features * out_features. Bias adds, norms, activations
  and pooling count nothing, as in the papers and in ``torch.utils.flop_counter`` (whose
  "flops" are 2 * MACs on plain conv nets).

``count_params`` is every parameter (BN included) of modules not inside an overriding module,
plus each overriding module's ``cost_params()``; a parameter shared by several modules counts
once.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn

__all__ = ["count_params", "count_macs", "overrides_cost"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class ReportsCost(Protocol):
    """A module that counts its own cost (an op whose arithmetic torch's modules do not show)."""

    def cost_params(self) -> int: ...

    def cost_macs(self, x: Tensor, y: Tensor) -> int: ...


def overrides_cost(module: nn.Module) -> bool:
    """Whether ``module`` reports its own cost (``cost_params`` and ``cost_macs``)."""
    return callable(getattr(module, "cost_params", None)) and callable(getattr(module, "cost_macs", None))


def _counted_modules(module: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """(overriding modules, plain modules) reachable without entering an overriding module."""
    overriding: list[nn.Module] = []
    plain: list[nn.Module] = []
    seen: set[int] = set()
    stack = [module]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        if overrides_cost(m):
            overriding.append(m)
        else:
            plain.append(m)
            stack.extend(reversed(list(m.children())))
    return overriding, plain


def count_params(module: nn.Module) -> int:
    """Number of parameters, with overriding modules counted by their ``cost_params()``."""
    overriding, plain = _counted_modules(module)
    total = sum(int(cast(ReportsCost, m).cost_params()) for m in overriding)
    seen: set[int] = set()
    for m in plain:
        for p in m.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def _macs_of(m: nn.Module, x: Tensor, y: Tensor) -> int:
    if overrides_cost(m):
        return int(cast(ReportsCost, m).cost_macs(x, y))
    if isinstance(m, _CONV):
        k = 1
        for s in m.kernel_size:
            k *= s
        return y.numel() * (m.in_channels // m.groups) * k
    if isinstance(m, _CONV_T):
        k = 1
        for s in m.kernel_size:
            k *= s
        return x.numel() * (m.out_channels // m.groups) * k
    if isinstance(m, nn.Linear):
        return y.numel() * m.in_features
    return 0


def count_macs(module: nn.Module, input_shape: tuple[int, ...] | list[int]) -> int:
    """Multiply-adds of one forward of ``module`` on a batch-1 input of shape ``input_shape``.

    The module runs once on zeros in eval mode under ``torch.no_grad``; its train/eval flags are
    restored afterwards. A module called twice in a forward counts twice.
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be positive sizes (C, H, W), got {input_shape!r}")
    overriding, plain = _counted_modules(module)
    targets = overriding + [m for m in plain if isinstance(m, _CONV + _CONV_T + (nn.Linear,))]
    total = [0]

    def hook(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        total[0] += _macs_of(m, inputs[0], output)

    handles = [m.register_forward_hook(hook) for m in targets]
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        with torch.no_grad():
            module(torch.zeros((1, *shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return total[0]
