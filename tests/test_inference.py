"""``spaces.inference_model``: equal outputs, BN gone, permutations folded, ONNX parity (issue 16).

Tolerance: ``|inference - model| <= 1e-4 + 1e-4 |model|`` element-wise on the logits, with BN
statistics and affine parameters randomised (a net fresh from ``build_model`` has identity BNs,
which would hide a wrong fold).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from search.onnx_export import check_parity, export_onnx
from spaces import BACKBONES, build_model, fold, get_backbone, get_space, inference_model
from spaces.arch import Arch, BlockSpec, HeadSpec, LayerSpec
from spaces.blocks import conv
from spaces.build import Layer
from spaces.fold import ConvKernel, PermutedOp, merge_groups
from spaces.ops.base import LearnedOp
from spaces.ops.shuffle import ChannelShuffle

torch.set_num_threads(1)
SHAPE = (3, 16, 16)
ATOL = RTOL = 1e-4


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine parameters; learned ops at their final grouping."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.3 * torch.randn(n, generator=g))
            if isinstance(m, LearnedOp):
                m.schedule(1.0)
    return model.eval()


def mixed_baselines(backbone: str = "small") -> dict[str, nn.Module]:
    """Every op family: the baselines of the ``mixed`` space (conv ... dgc)."""
    space = get_space("mixed", backbone=backbone, input_shape=SHAPE)
    return {name: randomise(build_model(arch)) for name, arch in space.baselines().items()}


def assert_same(model: nn.Module, fast: nn.Module, batches=(1, 3), shape=SHAPE) -> None:
    g = torch.Generator().manual_seed(1)
    for b in batches:
        x = torch.randn(b, *shape, generator=g)
        with torch.no_grad():
            ref = model(x)
            for fmt in (torch.contiguous_format, torch.channels_last):
                out = fast.to(memory_format=fmt)(x.contiguous(memory_format=fmt))
                torch.testing.assert_close(out, ref, atol=ATOL, rtol=RTOL)


def remaining_indices(model: nn.Module) -> int:
    return sum((m.in_index is not None) + (m.out_index is not None)
               for m in model.modules() if isinstance(m, PermutedOp))


@pytest.fixture(scope="module")
def baselines() -> dict[str, nn.Module]:
    return mixed_baselines()


def test_every_op_family_matches_in_both_formats(baselines):
    assert len(baselines) >= 20  # conv, group(+shuffle), dwsep, igc, hetconv, decomp, inception, ...
    for name, model in baselines.items():
        fast = inference_model(model)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules()), name
        assert not any(isinstance(m, LearnedOp) for m in fast.modules()), name
        assert_same(model, fast)


CIFAR = (3, 32, 32)  # vgg16 pools five times
_NETS: dict[str, nn.Module] = {}


def backbone_model(name: str) -> nn.Module:
    """``name`` at 3x32x32, width 0.25 (fast), BN randomised; built once per session."""
    if name not in _NETS:
        _NETS[name] = randomise(build_model(get_backbone(name, input_shape=CIFAR, width=0.25)))
    return _NETS[name]


def bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def bn_left(model: nn.Module) -> int:
    """BNs an exact fold cannot remove: a pre-activation BN that reads a block's input (which the
    identity shortcut reads too: CondenseNet's first BN of each dense layer) and a BN after a
    block's concatenation (CondenseNet's last BN). Every other BN folds."""
    from spaces.build import Block

    left = 0
    for block in model.layers:
        if isinstance(block, Block):
            first = block.layers[0]
            left += int(first.preact and first.bn is not None) + int(block.norm is not None)
    return left


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_matches_with_no_bn_left(backbone):
    """Post-activation backbones: every BN folds (shortcut projections too). CondenseNet (pre-
    activation, dense): the BN before each 3x3 folds into the condensed 1x1; 36 + 1 stay."""
    model = backbone_model(backbone)
    assert bn_count(model) > 0
    fast = inference_model(model)
    assert bn_count(fast) == bn_left(model) == (37 if backbone == "condensenet74" else 0)
    assert not any(isinstance(m, Layer) and not m.preact and m.bn is not None and not isinstance(m.bn, nn.Identity)
                   for m in fast.modules())
    assert_same(model, fast, shape=CIFAR)


def test_block_shuffles_stay_where_they_cannot_fold():
    """ShuffleNet v1: the shuffle inside each grouped 1x1 (every unit but the first) feeds a
    depthwise conv then a grouped 1x1 across groups: it stays once, as an index, moved through
    the depthwise conv (4x smaller after a stride 2). ShuffleNet v2:
    the shuffle after each unit's concat stays before the next unit (which splits it into an
    identity half and a conv half); after the last unit the dense conv5 absorbs it."""
    v1 = backbone_model("shufflenet_v1")
    shuffles = sum(isinstance(m, ChannelShuffle) for m in v1.modules())
    assert shuffles == len(v1.layers) - 1
    fast = inference_model(v1)
    assert remaining_indices(fast) == shuffles and not any(isinstance(m, ChannelShuffle) for m in fast.modules())
    for unit in fast.layers[1:]:  # moved through the depthwise conv: after its stride, in front of the 1x1
        assert [l.op.in_index is not None for l in unit.layers] == [False, False, True]
        assert all(l.op.out_index is None for l in unit.layers)
    v2 = backbone_model("shufflenet_v2")
    shuffles = sum(isinstance(m, ChannelShuffle) for m in v2.modules())
    fast = inference_model(v2)
    assert isinstance(v2.layers[-1], Layer) and isinstance(v2.layers[-2].shuffle, ChannelShuffle)
    assert sum(isinstance(m, ChannelShuffle) for m in fast.modules()) == shuffles - 1
    assert fast.layers[-2].shuffle is None and remaining_indices(fast) == 0


def test_hetconv_permutations_cancel_inside_residual_blocks():
    """resnet20 with HetConv P4: inside each basic block the first layer's output class order
    is the second's input order (folded); the block's entry and exit indices stay (barrier)."""
    arch = get_space("hetconv", backbone="resnet20", input_shape=CIFAR).baselines()["hetconv-P4"]
    model = randomise(build_model(arch))
    fast = inference_model(model)
    assert remaining_indices(fast) == 2 * len(model.layers)
    assert_same(model, fast, shape=CIFAR)


def _preact(c: int, stride: int = 1) -> LayerSpec:
    return LayerSpec("conv", c, 3, stride, preact=True)


def preact_arch() -> Arch:
    """stem (post-act) -> A, B (pre-act layers) -> block [C, D] + identity -> E (post-act)."""
    block = BlockSpec((_preact(16), _preact(16)), "identity")
    stages = ((BlockSpec((_preact(16),)), BlockSpec((_preact(16, 2),)), block, BlockSpec((conv(16, 3),))),)
    return Arch(CIFAR, 10, conv(16, 3), stages, HeadSpec())


def test_preact_bn_folds_only_into_an_op_nothing_else_reads():
    """A's BN reads relu(bn(stem)) and C's BN the block input (the shortcut reads it too): both
    stay. B's BN folds into A's conv, D's into C's conv (their outputs feed nothing else)."""
    model = randomise(build_model(preact_arch()))
    assert bn_count(model) == 6 and [type(m).__name__ for m in model.layers] == ["Layer", "Layer", "Block", "Layer"]
    fast = inference_model(model)
    assert bn_count(fast) == 2
    a, b, block, _ = fast.layers
    assert isinstance(a.bn, nn.BatchNorm2d) and isinstance(block.layers[0].bn, nn.BatchNorm2d)
    assert isinstance(b.bn, nn.Identity) and isinstance(block.layers[1].bn, nn.Identity)
    assert_same(model, fast, shape=CIFAR)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_onnx_export_of_backbone_inference_form_passes_parity(backbone, tmp_path):
    model = backbone_model(backbone)
    fast = inference_model(model)
    path = tmp_path / "m.onnx"
    export_onnx(fast, CIFAR, path)
    assert check_parity(fast, path, CIFAR).ok
    assert check_parity(model, path, CIFAR).ok


@pytest.mark.parametrize("space, baseline", [("hetconv", "hetconv-P4"), ("groups", "group-g4-shuffle"),
                                             ("igc", "igc-L4"), ("learned", "flgc-G4")])
def test_residual_backbone_with_grouped_ops(space, baseline):
    arch = get_space(space, backbone="resnet", input_shape=SHAPE).baselines()[baseline]
    model = randomise(build_model(arch))
    assert_same(model, inference_model(model))


def test_hetconv_permutations_all_fold_away(baselines):
    """Equal P between layers: output class order = next input class order; stem and classifier
    absorb the ends. No permutation is left (the op had two per layer)."""
    fast = inference_model(baselines["hetconv-P4"])
    assert remaining_indices(fast) == 0


def test_shuffle_between_grouped_convs_stays_once_per_layer_except_the_last(baselines):
    model = baselines["group-g4-shuffle"]
    shuffles = sum(isinstance(m, ChannelShuffle) for m in model.modules())
    fast = inference_model(model)
    assert shuffles == len(model.layers) and remaining_indices(fast) == shuffles - 1
    assert remaining_indices(inference_model(baselines["group-g4"])) == 0


def test_model_is_left_unchanged(baselines):
    model = baselines["condense-G4"]
    model.train()
    before = copy.deepcopy(model.state_dict())
    inference_model(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def conv_group_widths(path) -> list[tuple[int, int, int]]:
    """(input, output channels per group, kernel size) of every grouped, non-depthwise Conv in
    an ONNX file."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t).shape for t in graph.initializer}
    weights.update({n.output[0]: numpy_helper.to_array(a.t).shape
                    for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"})
    widths = []
    for node in graph.node:
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and groups > 1 and node.input[1] in weights:
            cout, per_in, k = weights[node.input[1]][:3]
            if per_in > 1:
                widths.append((per_in, cout // groups, k))
    return widths


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("width", [8, 16])
@pytest.mark.parametrize("name", ["dense", "group-g8", "group-g4-shuffle", "dwsep", "igc-L4", "igc-M2",
                                  "hetconv-P4", "hetconv-P16", "decomp-asym", "inception", "bottleneck",
                                  "condense-G4", "flgc-G4", "dgc-G4"])
def test_onnx_export_of_inference_form_passes_parity(baselines, name, width, tmp_path, monkeypatch):
    """The exported graph (groups merged to >= ``width`` channels, the NCHWc block of an AVX2 or
    an AVX-512 CPU) is checked against the original model, not only against the inference form;
    no grouped conv in it is narrower than the width, but for IGC's secondary 1x1 between two
    shuffles (``fold.IGC_SHUFFLE_MIN_WIDTH``), which runs outside that layout anyway."""
    monkeypatch.setattr(fold, "ORT_MIN_GROUP_CHANNELS", width)
    model = baselines[name]
    fast = inference_model(model)
    path = tmp_path / "m.onnx"
    export_onnx(fast, SHAPE, path)
    assert check_parity(fast, path, SHAPE).ok
    assert check_parity(model, path, SHAPE).ok
    widths = conv_group_widths(path)
    shuffled = [(i, o) for i, o, k in widths if k == 1 and name.startswith("igc") and i < width]
    assert all(i >= width and o >= width for i, o, _ in widths if (i, o) not in shuffled), widths
    if name == "igc-L4":  # the 64- and 128-channel layers' secondaries: groups of L = 4
        assert shuffled == [(4, 4)] * 4, widths
    if name in ("igc-L4", "group-g4-shuffle"):  # 32-channel layers in 4 groups: kept at 8, merged at 16
        assert ((8, 8, 3) in widths) == (width == 8), widths


def test_group_width_follows_the_cpu_and_the_environment(tmp_path, monkeypatch):
    """MLAS' NCHWc block: 16 with AVX-512F, 8 on other x86-64, 16 where no x86 flags are read
    (an ARM cpuinfo, no file); ``$GROUPNAS_ORT_GROUP_CHANNELS`` overrides it."""
    cases = {"flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw\n": 16,
             "flags\t\t: fpu sse sse2 avx avx2 fma\n": 8,
             "processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n": 16}
    for i, (text, want) in enumerate(cases.items()):
        (tmp_path / str(i)).write_text("processor\t: 0\n" + text)
        assert fold.nchwc_block(str(tmp_path / str(i))) == want, text
    assert fold.nchwc_block(str(tmp_path / "missing")) == 16
    monkeypatch.setenv(fold.GROUP_CHANNELS_ENV, "32")
    assert fold.ort_group_channels() == 32
    for bad in ("0", "-8", "eight", ""):
        monkeypatch.setenv(fold.GROUP_CHANNELS_ENV, bad)
        assert fold.ort_group_channels() == fold.nchwc_block()


@pytest.mark.parametrize("groups, cin, cout, want", [(4, 32, 32, 2), (8, 32, 32, 2), (8, 64, 64, 4),
                                                     (4, 16, 32, 1), (2, 64, 64, 2)])
def test_merge_groups_is_the_same_conv(groups, cin, cout, want):
    w = torch.randn(cout, cin // groups, 3, 3)
    merged, g = merge_groups(w, groups, 16)
    assert g == want and merged.shape == (cout, cin // g, 3, 3)
    x = torch.randn(1, cin, 7, 7)
    torch.testing.assert_close(F.conv2d(x, merged, None, 1, 1, 1, g), F.conv2d(x, w, None, 1, 1, 1, groups))


def test_conv_kernel_absorbs_only_within_group_permutations():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=2)
    k = ConvKernel(copy.deepcopy(conv))
    x = torch.randn(1, 8, 5, 5)
    inside = torch.tensor([1, 0, 3, 2, 7, 6, 5, 4])
    assert k.permute_in(inside)
    torch.testing.assert_close(k(x), conv(x[:, inside]))
    assert k.permute_out(inside)
    torch.testing.assert_close(k(x), conv(x[:, inside])[:, inside])
    assert not k.permute_in(torch.tensor([4, 5, 6, 7, 0, 1, 2, 3]))  # would swap the groups


class _MyBlock(nn.Module):
    """A block type from elsewhere that opts in through the protocol."""

    inference_bn_pairs = (("conv", "norm"),)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(8)

    def forward(self, x):
        return torch.relu(self.norm(self.conv(x)))


def test_new_block_types_opt_in_by_declaring_their_bn_pairs():
    block = randomise(_MyBlock())
    fast = inference_model(block)
    assert isinstance(fast.norm, nn.Identity)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(fast(x), block(x), atol=ATOL, rtol=RTOL)


def test_hetconv_net_built_and_folded_inside_inference_mode():
    """Serving code builds, loads and runs under torch.inference_mode (issue 15)."""
    arch = get_space("hetconv", backbone="small", input_shape=SHAPE).baselines()["hetconv-P4"]
    x = torch.randn(1, *SHAPE)
    with torch.inference_mode():
        model = build_model(arch).eval()
        model.load_state_dict(build_model(arch, seed=3).state_dict())
        ref = model(x)
        torch.testing.assert_close(model(x), ref)
        torch.testing.assert_close(inference_model(model)(x), ref, atol=ATOL, rtol=RTOL)


def test_rejects_non_modules():
    with pytest.raises(TypeError, match="nn.Module"):
        inference_model("not a model")


@pytest.mark.parametrize("op, params, k", [("dwsep", {}, 3), ("decomp", {"mode": "asym"}, 5),
                                           ("inception", {}, 3), ("bottleneck", {"reduction": 2}, 3)])
def test_inner_bns_fold_also_in_a_layer_without_its_own_bn(op, params, k):
    """The paper forms' inner BN + ReLU (spaces.ops.inner) sit in an nn.Sequential, so they fold
    even where the layer has no BN after the op (``norm="none"``)."""
    layer = LayerSpec(op, 16, k, 2, params, norm="none", act="none")
    arch = Arch(CIFAR, 10, conv(16, 3), ((BlockSpec((layer,)), BlockSpec((conv(16, 3),))),), HeadSpec())
    model = randomise(build_model(arch))
    assert bn_count(model.layers[0]) > 0
    fast = inference_model(model)
    assert bn_count(fast) == 0
    assert_same(model, fast, shape=CIFAR)


@pytest.mark.parametrize("norm", ["bn", "none"])
def test_a_condensed_gather_of_the_first_inputs_stays_a_selection(norm):
    """CondenseNet with G = 1, C = 8 keeps 2 of 16 inputs; when those are inputs 0 and 1 the
    gather is arange(2), which selects (not permutes) the 16 channels: it must not be dropped."""
    layer = LayerSpec("condense", 16, 5, 1, {"groups": 1, "condense_factor": 8}, norm=norm)
    arch = Arch(CIFAR, 10, conv(16, 3), ((BlockSpec((conv(16, 3), layer)),),), HeadSpec())
    model = build_model(arch)
    op = next(m for m in model.modules() if isinstance(m, LearnedOp))
    with torch.no_grad():
        op.weight[:, :2] *= 100  # the largest L1 columns: inputs 0 and 1 are kept
    model = randomise(model)
    fast = inference_model(model)
    assert_same(model, fast, shape=CIFAR)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("block", [8, 16])
@pytest.mark.parametrize("cin, width, L, shuffled", [(16, 32, 4, False), (32, 64, 4, True), (64, 128, 4, True),
                                                      (64, 64, 8, False), (64, 64, 32, False)])
def test_igc_export_shuffles_around_its_secondary_where_it_pays(cin, width, L, shuffled, block, tmp_path,
                                                               monkeypatch):
    """One IGC layer with its BN folded, exported: below ``IGC_SHUFFLE_MIN_WIDTH`` channels or
    ``IGC_SHUFFLE_MIN_M`` secondary groups the secondary is one dense 1x1 and the graph moves
    no channel; from both on, two shuffles (gathers) around an M-group 1x1. Where the primary's
    groups all merge for onnxruntime's NCHWc block (``block``: 8 on AVX2, 16 on AVX-512; fewer
    than ``block`` input channels per merged group), the two linear convs are one dense K x K
    conv. Either way onnxruntime computes what the op and its BN compute."""
    import onnx

    from spaces.ops import make_op

    monkeypatch.setattr(fold, "ORT_MIN_GROUP_CHANNELS", block)  # the form must not depend on this CPU
    M = width // L
    assert (width >= fold.IGC_SHUFFLE_MIN_WIDTH and M >= fold.IGC_SHUFFLE_MIN_M) == shuffled
    # groups merge while a merged group has under `block` inputs or outputs: one group is left
    # when no divisor d of L gives cin / d >= block and width / d >= block
    composed = not any(L % d == 0 and cin // d >= block and width // d >= block for d in range(2, L + 1))
    op = make_op("igc", cin, width, 3, 1, L=L, M=M).eval()
    bn = randomise(nn.Sequential(nn.BatchNorm2d(width)))[0]
    kernel = op.fold_bn(bn).eval()
    kernel.kernel.prepare_export()  # as inference_model does: the graph holds constants
    shape = (cin, 6, 6)
    path = tmp_path / "igc.onnx"
    export_onnx(kernel, shape, path)
    nodes = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert nodes.count("Gather") == (2 if shuffled and not composed else 0) and "Transpose" not in nodes, nodes
    assert nodes.count("Conv") == (1 if composed else 2), nodes
    assert check_parity(nn.Sequential(op, bn).eval(), path, shape).ok


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("channels, groups", [(8, 2), (24, 4), (64, 16)])
def test_exported_channel_shuffle_has_constant_shapes(channels, groups, tmp_path):
    """An exported ``ChannelShuffle`` is Reshape / Transpose / Reshape with constant target
    shapes: no Shape / Gather / Concat subgraph computing them (each cost ~0.05 ms on
    onnxruntime at batch 1), and the batch axis stays free (parity at batches 1 and 3)."""
    import onnx

    shuffle = nn.Sequential(nn.Conv2d(channels, channels, 1), ChannelShuffle(groups)).eval()
    shape = (channels, 5, 7)
    path = tmp_path / "shuffle.onnx"
    export_onnx(shuffle, shape, path)
    nodes = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert not {"Shape", "Gather", "Concat", "Unsqueeze"} & set(nodes), nodes
    assert nodes.count("Transpose") == 1 and nodes.count("Reshape") == 2, nodes
    assert check_parity(shuffle, path, shape, batches=(1, 3)).ok
