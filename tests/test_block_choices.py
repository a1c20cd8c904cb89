"""Block-level choices (``spaces.block_choices``): expansion ratio, projection groups, ShuffleNet's
groups per stage; their units, costs against the papers' formulas, and the space around them."""

from __future__ import annotations

import optuna
import pytest
import torch

from evaluators.cost import count_macs, count_params
from spaces import Arch, BlockSpec, HeadSpec, build_model, get_backbone, get_space
from spaces.block_choices import Expansion, ProjectionGroups, StageGroups, compose
from spaces.blocks import conv, dw
from spaces.groups import GroupFamily
from spaces.space import Space, SpaceError

torch.set_num_threads(1)
CIFAR = (3, 32, 32)
optuna.logging.set_verbosity(optuna.logging.WARNING)


class FixedTrial:
    """A trial that answers from a dict and takes the first choice otherwise."""

    def __init__(self, want: dict) -> None:
        self.want, self.params = want, {}

    def suggest_categorical(self, name, values):
        self.params[name] = self.want.get(name, values[0])
        assert self.params[name] in values, (name, values)
        return self.params[name]


# -- expansion ratio (MobileNetV2) ---------------------------------------------------------
def test_expansion_units_are_the_inverted_blocks_with_an_expand_layer():
    """MobileNetV2 Table 2: 17 bottlenecks, the first with t = 1 (no expansion layer, no choice)."""
    arch = get_backbone("mobilenet_v2", CIFAR, 10)
    units = Expansion().units(arch)
    assert [u.first for u in units] == list(range(1, 17))
    assert all(u.own == 6 and u.values == (6, 3) for u in units)
    mfn = Expansion().units(get_backbone("mobilefacenet", (3, 112, 112), 128))
    assert sorted({u.own for u in mfn}) == [2, 4]  # MobileFaceNet Table 1: t = 2 and 4
    assert all(set(u.values) == {u.own, 3, 6} for u in mfn)


