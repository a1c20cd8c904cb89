"""Each zero-cost score against a small case computed by hand (closed forms, NumPy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from evaluators.cost import count_macs
from evaluators.zero_cost import SCORES, compute_scores


def _linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4))


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 3, generator=g)
    y = torch.tensor([0, 1, 2, 3, 1])
    return x, y


def _ce_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """dL/dW of the mean cross-entropy of a linear layer: (softmax(XW^T + b) - Y)^T X / N."""
    w = model[0].weight.detach().double().numpy()
    b = model[0].bias.detach().double().numpy()
    xn = x.double().numpy()
    z = xn @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(w.shape[0])[y.numpy()]
    return (p - onehot).T @ xn / len(xn), w


def test_grad_norm_linear_closed_form():
    model = _linear_model()
    x, y = _batch()
    g, _ = _ce_grad(model, x, y)
    assert SCORES["grad_norm"](model, x, y) == pytest.approx(np.sqrt((g ** 2).sum()), rel=1e-5)


def test_snip_linear_closed_form():
    model = _linear_model()
    x, y = _batch()
    g, w = _ce_grad(model, x, y)
    assert SCORES["snip"](model, x, y) == pytest.approx(np.abs(g * w).sum(), rel=1e-5)


def test_synflow_two_layer_closed_form_bn_removed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.fill_(7.0)  # BN would scale the flow; the score must ignore it
    w1 = np.abs(model[0].weight.detach().double().numpy())
    b1 = np.abs(model[0].bias.detach().double().numpy())
    w2 = np.abs(model[3].weight.detach().double().numpy())
    # R = 1^T (|W2| (|W1| 1 + |b1|) + |b2|); sum |W1 dR/dW1| = 1^T|W2||W1|1; sum |W2 dR/dW2| = 1^T|W2|h
    h = w1.sum(1) + b1
    expected = w2.sum(0) @ w1.sum(1) + w2.sum(0) @ h
    x, y = _batch()
    assert SCORES["synflow"](model, x, y) == pytest.approx(expected, rel=1e-12)


def test_synflow_conv_is_homogeneous_and_double_precision():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, bias=False)
    model = nn.Sequential(conv, nn.Flatten())
    x = torch.randn(4, 2, 6, 5)
    # all-ones input, no padding: every output is sum|w_o|, (6-2)*(5-2) positions; R is degree 1
    expected = 4 * 3 * np.abs(conv.weight.detach().double().numpy()).sum()
    assert SCORES["synflow"](model, x, torch.zeros(4, dtype=torch.long)) == pytest.approx(expected, rel=1e-12)


def _hamming_logdet(codes: np.ndarray) -> float:
    n, na = codes.shape
    k = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            k[i, j] = na - sum(int(a != b) for a, b in zip(codes[i], codes[j]))
    return float(np.linalg.slogdet(k)[1])


def test_naswot_two_inputs_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.ReLU())
    x = torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    # codes 101 and 110: N_A = 3, Hamming 2 -> K = [[3, 1], [1, 3]], det 8
    assert SCORES["naswot"](model, x, torch.zeros(2, dtype=torch.long)) == pytest.approx(math.log(8))


def test_naswot_concatenates_every_relu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(), nn.Linear(4, 3), nn.ReLU())
    x = torch.randn(6, 4)
    w, b = model[1].weight.detach().numpy(), model[1].bias.detach().numpy()
    a1 = np.maximum(x.numpy(), 0)
    codes = np.concatenate([x.numpy() > 0, (a1 @ w.T + b) > 0], axis=1).astype(int)
    expected = _hamming_logdet(codes)
    got = SCORES["naswot"](model, x, torch.zeros(6, dtype=torch.long))
    assert got == pytest.approx(expected, rel=1e-9) or (got == -math.inf and expected < -30)


def test_naswot_singular_kernel_is_minus_inf():
    model = nn.Sequential(nn.ReLU())
    x = torch.ones(3, 2)  # identical codes: K is all N_A, rank 1
    assert SCORES["naswot"](model, x, torch.zeros(3, dtype=torch.long)) == -math.inf


def test_scores_leave_the_model_untouched():
    from spaces import build_model, get_backbone

    model = build_model(get_backbone("small", (1, 16, 16), 10, width=0.5))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 1, 16, 16)
    y = torch.arange(8) % 10
    names = tuple(n for n in SCORES if n not in ("params", "macs"))
    scores = compute_scores(model, x, y, names)
    assert set(scores) == set(names) and all(math.isfinite(v) for v in scores.values())
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="unknown zero-cost score"):
        compute_scores(model, x, y, ("zen",))


def test_params_and_macs_use_the_cost_counters():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    x = torch.randn(2, 2, 5, 5)
    y = torch.zeros(2, dtype=torch.long)
    assert SCORES["params"](model, x, y) == 2 * 4 * 9 + 100 * 3 + 3
    assert SCORES["macs"](model, x, y) == 25 * 4 * 2 * 9 + 100 * 3
    assert SCORES["macs"](model, x, y) == count_macs(model, (2, 5, 5))
