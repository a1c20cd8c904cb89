"""Operator families: paper cost formulas, numerical references built another way, clear errors."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from evaluators.cost import count_macs, count_params
from spaces import OpConfigError, make_op, validate_op

torch.set_num_threads(1)


def out_size(h: int, s: int) -> int:
    """Same padding, odd kernel: ceil(h / s)."""
    return -(-h // s)


def cost(op, cin, cout, k, s, h, **params):
    m = make_op(op, cin, cout, k, s, **params)
    return m, count_params(m), count_macs(m, (cin, h, h))


def normal_(m: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    return m


def both_formats(x: torch.Tensor) -> list[torch.Tensor]:
    return [x, x.contiguous(memory_format=torch.channels_last)]


SHAPES = [(16, 16, 3, 1, 8), (24, 48, 3, 2, 9), (32, 16, 5, 1, 7), (16, 32, 1, 2, 6)]


# ---------------------------------------------------------------- paper formulas
@pytest.mark.parametrize("cin, cout, k, s, h", SHAPES)
@pytest.mark.parametrize("g", [1, 2, 4, 8])
@pytest.mark.parametrize("shuffle", [False, True])
def test_group_cost(cin, cout, k, s, h, g, shuffle):
    _, params, macs = cost("group", cin, cout, k, s, h, groups=g, shuffle=shuffle)
    per_pixel = g * (cout // g) * (cin // g) * k * k  # g independent dense convs
    assert params == per_pixel
    assert macs == per_pixel * out_size(h, s) ** 2


@pytest.mark.parametrize("cin, cout, k, s, h", SHAPES)
@pytest.mark.parametrize("linear", [False, True])
def test_dwsep_cost(cin, cout, k, s, h, linear):
    _, params, macs = cost("dwsep", cin, cout, k, s, h, linear=linear)
    # MobileNet Table 1 / Sec. 3.1: D_K^2 M + M N per pixel; the inner BN (paper form) adds 2 M params
    assert params == cin * k * k + cin * cout + (0 if linear else 2 * cin)
    assert macs == (cin * k * k + cin * cout) * out_size(h, s) ** 2


@pytest.mark.parametrize("cin, L, M, k, s, h", [
    (16, 4, 4, 3, 1, 8), (32, 4, 8, 3, 2, 9), (12, 1, 12, 3, 1, 5), (12, 12, 1, 3, 1, 5),
    (8, 2, 8, 5, 1, 6), (24, 3, 4, 3, 2, 7),
])
def test_igc_cost(cin, L, M, k, s, h):
    cout = L * M
    _, params, macs = cost("igc", cin, cout, k, s, h, L=L, M=M)
    # primary: L groups, M filters each over cin/L channels (KxK); secondary: M groups, L filters of L
    expected = L * M * (cin // L) * k * k + M * L * L
    if cin == cout:  # the paper's T = G (M S + L), G = L M, S = K^2
        assert expected == cout * (M * k * k + L)
    assert params == expected
    assert macs == expected * out_size(h, s) ** 2


@pytest.mark.parametrize("cin, cout, k, s, h", SHAPES)
@pytest.mark.parametrize("P", [1, 2, 4, 8])
def test_hetconv_cost(cin, cout, k, s, h, P):
    _, params, macs = cost("hetconv", cin, cout, k, s, h, P=P)
    expected = Fraction(cout * cin) * (Fraction(k * k, P) + 1 - Fraction(1, P))
    assert expected.denominator == 1
    assert params == expected
    assert macs == expected * out_size(h, s) ** 2
    if P > 1 and k > 1:
        assert params < cout * cin * k * k


@pytest.mark.parametrize("cin, cout, k, s, h", [(16, 16, 3, 1, 8), (8, 24, 5, 2, 9), (24, 8, 7, 1, 10)])
@pytest.mark.parametrize("linear", [False, True])
def test_decomp_cost(cin, cout, k, s, h, linear):
    ho = out_size(h, s)
    bn = 0 if linear else 2 * cout  # one inner BN (C_out channels) between two factors
    _, params, macs = cost("decomp", cin, cout, k, s, h, mode="asym", linear=linear)
    assert params == k * cin * cout + k * cout * cout + bn
    # Kx1 runs on H' rows x full width, 1xK on H' x W'
    assert macs == k * cin * cout * ho * h + k * cout * cout * ho * ho
    _, params, macs = cost("decomp", cin, cout, k, s, h, mode="stack", linear=linear)
    n = (k - 1) // 2
    convs = 9 * cin * cout + 9 * cout * cout * (n - 1)
    assert params == convs + bn * (n - 1)
    assert macs == convs * ho * ho


@pytest.mark.parametrize("cin, cout, s, h", [(16, 16, 1, 8), (16, 30, 2, 9), (8, 5, 1, 6)])
@pytest.mark.parametrize("pool_branch", [True, False])
@pytest.mark.parametrize("reduction, linear", [(2, False), (3, True), (0, False), (0, True)])
def test_inception_cost(cin, cout, s, h, pool_branch, reduction, linear):
    m, params, macs = cost("inception", cin, cout, 3, s, h, pool_branch=pool_branch, reduction=reduction,
                           linear=linear)
    n = 4 if pool_branch else 3
    b = [cout // n] * n
    for i in range(cout - sum(b)):
        b[i] += 1
    b += [0] * (4 - n)
    ho = out_size(h, s)
    # GoogLeNet Fig. 2b: 1x1 reductions (stride 1, at H x W) before the 3x3 and the 5x5 (two 3x3)
    r3, r5 = (max(1, b[1] // reduction), max(1, b[2] // reduction)) if reduction else (cin, cin)
    reduce = cin * (r3 + r5) if reduction else 0
    rest = cin * b[0] + 9 * r3 * b[1] + 9 * r5 * b[2] + 9 * b[2] * b[2] + cin * b[3]
    inner_bns = 0 if linear else 2 * ((r3 + r5 if reduction else 0) + b[2])
    assert params == reduce + rest + inner_bns
    assert macs == reduce * h * h + rest * ho * ho
    y = m(torch.randn(1, cin, h, h))
    assert y.shape == (1, cout, ho, ho)


@pytest.mark.parametrize("cin, cout, k, s, h, r, g", [
    (16, 32, 3, 1, 8, 4, 1), (32, 32, 3, 2, 9, 2, 4), (8, 64, 5, 1, 6, 4, 16), (64, 16, 3, 2, 8, 1, 1),
])
@pytest.mark.parametrize("linear", [False, True])
def test_bottleneck_cost(cin, cout, k, s, h, r, g, linear):
    _, params, macs = cost("bottleneck", cin, cout, k, s, h, reduction=r, groups=g, linear=linear)
    m_ = cout // r
    assert params == cin * m_ + m_ * m_ * k * k // g + m_ * cout + (0 if linear else 4 * m_)  # 2 inner BNs
    assert macs == h * h * cin * m_ + out_size(h, s) ** 2 * (m_ * m_ * k * k // g + m_ * cout)


# ---------------------------------------------------------------- numerical references
def test_group_one_equals_dense():
    torch.manual_seed(0)
    g = normal_(make_op("group", 12, 20, 3, 2, groups=1))
    dense = make_op("conv", 12, 20, 3, 2)
    with torch.no_grad():
        dense.conv.weight.copy_(g.conv.weight)
    for x in both_formats(torch.randn(2, 12, 9, 9)):
        torch.testing.assert_close(g(x), dense(x))


def test_group_shuffle_is_a_transpose_of_the_group_output():
    torch.manual_seed(0)
    op = normal_(make_op("group", 12, 12, 3, 1, groups=3, shuffle=True))
    x = torch.randn(2, 12, 6, 6)
    plain = F.conv2d(x, op.conv.weight, None, 1, 1, 1, 3)
    # ShuffleNet: output channel j*g + i comes from group i, channel j of that group
    expected = torch.stack([plain[:, i * 4 + j] for j in range(4) for i in range(3)], 1)
    for xx in both_formats(x):
        torch.testing.assert_close(op(xx), expected)


def random_stats_(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every BN inside ``m`` with random running statistics; ``m`` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in m.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
                bn.running_var.copy_(0.2 + torch.rand(bn.num_features, generator=g))
    return m.eval()


def inner_bns(m: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]


def bn_relu(y: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    """The functional eval-mode BN + ReLU, from the module's tensors."""
    return F.relu(F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))