def test_expansion_rewrites_the_block_and_costs_the_inverted_residual_formula():
    """MobileNetV2 Table 1: h w (t k) k + h w (t k) 9 / s^2 + (h w / s^2)(t k) k' multiply-adds."""
    space = get_space("groups", backbone="mobilenet_v2", input_shape=CIFAR)
    u = next(u for u in space.units() if u.first == 3)  # stage 2 block 0: 24 -> 32, stride 2
    (block,) = u.rewrite(3)
    a, d, c = block.layers
    cin = 24
    assert (a.out_channels, d.out_channels, d.p["groups"], c.out_channels, d.stride) == (72, 72, 72, 32, 2)
    arch = compose(space.templates[1.0], {3: block})  # the backbone with t = 3 in block 3: a member
    params = space.params_of(arch)
    assert params[u.name] == 3 and space.arch_from_params(params) == arch
    model = build_model(arch)
    c_, h, w = arch.feature_shapes()[3]
    assert c_ == cin
    t_k = 3 * cin
    macs = h * w * cin * t_k + (h // 2) * (w // 2) * (t_k * 9 + t_k * 32)
    assert count_macs(model.layers[3], (c_, h, w)) == macs
    bn = 2 * (t_k + t_k + 32)
    assert count_params(model.layers[3]) == cin * t_k + t_k * 9 + t_k * 32 + bn


# -- projection groups (IGC) ------------------------------------------------------------------
def test_projection_groups_on_resnet_blocks_and_their_cost():
    """A grouped 1x1 projection shortcut: C_in C_out / g params (IGC's ImageNet networks)."""
    space = get_space("igc", backbone="resnet20", input_shape=CIFAR)
    units = space.units()
    assert [(u.name, u.values, u.own) for u in units] == [("block3.proj_groups", (1, 2, 4, 8), 1),
                                                       ("block6.proj_groups", (1, 2, 4, 8), 1)]
    arch = space.sample(FixedTrial({"block3.proj_groups": 4, "block6.proj_groups": 8}))
    assert [b.proj_groups for b in arch.blocks] == [1, 1, 1, 4, 1, 1, 8, 1, 1]
    model = build_model(arch)
    assert count_params(model.layers[3].project.op) == 16 * 32 // 4
    assert count_params(model.layers[6].project.op) == 32 * 64 // 8
    c, h, w = arch.feature_shapes()[3]
    assert count_macs(model.layers[3].project, (c, h, w)) == (h // 2) * (w // 2) * 16 * 32 // 4
    assert space.params_of(arch) == {**space.params_of(arch), "block3.proj_groups": 4}


def test_projection_groups_only_where_they_divide_both_widths():
    arch = get_backbone("resnet18", (3, 224, 224), 1000)
    for u in ProjectionGroups().units(arch):
        block = arch.blocks[u.first]
        cin = arch.feature_shapes()[u.first][0]
        cout = arch.feature_shapes()[u.first + 1][0]
        assert block.shortcut == "projection"
        assert all(cin % g == 0 and cout % g == 0 for g in u.values)


# -- ShuffleNet's groups per stage ------------------------------------------------------------
@pytest.mark.parametrize("g", [1, 2, 4, 8])
def test_stage_groups_give_the_shufflenet_unit_cost(g):
    """ShuffleNet Sec. 3.2: a stride-1 unit with c inputs and bottleneck m costs
    h w (2 c m / g + 9 m) multiply-adds (the 1x1 convs grouped with g, the 3x3 depthwise)."""
    space = get_space("groups", backbone="shufflenet_v1", input_shape=CIFAR)
    assert [u.name for u in space.units()] == ["stage0.groups", "stage1.groups", "stage2.groups"]
    arch = space.sample(FixedTrial({"stage1.groups": g}))
    model = build_model(arch)
    b = 5  # stage 1, block 1: stride 1, c = 480, m = 120 at 8x8
    c, h, w = arch.feature_shapes()[b]
    m = arch.blocks[b].layers[0].out_channels
    assert (c, m) == (480, 120)
    dw_choice = arch.blocks[b].layers[1]  # the depthwise conv keeps its own choice (its first: dense)
    dw_cost = 9 * m * (m // dw_choice.p.get("groups", 1))
    assert count_macs(model.layers[b], (c, h, w)) == h * w * (2 * c * m // g) + h * w * dw_cost
    first, second = arch.blocks[b].layers[0], arch.blocks[b].layers[2]
    assert (first.p.get("groups", 1), first.p.get("shuffle", False)) == (g, g > 1)  # shuffle after the first
    assert (second.p.get("groups", 1), second.p.get("shuffle", False)) == (g, False)


def test_stage_groups_keep_the_first_pointwise_of_stage_2_dense_and_fix_the_1x1s():
    """ShuffleNet Sec. 3.3: no group conv on stage 2's first pointwise layer."""
    space = get_space("groups", backbone="shufflenet_v1", input_shape=CIFAR)
    u = space.units()[0]
    for g in u.values:
        first = u.rewrite(g)[0].layers[0]
        assert first.op == "conv"
    assert u.values == (3, 1, 2, 4)  # 8 does not divide the 60-channel bottleneck of stage 2
    for k in range(u.n_layers):
        opts = space.layer_options(k)
        assert (len(opts) == 1) == (k in u.fixed)  # the 1x1s are set by the stage, the 3x3s searched
    assert u.fixed == frozenset({0, 2, 3, 5, 6, 8, 9, 11})


def test_stage_groups_baselines_hold_the_paper_network_and_the_dense_one():
    space = get_space("groups", backbone="shufflenet_v1", input_shape=CIFAR)
    b = space.baseline_params()
    assert {b["shufflenet_v1"][f"stage{s}.groups"] for s in range(3)} == {3}
    assert space.baselines()["shufflenet_v1"] == get_backbone("shufflenet_v1", CIFAR, 10)
    assert {b["dense"][f"stage{s}.groups"] for s in range(3)} == {1}


# -- the space around block choices ------------------------------------------------------------
def tiny_inverted() -> Arch:
    """stem 4 -> inverted block 4 -> (t=2) 8 -> dw 8 -> 4 (identity) -> conv 8."""
    block = BlockSpec((conv(8, 1, act="relu6"), dw(8, act="relu6"), conv(4, 1, act="none")), "identity")
    return Arch((3, 8, 8), 3, conv(4, 3), ((block, BlockSpec((conv(8, 3),))),), HeadSpec())


def group_count(cin: int, cout: int) -> int:
    """The ``groups`` space's options of one layer and kernel (its module docstring):
    1 + 2 (d - 1) - [C_out divides C_in], d the number of common divisors."""
    d = len([g for g in range(1, min(cin, cout) + 1) if cin % g == 0 and cout % g == 0])
    return 1 + 2 * (d - 1) - (1 if cin % cout == 0 else 0)


def test_size_counts_every_distinct_arch_with_a_block_choice():
    """size = sum over t of the block's layer counts at the widths t gives, times the rest."""
    space = Space("t", [GroupFamily()], tiny_inverted(), block_choices=[Expansion()])
    (u,) = space.units()
    assert u.values == (2, 3, 6)  # the backbone's t = 2, then EXPANSIONS
    block = sum(group_count(4, 4 * t) * group_count(4 * t, 4 * t) * group_count(4 * t, 4) for t in u.values)
    assert space.size == block * group_count(4, 8) == 3000
    archs = [space.arch_from_params(p).to_json() for p in space.iter_params()]
    assert len(archs) == len(set(archs)) == space.size
    mids = {Arch.from_json(a).layers[0].out_channels for a in archs}
    assert mids == {8, 12, 24}


def test_optuna_runs_with_block_choices_and_widths():
    space = get_space("igc", backbone="mobilenet_v2", input_shape=CIFAR, widths=(1.0, 1.5))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        arch = space.sample(trial)
        assert space.arch_from_params(trial.params) == arch and space.params_of(arch) == trial.params
        seen.add(trial.params["block1.expand"])
        study.tell(trial, 0.0)
    assert seen == {3, 6}
    assert "block1.expand" in space.param_names()


def test_block_choices_option_and_errors():
    plain = get_space("groups", backbone="mobilenet_v2", input_shape=CIFAR, block_choices=[])
    assert plain.units() == [] and "block1.expand" not in plain.param_names()
    with pytest.raises(SpaceError, match="unknown 'nope'; known: expand, proj_groups, groups"):
        get_space("groups", backbone="resnet20", input_shape=CIFAR, block_choices=["nope"])
    with pytest.raises(SpaceError, match="both rewrite block 1"):
        Space("t", [GroupFamily()], get_backbone("mobilenet_v2", CIFAR, 10), block_choices=[Expansion(), Expansion()])


def test_every_unit_at_its_own_value_is_the_backbone():
    for name in ("mobilenet_v2", "mobilefacenet", "shufflenet_v1", "resnet18", "resnet50", "resnext50"):
        arch = get_backbone(name, CIFAR if name != "mobilefacenet" else (3, 112, 112),
                            10 if name != "mobilefacenet" else 128)
        for choice in (Expansion(), ProjectionGroups(), StageGroups()):
            for u in choice.units(arch):
                assert u.rewrite(u.own) == u.blocks == arch.blocks[u.first:u.first + len(u.blocks)]
                for v in u.values:  # a rewrite keeps the unit's layer count and output widths
                    new = u.rewrite(v)
                    assert [len(b.layers) for b in new] == [len(b.layers) for b in u.blocks]
                    assert [b.layers[-1].out_channels for b in new] == [b.layers[-1].out_channels for b in u.blocks]


# -- inference form and export of members a block choice made ------------------------------
def _randomised(arch: Arch) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    model = build_model(arch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.3 * torch.randn(n, generator=g))
    return model.eval()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("space, backbone, want", [
    ("igc", "resnet20", {"block3.proj_groups": 4, "block6.proj_groups": 8}),
    ("groups", "shufflenet_v1", {"stage0.groups": 2, "stage1.groups": 8, "stage2.groups": 1}),
    ("hetconv", "mobilenet_v2", {f"block{b}.expand": 3 for b in range(1, 17)}),
])
def test_block_choice_members_fold_and_export_with_parity(space, backbone, want, tmp_path):
    from search.onnx_export import check_parity, export_onnx
    from spaces import inference_model

    s = get_space(space, backbone=backbone, input_shape=CIFAR)
    arch = s.sample(FixedTrial(want))
    assert all(s.params_of(arch)[k] == v for k, v in want.items())
    model = _randomised(arch)
    fast = inference_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(2, *CIFAR)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)
    path = tmp_path / "m.onnx"
    export_onnx(fast, CIFAR, path)
    assert check_parity(model, path, CIFAR).ok
