"""count_params / count_macs against torch's own counters and the override protocol."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from evaluators.cost import count_macs, count_params
from spaces import Arch, HeadSpec, build_model, get_backbone, make_op

torch.set_num_threads(1)


def flop_counter_macs(model: nn.Module, input_shape) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


@pytest.mark.parametrize("name, input_shape", [
    ("small", (1, 32, 32)), ("vgg16", (3, 32, 32)), ("resnet", (3, 32, 32)), ("mobilenet", (3, 32, 32)),
    ("small", (3, 17, 23)),
])
def test_backbones_match_flop_counter_and_numel(name, input_shape):
    model = build_model(get_backbone(name, input_shape, 10))
    model.train()
    macs = count_macs(model, input_shape)
    assert macs == flop_counter_macs(model, input_shape)
    assert count_params(model) == sum(p.numel() for p in model.parameters())


def test_vgg16_figure_of_the_hetconv_paper():
    # VGG-16 on CIFAR-10: 313.74 M FLOPs (multiply-adds) in the HetConv paper's Table 1 (Singh et al.,
    # CVPR 2019). Ours counts the 13 convs and the one 512 -> 10 classifier: 313.2 M, 0.2 % below
    # (the paper's classifier differs); tolerance 0.5 %.
    macs = count_macs(build_model(get_backbone("vgg16", (3, 32, 32), 10)), (3, 32, 32))
    assert abs(macs - 313.74e6) <= 0.005 * 313.74e6
    convs = [(3, 64, 32), (64, 64, 32), (64, 128, 16), (128, 128, 16), (128, 256, 8), (256, 256, 8), (256, 256, 8),
             (256, 512, 4), (512, 512, 4), (512, 512, 4), (512, 512, 2), (512, 512, 2), (512, 512, 2)]
    assert macs == sum(9 * a * b * hw * hw for a, b, hw in convs) + 512 * 10  # the closed form, exactly


def test_count_macs_restores_training_flags_and_leaves_no_hooks():
    model = build_model(get_backbone("resnet", (3, 32, 32), 10))
    model.train()
    model.head.eval()
    count_macs(model, (3, 32, 32))
    assert model.training and not model.head.training and model.layers.training
    assert all(not m._forward_hooks for m in model.modules())


def test_gdc_head_costs_c_h_w():
    arch = get_backbone("small", (1, 32, 32), 10)
    arch = Arch(arch.input_shape, arch.num_classes, arch.stem, arch.layers, HeadSpec(kind="gdc"))
    model = build_model(arch)
    c, h, w = arch.feature_shapes()[-1]
    gdc = model.head.pool[0]
    assert count_params(gdc) == c * h * w
    assert count_macs(gdc, (c, h, w)) == c * h * w
    assert count_macs(model, arch.input_shape) == flop_counter_macs(model, arch.input_shape)


class Overriding(nn.Module):
    """Holds a dense conv but reports the figures of a 'condensed' one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, bias=False)
        self.inner = nn.Linear(3, 3)

    def cost_params(self) -> int:
        return 7

    def cost_macs(self, x: torch.Tensor, y: torch.Tensor) -> int:
        return x.shape[1] * 1000 + y.shape[-1]

    def forward(self, x):
        return self.conv(x)


def test_override_protocol_counts_by_methods_and_skips_children():
    model = nn.Sequential(nn.Conv2d(2, 4, 1, bias=True), nn.BatchNorm2d(4), Overriding(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    assert count_params(model) == (2 * 4 + 4) + 8 + 7 + (8 * 5 + 5)
    assert count_macs(model, (2, 6, 5)) == 2 * 4 * 30 + (4 * 1000 + 5) + 8 * 5
    # the override applies to the module itself too
    assert count_params(Overriding()) == 7


def test_override_nested_only_outermost_counts():
    outer = Overriding()
    outer.conv = Overriding()  # an overriding child inside an overriding module is not visited
    assert count_params(outer) == 7
    assert count_macs(outer, (4, 5, 5)) == 4 * 1000 + 5


def test_shared_parameters_count_once_and_repeated_calls_twice():
    lin = nn.Linear(6, 6, bias=False)
    model = nn.Sequential(nn.Flatten(), lin, lin)
    assert count_params(model) == 36
    assert count_macs(model, (6, 1, 1)) == 72


def test_hetconv_counts_paper_figures_not_its_zero_entries():
    op = make_op("hetconv", 64, 64, 3, 1, P=4)
    stored = sum(p.numel() for p in op.parameters())
    assert count_params(op) == 64 * 16 * 9 + 64 * 48 < stored  # 16 KxK + 48 1x1 inputs per filter
    # the paper's cost: per output pixel each of the 64 filters has 64/P inputs at 3x3 and the rest at 1x1
    assert count_macs(op, (64, 8, 8)) == 8 * 8 * 64 * (64 // 4 * 3 * 3 + (64 - 64 // 4))


def test_igc_matches_flop_counter():
    op = make_op("igc", 32, 32, 3, 2, L=4, M=8)
    assert count_macs(op, (32, 16, 16)) == flop_counter_macs(op, (32, 16, 16))
    assert count_params(op) == sum(p.numel() for p in op.parameters())


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(nn.Conv2d(1, 1, 1), (1, 0, 4))


@pytest.mark.parametrize("op, params", [
    ("dwsep", {}), ("dwsep", {"linear": True}), ("decomp", {"mode": "asym"}), ("decomp", {"mode": "stack"}),
    ("inception", {}), ("inception", {"reduction": 0, "linear": True}), ("bottleneck", {"groups": 2}),
])
def test_composite_ops_with_inner_bn_match_flop_counter(op, params):
    """The paper forms (BN + ReLU between the parts, ``spaces.ops.inner``): the inner BNs add
    params, no MACs, in both counters."""
    k = 5 if op == "decomp" else 3
    m = make_op(op, 16, 32, k, 2, **params)
    assert count_macs(m, (16, 9, 9)) == flop_counter_macs(m, (16, 9, 9))
    assert count_params(m) == sum(p.numel() for p in m.parameters())
    bn_params = sum(p.numel() for b in m.modules() if isinstance(b, nn.BatchNorm2d) for p in b.parameters())
    assert (bn_params == 0) == bool(params.get("linear"))