def test_dwsep_paper_form_is_mobilenets_sequence():
    """MobileNet Fig. 3: 3x3 depthwise -> BN -> ReLU -> 1x1 (the layer adds the second BN + ReLU)."""
    torch.manual_seed(0)
    op = random_stats_(normal_(make_op("dwsep", 6, 10, 3, 2)))
    ref = torch.nn.Sequential(torch.nn.Conv2d(6, 6, 3, 2, 1, groups=6, bias=False), torch.nn.BatchNorm2d(6),
                              torch.nn.ReLU(), torch.nn.Conv2d(6, 10, 1, bias=False)).eval()
    (bn,) = inner_bns(op)
    with torch.no_grad():
        ref[0].weight.copy_(op.depthwise.weight)
        ref[3].weight.copy_(op.pointwise.weight)
        ref[1].load_state_dict(bn.state_dict())
    x = torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        for xx in both_formats(x):
            torch.testing.assert_close(op(xx), ref(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(op(x), op.pointwise(op.depthwise(x)), atol=1e-3)  # the BN + ReLU act


def test_dwsep_linear_equals_depthwise_then_pointwise_dense_weight():
    torch.manual_seed(0)
    op = normal_(make_op("dwsep", 6, 10, 3, 1, linear=True))
    assert not inner_bns(op)
    dw, pw = op.depthwise.weight, op.pointwise.weight[:, :, 0, 0]
    w = pw[:, :, None, None] * dw[None, :, 0]  # W[o,i] = pw[o,i] * dw[i]
    x = torch.randn(1, 6, 7, 7)
    torch.testing.assert_close(op(x), F.conv2d(x, w, None, 1, 1), rtol=1e-4, atol=1e-4)


def igc_dense_weight(op, cin: int, cout: int, L: int, M: int, k: int) -> torch.Tensor:
    """Dense KxK weight = P_back @ W2 (block diagonal) @ P_interleave @ W1 (block diagonal)."""
    w1, w2 = op.primary.weight, op.secondary.weight[:, :, 0, 0]
    b1 = torch.zeros(L * M, cin, k, k)
    for l in range(L):
        b1[l * M:(l + 1) * M, l * (cin // L):(l + 1) * (cin // L)] = w1[l * M:(l + 1) * M]
    j = cout // M
    b2 = torch.zeros(cout, L * M)
    for m in range(M):
        b2[m * j:(m + 1) * j, m * L:(m + 1) * L] = w2[m * j:(m + 1) * j]
    interleave = torch.zeros(L * M, L * M)  # secondary slot m*L + l <- primary channel l*M + m
    for l in range(L):
        for m in range(M):
            interleave[m * L + l, l * M + m] = 1
    back = torch.zeros(cout, cout)  # output channel i*M + m <- secondary group m's i-th output
    for m in range(M):
        for i in range(j):
            back[i * M + m, m * j + i] = 1
    return torch.einsum("oc,cikl->oikl", back @ b2 @ interleave, b1)


@pytest.mark.parametrize("cin, L, M, s", [(8, 2, 4, 1), (12, 4, 2, 2), (6, 1, 6, 1), (6, 6, 1, 1), (4, 2, 3, 1)])
def test_igc_equals_dense_product_of_its_sparse_kernels(cin, L, M, s):
    torch.manual_seed(0)
    cout = L * M
    op = normal_(make_op("igc", cin, cout, 3, s, L=L, M=M))
    w = igc_dense_weight(op, cin, cout, L, M, 3)
    x = torch.randn(2, cin, 7, 7)
    with torch.no_grad():
        for xx in both_formats(x):
            torch.testing.assert_close(op(xx), F.conv2d(x, w, None, s, 1), rtol=1e-4, atol=1e-4)


def test_igc_degenerate_cases():
    torch.manual_seed(0)
    x = torch.randn(1, 6, 5, 5)
    # L = 1: a dense KxK conv, then a per-channel scale (M groups of one channel)
    op = normal_(make_op("igc", 6, 6, 3, 1, L=1, M=6))
    ref = F.conv2d(x, op.primary.weight, None, 1, 1) * op.secondary.weight.view(1, 6, 1, 1)
    torch.testing.assert_close(op(x), ref, rtol=1e-4, atol=1e-4)
    # M = 1: depthwise KxK then a dense 1x1 (Xception-like)
    op = normal_(make_op("igc", 6, 6, 3, 1, L=6, M=1))
    ref = F.conv2d(F.conv2d(x, op.primary.weight, None, 1, 1, 1, 6), op.secondary.weight)
    torch.testing.assert_close(op(x), ref, rtol=1e-4, atol=1e-4)


def hetconv_masked_dense(op, cin: int, cout: int, k: int, P: int) -> torch.Tensor:
    """The masked dense conv of the paper: filter j has KxK kernels where (c - j) % P == 0."""
    mask_kxk = torch.tensor([[(c - j) % P == 0 for c in range(cin)] for j in range(cout)])
    assert int(mask_kxk.sum()) == cout * cin // P
    w = torch.zeros(cout, cin, k, k)
    for j in range(cout):
        kxk_channels = [c for c in range(cin) if mask_kxk[j, c]]
        for a, c in enumerate(kxk_channels):
            w[j, c] = op.kxk.weight[j, a]
        for c in range(cin):
            if not mask_kxk[j, c]:
                w[j, c, k // 2, k // 2] = op.pw.weight[j, c, 0, 0]
    return w


@pytest.mark.parametrize("cin, cout, k, s, P", [(8, 12, 3, 1, 4), (16, 8, 3, 2, 2), (6, 6, 5, 1, 3),
                                               (8, 8, 1, 2, 8), (16, 16, 3, 1, 16)])
def test_hetconv_equals_masked_dense_conv(cin, cout, k, s, P):
    torch.manual_seed(0)
    op = normal_(make_op("hetconv", cin, cout, k, s, P=P))
    w = hetconv_masked_dense(op, cin, cout, k, P)
    x = torch.randn(2, cin, 9, 9)
    with torch.no_grad():
        for xx in both_formats(x):
            y = op(xx)
            torch.testing.assert_close(y, F.conv2d(x, w, None, s, k // 2), rtol=1e-4, atol=1e-4)
            assert y.is_contiguous(memory_format=torch.channels_last) == (xx is not x)


def test_hetconv_p1_is_dense_and_unused_entries_get_no_gradient():
    torch.manual_seed(0)
    op = normal_(make_op("hetconv", 4, 4, 3, 1, P=1))
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(op(x), F.conv2d(x, op.kxk.weight, None, 1, 1))
    op = normal_(make_op("hetconv", 8, 8, 3, 1, P=4))
    op(torch.randn(2, 8, 6, 6)).square().sum().backward()
    grad = op.pw.weight.grad[:, :, 0, 0]
    for j in range(8):
        for c in range(8):
            assert (grad[j, c] == 0) == ((c - j) % 4 == 0)


@pytest.mark.parametrize("k, s", [(3, 1), (5, 2), (7, 1)])
def test_asym_paper_form_is_kx1_bn_relu_1xk(k, s):
    """Inception v3 Sec. 3.1-3.2: K x 1, BN + ReLU, 1 x K; the stride split over the two."""
    torch.manual_seed(0)
    op = random_stats_(normal_(make_op("decomp", 6, 8, k, s, mode="asym")))
    a, b = op.factors
    (bn,) = inner_bns(op)
    x = torch.randn(2, 6, 11, 11)
    with torch.no_grad():
        y = F.conv2d(x, a.weight, None, (s, 1), (k // 2, 0))
        ref = F.conv2d(bn_relu(y, bn), b.weight, None, (1, s), (0, k // 2))
        torch.testing.assert_close(op(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k, s", [(3, 1), (5, 2), (7, 1)])
def test_asym_linear_equals_dense_outer_product_kernel(k, s):
    torch.manual_seed(0)
    op = normal_(make_op("decomp", 6, 8, k, s, mode="asym", linear=True))
    a = op.factors[0].weight[:, :, :, 0]  # (mid, in, K) vertical
    b = op.factors[1].weight[:, :, 0, :]  # (out, mid, K) horizontal
    w = torch.einsum("omv,miu->oiuv", b, a)  # sum over mid of outer products
    x = torch.randn(2, 6, 11, 11)
    with torch.no_grad():
        torch.testing.assert_close(op(x), F.conv2d(x, w, None, s, k // 2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_stack_matches_composed_kernel_inside_and_shape(k):
    torch.manual_seed(0)
    op = normal_(make_op("decomp", 4, 6, k, 1, mode="stack", linear=True))
    n = (k - 1) // 2
    assert len(op.factors) == n and all(c.kernel_size == (3, 3) for c in op.factors)
    # compose the 3x3 kernels into one KxK kernel: W[t] = sum_{a+b=t} B[b] A[a]
    w = op.factors[0].weight
    for conv in op.factors[1:]:
        b, size = conv.weight, w.shape[-1] + 2
        nw = torch.zeros(b.shape[0], w.shape[1], size, size)
        for u in range(3):
            for v in range(3):
                nw[:, :, u:u + w.shape[-1], v:v + w.shape[-1]] += torch.einsum("om,mipq->oipq", b[:, :, u, v], w)
        w = nw
    assert w.shape[-1] == k
    x = torch.randn(1, 4, 12, 12)
    with torch.no_grad():
        y, ref = op(x), F.conv2d(x, w, None, 1, k // 2)
    assert y.shape == ref.shape
    e = n - 1  # the stacked convs zero-pad in between, so only the interior matches
    torch.testing.assert_close(y[..., e:12 - e, e:12 - e], ref[..., e:12 - e, e:12 - e], rtol=1e-3, atol=1e-3)
    y2 = make_op("decomp", 4, 6, k, 2, mode="stack")(x)
    assert y2.shape == (1, 6, 6, 6)


@pytest.mark.parametrize("k", [5, 7])
def test_stack_paper_form_has_bn_relu_between_the_3x3s(k):
    """VGG / Inception v3 Sec. 3.1: every 3x3 of the stack but the last is followed by BN + ReLU."""
    torch.manual_seed(0)
    op = random_stats_(normal_(make_op("decomp", 4, 6, k, 2, mode="stack")))
    bns = inner_bns(op)
    assert len(bns) == len(op.factors) - 1 == (k - 1) // 2 - 1
    x = torch.randn(2, 4, 12, 12)
    with torch.no_grad():
        y = F.conv2d(x, op.factors[0].weight, None, 2, 1)
        for conv, bn in zip(op.factors[1:], bns):
            y = F.conv2d(bn_relu(y, bn), conv.weight, None, 1, 1)
        torch.testing.assert_close(op(x), y, rtol=1e-5, atol=1e-5)


def test_inception_branches_in_order():
    """GoogLeNet Fig. 2b / Inception v3 Fig. 5: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | pool -> 1x1,
    BN + ReLU after every conv but each branch's last, computed here with functional ops."""
    torch.manual_seed(0)
    op = random_stats_(normal_(make_op("inception", 8, 13, 3, 2)))
    b = op.widths
    assert b == [4, 3, 3, 3]
    conv = lambda m: [c for c in m if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    bn = lambda m: [c for c in m if isinstance(c, torch.nn.BatchNorm2d)]  # noqa: E731
    (w1,), (r3, w3), (r5, w5a, w5b), (wp,) = (conv(op.b1), conv(op.b3), conv(op.b5), conv(op.pool))
    assert [r3.out_channels, r5.out_channels] == [1, 1]  # b // 2 = 1 (reduction 2)
    (n3,), (n5, n5b) = bn(op.b3), bn(op.b5)
    x = torch.randn(1, 8, 9, 9)
    with torch.no_grad():
        y = op(x)
        torch.testing.assert_close(y[:, :4], F.conv2d(x, w1.weight, None, 2))
        t = bn_relu(F.conv2d(x, r3.weight), n3)
        torch.testing.assert_close(y[:, 4:7], F.conv2d(t, w3.weight, None, 2, 1))
        t = bn_relu(F.conv2d(bn_relu(F.conv2d(x, r5.weight), n5), w5a.weight, None, 2, 1), n5b)
        torch.testing.assert_close(y[:, 7:10], F.conv2d(t, w5b.weight, None, 1, 1))
        pooled = F.avg_pool2d(x, 3, 2, 1)
        torch.testing.assert_close(y[:, 10:], F.conv2d(pooled, wp.weight))


def test_inception_without_reductions_and_linear_is_the_mixed_kernel_conv():
    """``reduction=0, linear=True``: 1x1 | 3x3 | 3x3 -> 3x3 | pool -> 1x1, a linear op."""
    torch.manual_seed(0)
    op = normal_(make_op("inception", 8, 8, 3, 1, reduction=0, linear=True))
    assert not inner_bns(op) and [len(op.b1), len(op.b3), len(op.b5), len(op.pool)] == [1, 1, 2, 2]
    x, z = torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(op(2 * x - z), 2 * op(x) - op(z), rtol=1e-4, atol=1e-4)


def test_bottleneck_paper_form_is_resnets_sequence():
    """ResNet Fig. 5 (BN after every conv, Sec. 3.4): 1x1 -> BN/ReLU -> 3x3 (groups) -> BN/ReLU -> 1x1."""
    torch.manual_seed(0)
    op = random_stats_(normal_(make_op("bottleneck", 8, 16, 3, 2, reduction=2, groups=2)))
    (a, b, c), (n1, n2) = op.convs, inner_bns(op)
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        y = bn_relu(F.conv2d(x, a.weight), n1)
        y = bn_relu(F.conv2d(y, b.weight, None, 2, 1, 1, 2), n2)
        torch.testing.assert_close(op(x), F.conv2d(y, c.weight), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("op, cin, cout, params, field, needle", [
    ("group", 12, 16, {"groups": 8}, "groups", "groups that divide both"),
    ("group", 16, 12, {"groups": 0}, "groups", ">= 1"),
    ("igc", 16, 16, {"L": 4, "M": 8}, "M", "must equal out_channels=16"),
    ("igc", 12, 16, {"L": 8, "M": 2}, "L", "L=4 M=4"),
    ("igc", 16, 16, {"L": 4}, "M", "needs both"),
    ("hetconv", 12, 16, {"P": 8}, "P", "does not divide in_channels=12"),
    ("hetconv", 16, 12, {"P": 8}, "P", "does not divide out_channels=12"),
    ("hetconv", 16, 16, {}, "P", "needs its part P"),
    ("decomp", 8, 8, {"mode": "svd"}, "mode", "asym, stack"),
    ("decomp", 8, 8, {}, "mode", "asym, stack"),
    ("inception", 8, 3, {}, "out_channels", "at least 4"),
    ("inception", 8, 2, {"pool_branch": False}, "out_channels", "at least 3"),
    ("inception", 8, 8, {"reduction": -1}, "reduction", "0: no 1x1 reductions"),
    ("dwsep", 8, 8, {"linear": 1}, "linear", "expects bool"),
    ("bottleneck", 8, 30, {"reduction": 4}, "reduction", "does not divide out_channels=30"),
    ("bottleneck", 8, 32, {"reduction": 4, "groups": 3}, "groups", "reduced width 32/4=8"),
])
def test_impossible_configs_are_clear_errors(op, cin, cout, params, field, needle):
    with pytest.raises(OpConfigError) as err:
        validate_op(op, cin, cout, 3, 1, **params)
    assert err.value.field == field and needle in str(err.value)
    with pytest.raises(OpConfigError):
        make_op(op, cin, cout, 3, 1, **params)


def test_decomp_and_inception_reject_kernels_they_cannot_build():
    with pytest.raises(OpConfigError, match="kernel_size"):
        make_op("decomp", 8, 8, 1, 1, mode="stack")
    with pytest.raises(OpConfigError, match="kernel_size must be 3"):
        make_op("inception", 8, 8, 5, 1)


# ---------------------------------------------------------------- properties
widths = st.sampled_from([4, 8, 12, 16, 24])


@settings(max_examples=30, deadline=None)
@given(cin=widths, cout=widths, g=st.sampled_from([1, 2, 4]), P=st.sampled_from([1, 2, 4]),
       k=st.sampled_from([1, 3, 5]), s=st.sampled_from([1, 2]), h=st.integers(3, 9))
def test_valid_shapes_give_right_output_and_cost(cin, cout, g, P, k, s, h):
    x = torch.randn(1, cin, h, h)
    ho = out_size(h, s)
    m = make_op("group", cin, cout, k, s, groups=g)
    assert m(x).shape == (1, cout, ho, ho) and count_macs(m, (cin, h, h)) == ho * ho * cout * cin * k * k // g
    m = make_op("hetconv", cin, cout, k, s, P=P)
    assert m(x).shape == (1, cout, ho, ho)
    assert count_params(m) * P == cout * cin * (k * k + P - 1)
    L = g
    if cin % L == 0:
        m = make_op("igc", cin, cout, k, s, L=L, M=cout // L)
        assert m(x).shape == (1, cout, ho, ho)
        assert count_params(m) == cout * (cin // L) * k * k + cout * L


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace; the ONNX exporter still traces
@pytest.mark.parametrize("op, params", [("hetconv", {"P": 4}), ("igc", {"L": 4, "M": 4}),
                                        ("group", {"groups": 4, "shuffle": True})])
def test_traced_graph_uses_only_exportable_ops(op, params):
    m = make_op(op, 16, 16, 3, 2, **params).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        traced = torch.jit.trace(m, (x,))
        graph = str(traced.graph)
        assert "mkldnn" not in graph and "channel_shuffle" not in graph
        torch.testing.assert_close(traced(x), m(x))


def test_hetconv_inference_cache_follows_weight_updates():
    op = normal_(make_op("hetconv", 8, 8, 3, 1, P=2)).eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.inference_mode():
        before = op(x)
    with torch.no_grad():
        op.kxk.weight.mul_(2)
        op.pw.weight.mul_(2)
    with torch.inference_mode():
        torch.testing.assert_close(op(x), 2 * before)


# ---------------------------------------------------------------- inference forms (issue 16)
FOLD_CASES = [
    ("conv", {}), ("group", {"groups": 4}), ("group", {"groups": 4, "shuffle": True}), ("dwsep", {}),
    ("dwsep", {"linear": True}), ("decomp", {"mode": "asym", "linear": True}),
    ("inception", {"reduction": 0, "linear": True}), ("bottleneck", {"reduction": 4, "linear": True}),
    ("igc", {"L": 4, "M": 4}), ("igc", {"L": 1, "M": 16}), ("igc", {"L": 16, "M": 1}),
    ("hetconv", {"P": 1}), ("hetconv", {"P": 4}), ("decomp", {"mode": "asym"}), ("decomp", {"mode": "stack"}),
    ("inception", {}), ("inception", {"pool_branch": False}), ("bottleneck", {"reduction": 4, "groups": 2}),
    ("condense", {"groups": 4, "condense_factor": 4}), ("flgc", {"groups": 4}), ("dgc", {"groups": 4}),
]


def random_bn(c: int, seed: int = 0) -> torch.nn.BatchNorm2d:
    """An eval-mode BN with non-trivial statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    bn = torch.nn.BatchNorm2d(c).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(0.2 + torch.rand(c, generator=g))
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
    return bn


@pytest.mark.parametrize("op, params", FOLD_CASES)
@pytest.mark.parametrize("s", [1, 2])
def test_fold_bn_equals_bn_after_op(op, params, s):
    """``op.fold_bn(bn)(x) == bn(op(x))`` (learned ops: of the condensed op), both formats; the
    op's inner BNs (dwsep, decomp, inception, bottleneck) with random statistics too."""
    k = 5 if op == "decomp" else 3
    m = random_stats_(normal_(make_op(op, 16, 16, k, s, **params)), seed=1)
    with torch.no_grad():  # unit gain per conv, so that float32 rounding stays far below the tolerance
        for c in m.modules():
            if isinstance(c, torch.nn.Conv2d):
                c.weight.div_(c.weight[0].numel() ** 0.5)
    if hasattr(m, "schedule"):
        m.schedule(1.0)  # the learned op's final grouping, so condense() is exact
    bn = random_bn(16)
    folded = m.fold_bn(bn)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in folded.modules())
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        ref = bn(m(x))
        for fmt in (torch.contiguous_format, torch.channels_last):
            folded = folded.to(memory_format=fmt)
            for batch in (x[:1], x):
                out = folded(batch.contiguous(memory_format=fmt))
                torch.testing.assert_close(out, ref[: len(batch)], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("op, params", FOLD_CASES)
def test_every_op_builds_and_runs_inside_inference_mode(op, params):
    """Serving code builds and runs nets under torch.inference_mode (issue 15)."""
    k = 5 if op == "decomp" else 3
    with torch.inference_mode():
        m = make_op(op, 16, 16, k, 1, **params).eval()
        x = torch.randn(1, 16, 6, 6)
        for xf in both_formats(x):
            y = m(xf)
            y2 = m(xf)  # a second call (cached weights) gives the same
            assert y.shape == (1, 16, 6, 6) and torch.equal(y, y2)
        if hasattr(m, "condense"):
            torch.testing.assert_close(m.condense()(x).shape, y.shape)
        folded = m.fold_bn(random_bn(16))
        assert folded(x).shape == (1, 16, 6, 6)
