"""Zero-cost proxies: ``SCORES[name](model, inputs, targets) -> float``, higher is better.

Each score is computed on one minibatch at initialisation, on a deep copy of the model (the
caller's weights, gradients and mode are untouched). "Weights" below are the parameters with
two or more dimensions (conv and linear kernels, custom ops' kernels included), the tensors the
zero-cost-proxies code (Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS")
restricts these sums to; L is the cross-entropy loss of the minibatch, model in train mode.

- ``grad_norm``: sum over weight tensors of ||dL/dW||_2 (Abdelfattah et al. 2021).
- ``snip``: sum over weights of |dL/dw * w|, the connection sensitivity of SNIP (Lee et al.
  2019, "SNIP: Single-shot network pruning based on connection sensitivity").
- ``synflow``: sum over weights of |w * dR/dw| with R = sum(f_|theta|(1)), the network with
  every parameter replaced by its absolute value, fed an all-ones input of batch 1, in double
  precision (Tanaka et al. 2020, "Pruning neural networks without any data by iteratively
  conserving synaptic flow"). BatchNorm layers are removed (identity), as the zero-cost-proxies
  ``synflow`` measure does (its ``bn=False``), so the score depends on the weights alone.
- ``naswot``: log |K_H| with K_H[i, j] = N_A - d_H(c_i, c_j), c_i the binary pattern of every
  ``nn.ReLU`` unit (1 where the pre-activation is > 0) for input i, N_A the number of units
  (Mellor et al. 2021, "Neural Architecture Search without Training"). ``-inf`` when K_H is
  singular.
- ``params``, ``macs``: parameter and multiply-add counts (``evaluators.cost``), the trivial
  baselines every proxy must beat.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SCORES", "grad_norm", "snip", "synflow", "naswot", "params", "macs", "compute_scores"]

Score = Callable[[nn.Module, Tensor, Tensor], float]


def _copy(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    for p in clone.parameters():
        p.requires_grad_(True)
        p.grad = None
    return clone


def _weights(model: nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.ndim >= 2]


def _loss_backward(model: nn.Module, inputs: Tensor, targets: Tensor) -> list[Tensor]:
    """Weights of ``model`` (a private copy) after one backward pass of the CE loss."""
    model.train()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    loss = F.cross_entropy(model(inputs.to(device)), targets.to(device))
    loss.backward()
    return _weights(model)


def grad_norm(model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
    """Sum of the L2 norms of the loss gradients of every weight tensor."""
    ws = _loss_backward(_copy(model), inputs, targets)
    return float(sum(w.grad.norm(2).item() for w in ws if w.grad is not None))


def snip(model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
    """SNIP saliency: sum over weights of |g * w|."""
    ws = _loss_backward(_copy(model), inputs, targets)
    return float(sum((w.grad * w).abs().sum().item() for w in ws if w.grad is not None))


def _drop_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _drop_batchnorm(child)


def synflow(model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
    """SynFlow: sum over weights of |w * dR/dw|, R = sum of the output of |theta| on ones."""
    net = _copy(model)
    _drop_batchnorm(net)
    net = net.double().eval()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=device)
    net(ones).sum().backward()
    return float(sum((w.grad * w).abs().sum().item() for w in _weights(net) if w.grad is not None))


def naswot(model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
    """NASWOT: log-determinant of the Hamming kernel of ReLU activation patterns."""
    net = _copy(model).train()
    codes: list[Tensor] = []

    def hook(_module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        codes.append((out.detach() > 0).flatten(1).double())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    if not handles:
        raise ValueError("naswot needs nn.ReLU modules in the model; it has none")
    try:
        device = next((p.device for p in net.parameters()), torch.device("cpu"))
        with torch.no_grad():
            net(inputs.to(device))
    finally:
        for h in handles:
            h.remove()
    c = torch.cat(codes, dim=1)
    k = c @ c.T + (1 - c) @ (1 - c).T  # N_A - Hamming distance
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if sign > 0 else -math.inf


def params(model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
    """Parameter count (``evaluators.cost.count_params``)."""
    from evaluators.cost import count_params

    return float(count_params(model))


def macs(model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
    """Multiply-adds of one example (``evaluators.cost.count_macs``)."""
    from evaluators.cost import count_macs

    return float(count_macs(model, tuple(inputs.shape[1:])))


SCORES: dict[str, Score] = {
    "synflow": synflow,
    "snip": snip,
    "grad_norm": grad_norm,
    "naswot": naswot,
    "params": params,
    "macs": macs,
}


def compute_scores(model: nn.Module, inputs: Tensor, targets: Tensor,
                   names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Every score in ``names`` (default: all of ``SCORES``) for one minibatch."""
    names = tuple(SCORES) if names is None else names
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise ValueError(f"unknown zero-cost score(s) {unknown}; known: {', '.join(SCORES)}")
    return {n: SCORES[n](model, inputs, targets) for n in names}
