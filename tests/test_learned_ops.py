"""Learned-grouping ops (CondenseNet, FLGC, DGC): condensed == trained, masks, costs, training hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from evaluators.cost import count_macs, count_params
from spaces import Arch, ArchError, LayerSpec, LearnedOp, OpConfigError, build_model, condense_model, make_op
from spaces.backbones import get_backbone
from spaces.ops.condense import IndexedGroupConv
from spaces.ops.flgc import balanced_assignment

SHAPES = [(32, 64, 3, 2), (64, 64, 1, 1), (16, 32, 5, 1), (64, 32, 3, 1)]


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(old)


def _macs_by_flop_counter(module: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


def _check_inference_cost(op: LearnedOp, x: torch.Tensor, in_per_filter: int) -> None:
    """The op's reported cost == closed form == what the condensed module really holds/does."""
    cout, k = op.out_channels, op.kernel_size
    y = op(x)
    params = cout * in_per_filter * k * k
    macs = y.shape[2] * y.shape[3] * params
    assert op.cost_params() == params
    assert op.cost_macs(x[:1], y[:1]) == macs
    dense = op.condense()
    assert sum(p.numel() for p in dense.parameters()) == params
    assert _macs_by_flop_counter(dense, x[:1]) == macs
    shape = tuple(x.shape[1:])
    assert count_params(op) == params and count_macs(op, shape) == macs
    assert count_params(dense) == params and count_macs(dense, shape) == macs


# ----------------------------------------------------------------------------- CondenseNet
@pytest.mark.parametrize("cin, cout, k, s", SHAPES)
@pytest.mark.parametrize("groups, factor", [(4, 4), (2, 4), (4, 2), (8, 8)])
def test_condense_condensed_equals_masked_after_schedule(cin, cout, k, s, groups, factor):
    if cout % groups or cin % factor:
        pytest.skip("shape not allowed")
    op = make_op("condense", cin, cout, k, s, groups=groups, condense_factor=factor)
    for e in range(1, 11):
        op.schedule(e / 10)
    assert int(op.stage) == factor - 1
    assert (op.mask.sum(1) == cin // factor).all()  # every group keeps C_in / C inputs
    x = torch.randn(3, cin, 9, 9)
    dense = op.condense()
    assert isinstance(dense, IndexedGroupConv) and dense.conv.groups == groups
    assert torch.allclose(dense(x), op(x), atol=1e-5)
    # the masked module is a dense conv of the masked weight, computed here by hand
    full = torch.stack([op.mask[f % groups] for f in range(cout)])
    ref = F.conv2d(x, op.weight * full[:, :, None, None], stride=s, padding=k // 2)
    assert torch.allclose(op(x), ref, atol=1e-6)


@pytest.mark.parametrize("factor, fires", [(4, {1 / 6: 1, 2 / 6: 2, 0.5: 3, 1.0: 3}),
                                           (2, {0.4: 0, 0.5: 1, 1.0: 1}), (3, {0.24: 0, 0.25: 1, 0.5: 2})])
def test_condense_stages_in_first_half(factor, fires):
    for progress, stage in fires.items():
        op = make_op("condense", 12, 8, 1, groups=2, condense_factor=factor)
        op.schedule(progress)
        assert int(op.stage) == stage, progress
        assert (op.mask.sum(1) == 12 - stage * 12 // factor).all()


def test_condense_drops_the_smallest_l1_columns_of_each_group():
    op = make_op("condense", 8, 6, 3, groups=3, condense_factor=4)
    w = op.weight.detach().clone()
    op.schedule(1 / 6)  # one stage: each group drops 8 / 4 = 2 inputs
    for g in range(3):
        filters = [f for f in range(6) if f % 3 == g]
        norms = [sum(float(w[f, j].abs().sum()) for f in filters) for j in range(8)]
        expect_dropped = sorted(range(8), key=lambda j: norms[j])[:2]
        assert sorted(j for j in range(8) if op.mask[g, j] == 0) == sorted(expect_dropped)


def test_condense_group_lasso_matches_paper_formula():
    op = make_op("condense", 8, 6, 3, groups=3, condense_factor=2)
    op.schedule(0.5)
    w = op.weight.detach()
    expected = 0.0
    for g in range(3):
        for j in range(8):
            if op.mask[g, j]:
                expected += math.sqrt(sum(float(w[f, j].pow(2).sum()) for f in range(6) if f % 3 == g))
    reg = op.regularizer()
    assert reg is not None and reg.item() == pytest.approx(op.lasso_lambda * expected, rel=1e-5)
    reg.backward()
    assert op.weight.grad is not None and op.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("cin, cout, k, s", SHAPES)
def test_condense_cost_is_condensed_closed_form_even_before_condensing(cin, cout, k, s):
    op = make_op("condense", cin, cout, k, s, groups=4, condense_factor=4)
    # before any stage: already the figures of the network it condenses to (out * in / C * K^2)
    _check_inference_cost(op, torch.randn(2, cin, 8, 8), cin // 4)


def test_condense_learned_1x1_params_out_in_over_c():
    op = make_op("condense", 128, 64, 1, groups=4, condense_factor=4)
    assert op.cost_params() == 64 * 128 // 4


# ----------------------------------------------------------------------------- FLGC
@pytest.mark.parametrize("cin, cout, k, s", SHAPES)
@pytest.mark.parametrize("groups", [2, 4, 8])
def test_flgc_hardened_equals_relaxed_at_hard_assignment(cin, cout, k, s, groups):
    op = make_op("flgc", cin, cout, k, s, groups=groups)
    with torch.no_grad():  # a trained-looking, unbalanced preference
        op.in_logits.copy_(3 * torch.randn(cin, groups))
        op.out_logits.copy_(3 * torch.randn(cout, groups) + torch.linspace(0, 4, groups))
    gi, go = op.assignments()
    assert torch.bincount(gi, minlength=groups).tolist() == [cin // groups] * groups
    assert torch.bincount(go, minlength=groups).tolist() == [cout // groups] * groups
    mask = op.connection_mask()
    ref = torch.tensor([[float(go[o] == gi[i]) for i in range(cin)] for o in range(cout)])
    assert torch.equal(mask, ref)  # straight-through forward is exactly 0/1
    x = torch.randn(2, cin, 9, 9)
    op.train()
    y_train = op(x)
    dense = op.condense()
    assert dense.conv.groups == groups
    assert torch.allclose(dense(x), y_train, atol=1e-5)
    assert torch.allclose(dense(x), F.conv2d(x, op.weight * ref[:, :, None, None], stride=s, padding=k // 2),
                          atol=1e-5)


def test_flgc_straight_through_gradients_reach_logits():
    op = make_op("flgc", 16, 16, 3, groups=4)
    op(torch.randn(2, 16, 6, 6)).square().mean().backward()
    assert op.in_logits.grad.abs().sum() > 0 and op.out_logits.grad.abs().sum() > 0


def test_balanced_assignment_respects_argmax_when_balanced_and_caps_otherwise():
    scores = torch.eye(4).repeat(3, 1)  # rows prefer groups 0,1,2,3,0,1,... : already balanced
    assert balanced_assignment(scores, 4).tolist() == [0, 1, 2, 3] * 3
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])  # all prefer group 0
    assert balanced_assignment(scores, 2).tolist() == [0, 0, 1, 1]  # most confident rows keep it


def test_flgc_assignment_changes_with_logits_and_cache_follows():
    op = make_op("flgc", 8, 8, 1, groups=2)
    with torch.no_grad():
        op.in_logits.copy_(torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4))
    assert op.assignments()[0].tolist() == [0] * 4 + [1] * 4
    with torch.no_grad():
        op.in_logits.copy_(torch.tensor([[0.0, 1.0]] * 4 + [[1.0, 0.0]] * 4))
    assert op.assignments()[0].tolist() == [1] * 4 + [0] * 4


@pytest.mark.parametrize("cin, cout, k, s", SHAPES)
def test_flgc_cost_closed_form(cin, cout, k, s):
    op = make_op("flgc", cin, cout, k, s, groups=4)
    _check_inference_cost(op, torch.randn(2, cin, 8, 8), cin // 4)


# ----------------------------------------------------------------------------- DGC
def _kron_mask(op) -> np.ndarray:
    """The mask as an explicit numpy Kronecker product of the 2x2 factors and the dense block."""
    u = np.ones((1, 1))
    for theta in op.gate_logits.detach().numpy():
        u = np.kron(u, np.ones((2, 2)) if theta >= 0 else np.eye(2))
    side = 2 ** op.factors
    return np.kron(u, np.ones((op.out_channels // side, op.in_channels // side)))


@pytest.mark.parametrize("cin, cout, k, s", SHAPES)
@pytest.mark.parametrize("seed", range(4))
def test_dgc_mask_is_kronecker_product_and_groups_follow_gates(cin, cout, k, s, seed):
    op = make_op("dgc", cin, cout, k, s, groups=4)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        op.gate_logits.copy_(torch.randn(op.factors, generator=gen))
    mask = op.connection_mask()
    assert np.array_equal(mask.detach().numpy(), _kron_mask(op))
    n_identity = int((op.gate_logits < 0).sum())
    assert op.current_groups == 2 ** n_identity
    # every filter sees exactly C_in / G' inputs
    assert (mask.sum(1) == cin // op.current_groups).all()
    x = torch.randn(2, cin, 9, 9)
    dense = op.condense()
    assert dense.conv.groups == op.current_groups
    assert torch.allclose(dense(x), op(x), atol=1e-5)


def test_dgc_starts_as_contiguous_group_conv_at_budget():
    op = make_op("dgc", 32, 32, 3, groups=8)
    assert op.current_groups == 8
    blocks = torch.block_diag(*[torch.ones(4, 4)] * 8)  # the plain 8-group conv's connections
    assert torch.equal(op.connection_mask(), blocks)
    assert op.regularizer().item() == 0.0


def test_dgc_budget_regulariser_value_and_gradient():
    op = make_op("dgc", 16, 16, 1, groups=4)  # K = 4 factors, target 2 identity
    with torch.no_grad():
        op.gate_logits.copy_(torch.tensor([1.0, 1.0, 1.0, -1.0]))  # 1 identity
    reg = op.regularizer()
    assert reg.item() == pytest.approx(op.budget_lambda * (1 - 2) ** 2)
    reg.backward()
    # below budget: the penalty pushes dense gates towards identity (negative logits)
    assert (op.gate_logits.grad > 0).all()


@pytest.mark.parametrize("cin, cout, k, s", SHAPES)
def test_dgc_cost_closed_form(cin, cout, k, s):
    op = make_op("dgc", cin, cout, k, s, groups=4)
    with torch.no_grad():
        op.gate_logits.copy_(torch.tensor([-1.0, 1.0, -1.0] + [1.0] * (op.factors - 3)))
    _check_inference_cost(op, torch.randn(2, cin, 8, 8), cin // 4)


# ----------------------------------------------------------------------------- config errors
@pytest.mark.parametrize("op, cin, cout, params, field", [
    ("condense", 16, 30, {"groups": 4, "condense_factor": 4}, "groups"),
    ("condense", 18, 32, {"groups": 4, "condense_factor": 4}, "condense_factor"),
    ("condense", 16, 32, {"groups": 0, "condense_factor": 4}, "groups"),
    ("flgc", 16, 24, {"groups": 16}, "groups"),
    ("flgc", 16, 16, {"groups": 4, "shuffle": True}, "shuffle"),
    ("dgc", 24, 32, {"groups": 4}, "in_channels"),
    ("dgc", 32, 48, {"groups": 4}, "out_channels"),
    ("dgc", 32, 32, {"groups": 3}, "groups"),
    ("dgc", 16, 32, {"groups": 32}, "groups"),
    ("dgc", 16, 32, {"groups": 4.0}, "groups"),
])
def test_bad_configs_name_the_field(op, cin, cout, params, field):
    with pytest.raises(OpConfigError) as err:
        make_op(op, cin, cout, 3, 1, **params)
    assert err.value.field == field


def test_bad_learned_layer_in_arch_is_arch_error():
    base = get_backbone("small")
    with pytest.raises(ArchError, match="condense_factor"):
        base.replace_layer(0, LayerSpec("condense", 32, params={"groups": 4, "condense_factor": 5}))


# ----------------------------------------------------------------------------- training hook
def _learned_arch() -> Arch:
    base = get_backbone("small", (1, 32, 32), 10, width=0.5)  # widths 8, 16, 16, 32, 32, 64, 64
    ops = [("condense", {"groups": 4, "condense_factor": 4}), ("flgc", {"groups": 4}),
           ("dgc", {"groups": 4}), ("condense", {"groups": 2, "condense_factor": 2}),
           ("flgc", {"groups": 2}), ("dgc", {"groups": 2})]
    layers = tuple(layer.replace(op=op, params=p) for layer, (op, p) in zip(base.layers, ops))
    return Arch(base.input_shape, base.num_classes, base.stem, layers, base.head)


def test_training_condenses_and_condensed_model_predicts_the_same():
    from evaluators.cost import count_macs, count_params
    from evaluators.data import load_data
    from evaluators.train_proxy import evaluate, train  # train() is train_and_evaluate plus the model

    data = load_data("digits", seed=0)
    model = build_model(_learned_arch(), seed=0)
    result = train(model, data, epochs=3, seed=0)
    assert result.accuracy > 0.5  # learns (chance 0.1)
    assert all(int(m.stage) == m.condense_factor - 1 for m in model.modules() if hasattr(m, "stage"))
    condensed = condense_model(model)
    for scored in (condensed, result.model):
        assert not any(isinstance(m, LearnedOp) for m in scored.modules())
        assert all(isinstance(b.op, IndexedGroupConv) for b in scored.layers)
    model.eval()
    condensed.eval()
    with torch.no_grad():
        a, b = model(data.val.x), condensed(data.val.x)
    assert torch.allclose(a, b, atol=1e-4)
    assert torch.equal(a.argmax(1), b.argmax(1))
    assert evaluate(model, data.val.x, data.val.y) == evaluate(condensed, data.val.x, data.val.y)
    # the proxy scored that same condensed network (its BatchNorm statistics re-estimated)
    assert result.accuracy == evaluate(result.model, data.val.x, data.val.y)
    mine, theirs = condensed.state_dict(), result.model.state_dict()
    assert set(mine) == set(theirs)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine if ".bn." not in k and not k.startswith("stem.bn"))
    shape = data.input_shape
    assert count_params(model) == count_params(condensed)
    assert count_macs(model, shape) == count_macs(condensed, shape)


def test_indexed_group_conv_state_dict_carries_its_indices():
    """Loading a condensed module's state into a fresh one with identity indices reproduces it."""
    from spaces.ops.condense import IndexedGroupConv

    torch.manual_seed(0)
    src = IndexedGroupConv(torch.nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False),
                           torch.tensor([1, 0, 3, 2, 5, 4, 7, 6]), torch.arange(7, -1, -1))
    dst = IndexedGroupConv(torch.nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False), torch.arange(8), None)
    x = torch.randn(2, 8, 5, 5)
    assert not torch.allclose(src(x), dst(x))
    dst.load_state_dict(src.state_dict())
    torch.testing.assert_close(dst(x), src(x))


@pytest.mark.parametrize("groups, factor", [(1, 8), (1, 2)])
def test_condense_keeping_the_first_inputs_is_a_selection_not_the_identity(groups, factor):
    """When every group keeps the first C_in / C inputs, the gather is arange(G C_in / C) but
    selects from C_in > G C_in / C channels: the condensed conv must still apply it."""
    from spaces import inference_model

    cin = 16
    op = make_op("condense", cin, 16, 5, 1, groups=groups, condense_factor=factor)
    with torch.no_grad():
        op.mask.zero_()
        op.mask[:, : cin // factor] = 1
        op.stage.fill_(factor - 1)
    dense = op.condense()
    assert torch.equal(dense.in_index, torch.arange(groups * cin // factor))
    x = torch.randn(2, cin, 7, 7)
    ref = F.conv2d(x[:, : cin // factor], op.weight[:, : cin // factor], padding=2)
    torch.testing.assert_close(dense(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(op(x), ref, atol=1e-5, rtol=1e-5)
    # and in the inference form of a net built around it (BN folded, indices merged)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, cin, 3, padding=1), dense, torch.nn.BatchNorm2d(16),
                              torch.nn.ReLU()).eval()
    z = torch.randn(2, 3, 7, 7)
    torch.testing.assert_close(inference_model(net)(z), net(z), atol=1e-5, rtol=1e-4)
