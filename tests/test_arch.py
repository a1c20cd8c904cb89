"""Arch validation (formats 1 and 2), JSON round trip, size limits and the builder's determinism."""

import json

import pytest
import torch
from torch import nn

from spaces import (
    Arch,
    ArchError,
    BlockSpec,
    HeadSpec,
    LayerSpec,
    build_model,
    check_arch_limits,
    get_backbone,
    load_arch,
    save_arch,
)

torch.set_num_threads(1)

# A format-1 file exactly as the previous release wrote it (small backbone, two layers, a shortcut).
V1_FILE = {
    "format": 1, "input_shape": [1, 16, 16], "num_classes": 10,
    "stem": {"op": "conv", "out_channels": 8, "kernel_size": 3, "stride": 1, "params": {}, "residual": False,
             "pool": "none"},
    "layers": [
        {"op": "group", "out_channels": 16, "kernel_size": 3, "stride": 2, "params": {"groups": 4, "shuffle": True},
         "residual": False, "pool": "none"},
        {"op": "conv", "out_channels": 16, "kernel_size": 3, "stride": 1, "params": {}, "residual": True,
         "pool": "max"},
    ],
    "head": {"kind": "gap", "dropout": 0.0},
}


def test_v1_file_loads_unchanged_and_builds_the_old_network(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(V1_FILE, indent=2))
    arch = load_arch(path)
    assert [l.op for l in arch.layers] == ["group", "conv"] and arch.layers[1].residual
    assert json.loads(arch.to_json()) == V1_FILE  # a flat arch is still written as format 1
    model = build_model(arch).eval()
    # the old builder's layer: act(bn(op(x)) + shortcut(x)), then the pool
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        h = model.stem.act(model.stem.bn(model.stem.op(x)))
        b0 = model.layers[0]
        h = b0.act(b0.bn(b0.op(h)))
        b1 = model.layers[1]
        h = nn.functional.max_pool2d(b1.act(b1.bn(b1.op(h)) + h), 2)
        assert torch.allclose(model.head(h), model(x), atol=1e-6)


def test_json_round_trip_equal_format_2(tmp_path):
    for name in ("resnet", "resnet20", "mobilenet_v2", "shufflenet_v2"):
        arch = get_backbone(name, (3, 32, 32), 10)
        assert Arch.from_json(arch.to_json()) == arch
        save_arch(arch, tmp_path / "a.json")
        assert load_arch(tmp_path / "a.json") == arch
    assert json.loads(get_backbone("resnet20", (3, 32, 32), 10).to_json())["format"] == 2


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["layers"][2].update(op="nope"), "layer 2"),
        (lambda d: d["layers"][1].update(params={"typo": 3}), "'typo'"),
        (lambda d: d["layers"][0].pop("out_channels"), "missing field 'out_channels'"),
        (lambda d: d["layers"][0].update(stride="2"), "'stride'"),
        (lambda d: d.update(num_classes=1), "num_classes"),
        (lambda d: d["stem"].update(kernel_size=4), "kernel_size"),
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d["layers"][0].update(act="gelu"), "'act'"),
    ],
)
def test_bad_v1_config_names_layer_and_field(mutate, needle):
    data = json.loads(get_backbone("small").to_json())
    mutate(data)
    with pytest.raises(ArchError, match=needle):
        Arch.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["stages"][1][0]["layers"][1].update(params={"groups": 5}),
         r"stage 1 block 0 layer 1 .*field 'groups'"),
        (lambda d: d["stages"][2][1].update(shortcut="sideways"), r"stage 2 block 1: field 'shortcut'"),
        (lambda d: d["stages"][1][0].update(shortcut="identity"), r"stage 1 block 0: field 'shortcut'.*cannot add"),
        (lambda d: d["stages"][0][0]["layers"][0].update(norm="ln"), r"stage 0 block 0 layer 0: field 'norm'"),
        (lambda d: d["stages"][0][0].update(shuffle=3), r"stage 0 block 0: field 'shuffle'"),
        (lambda d: d["stages"][0][0].update(split=True), r"stage 0 block 0: field 'split'"),
        (lambda d: d["stages"][0][0].update(colour=1), r"stage 0 block 0: unknown field 'colour'"),
        (lambda d: d.update(format=3), "version 3"),
    ],
)
def test_bad_v2_config_names_stage_block_layer_and_field(mutate, needle):
    data = json.loads(get_backbone("resnext50", (3, 32, 32), 10).to_json())
    mutate(data)
    with pytest.raises(ArchError, match=needle):
        Arch.from_json(json.dumps(data))


def test_load_missing_and_garbage(tmp_path):
    with pytest.raises(ArchError, match="not found"):
        load_arch(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArchError, match="not valid JSON"):
        load_arch(tmp_path / "bad.json")


def test_build_deterministic_and_global_rng_untouched():
    arch = get_backbone("small")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(arch, seed=7)
    after = torch.rand(1)
    b = build_model(arch, seed=7)
    c = build_model(arch, seed=8)
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name, shape", [("small", (1, 32, 32)), ("vgg16", (3, 32, 32)), ("resnet", (3, 32, 32)),
                                         ("resnet20", (3, 32, 32)), ("shufflenet_v1", (3, 32, 32)),
                                         ("mobilenet_v2", (3, 32, 32)), ("shufflenet_v2", (3, 32, 32))])
def test_backbones_forward_and_feature_shapes(name, shape):
    arch = get_backbone(name, shape, 7)
    model = build_model(arch).eval()
    assert model(torch.randn(2, *shape)).shape == (2, 7)
    x = torch.randn(1, *shape)
    x = model.stem(x)
    shapes = arch.feature_shapes()
    assert tuple(x.shape[1:]) == shapes[0]
    assert len(model.layers) == len(arch.blocks) == len(shapes) - 1
    for block, expected in zip(model.layers, shapes[1:]):
        x = block(x)
        assert tuple(x.shape[1:]) == expected


def test_too_small_input_for_pooling_is_an_arch_error():
    with pytest.raises(ArchError, match="too small to pool"):
        get_backbone("vgg16", (3, 8, 8))


def test_layerspec_params_hashable_and_sorted():
    a = LayerSpec("conv", 8, params={})
    b = LayerSpec("conv", 8)
    assert a == b and hash(a) == hash(b)


def test_with_layers_keeps_the_blocks():
    arch = get_backbone("resnet20", (3, 32, 32), 10)
    layers = [l.replace(op="group", params={"groups": 4}) if l.kernel_size == 3 else l for l in arch.layers]
    new = arch.with_layers(layers)
    assert [b.shortcut for b in new.blocks] == [b.shortcut for b in arch.blocks]
    assert new.layers == tuple(layers) and new != arch
    with pytest.raises(ArchError, match="layers given"):
        arch.with_layers(layers[:-1])


# -- blocks numerically against a reference written out by hand -------------------------
def _run(block_spec: BlockSpec, cin: int, hw: int = 6):
    arch = Arch((cin, hw, hw), 2, LayerSpec("conv", cin, 1, act="none", norm="none"), ((block_spec,),), HeadSpec())
    model = build_model(arch, seed=3).eval()
    with torch.no_grad():
        for m in model.modules():  # non-trivial BN statistics
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    x = torch.randn(2, cin, hw, hw)
    with torch.no_grad():
        return model.layers[0], x, model.layers[0](x)


def _bn(bn, y):
    return (y - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps) \
        * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]


def _conv(layer, y, stride=1):
    w = layer.op.conv.weight
    return nn.functional.conv2d(y, w, None, stride, w.shape[-1] // 2, 1, layer.op.conv.groups)


def test_bottleneck_with_grouped_projection_matches_reference():
    from spaces.blocks import bottleneck
    spec = bottleneck(8, 8, 16, 2, groups=4).replace(proj_groups=2)
    m, x, y = _run(spec, 8)
    l0, l1, l2 = m.layers
    h = torch.relu(_bn(l0.bn, _conv(l0, x)))
    h = torch.relu(_bn(l1.bn, _conv(l1, h, 2)))
    h = _bn(l2.bn, _conv(l2, h))
    s = _bn(m.project.bn, _conv(m.project, x, 2))
    assert m.project.op.conv.groups == 2
    assert torch.allclose(y, torch.relu(h + s), atol=1e-5)


def test_shufflenet_v2_units_match_reference():
    from spaces.blocks import shuffle_v2
    m, x, y = _run(shuffle_v2(8, 8, 1), 8)
    a, b = x[:, :4], x[:, 4:]
    l0, l1, l2 = m.layers
    h = torch.relu(_bn(l0.bn, _conv(l0, b)))
    h = _bn(l1.bn, _conv(l1, h))
    h = torch.relu(_bn(l2.bn, _conv(l2, h)))
    cat = torch.cat((a, h), 1)
    ref = cat.reshape(2, 2, 4, 6, 6).transpose(1, 2).reshape(2, 8, 6, 6)
    assert torch.allclose(y, ref, atol=1e-5)
    m, x, y = _run(shuffle_v2(8, 16, 2), 8)
    b0, b1 = m.branch
    s = torch.relu(_bn(b1.bn, _conv(b1, _bn(b0.bn, _conv(b0, x, 2)))))
    l0, l1, l2 = m.layers
    h = torch.relu(_bn(l2.bn, _conv(l2, _bn(l1.bn, _conv(l1, torch.relu(_bn(l0.bn, _conv(l0, x))), 2)))))
    ref = torch.cat((s, h), 1).reshape(2, 2, 8, 3, 3).transpose(1, 2).reshape(2, 16, 3, 3)
    assert torch.allclose(y, ref, atol=1e-5)


def test_shufflenet_v1_stride2_concatenates_average_pool_and_inverted_residual_adds():
    from spaces.blocks import inverted, shuffle_v1
    m, x, y = _run(shuffle_v1(12, 24, 2, 3), 12)
    pooled = nn.functional.avg_pool2d(x, 3, 2, 1)
    assert torch.allclose(y[:, :12], torch.relu(pooled), atol=1e-6)
    m, x, y = _run(inverted(8, 8, 1, 6), 8)
    l0, l1, l2 = m.layers
    h = torch.clamp(_bn(l0.bn, _conv(l0, x)), 0, 6)
    h = torch.clamp(_bn(l1.bn, _conv(l1, h)), 0, 6)
    assert torch.allclose(y, _bn(l2.bn, _conv(l2, h)) + x, atol=1e-5)  # linear bottleneck, no act after


def test_preact_prelu_and_no_norm_layers():
    spec = BlockSpec((LayerSpec("conv", 8, 3, preact=True), LayerSpec("conv", 8, 1, act="prelu", norm="none")),
                     "identity", "concat")
    m, x, y = _run(spec, 4)
    l0, l1 = m.layers
    assert l0.bn.num_features == 4 and l1.bn is None and isinstance(l1.act, nn.PReLU)
    h = _conv(l0, torch.relu(_bn(l0.bn, x)))
    h = l1.act(_conv(l1, h))
    assert torch.allclose(y, torch.cat((x, h), 1), atol=1e-5)


def test_dense_layer_transition_and_last_norm_match_reference():
    """CondenseNet's dense layer (blocks.dense): BN-ReLU-learned 1x1 (masked dense weight, at its
    final mask) -> BN-ReLU-group 3x3, input concatenated first; then the block's 2x2 average
    pool (a transition) or its BN + ReLU (the net's last)."""
    from spaces.blocks import dense
    for after in ({"pool": "avg"}, {"norm": "bn", "act": "relu"}):
        m, x, _ = _run(dense(4, 2, 2, **after), 8)
        l0, l1 = m.layers
        l0.op.schedule(1.0)
        assert l0.op.mask.sum() == 2 * 4  # each of G = 2 groups keeps C_in / C = 4 inputs
        with torch.no_grad():
            y = m(x)
            w = l0.op.weight * l0.op.full_mask()[:, :, None, None]
            h = nn.functional.conv2d(torch.relu(_bn(l0.bn, x)), w)
            h = _conv(l1, torch.relu(_bn(l1.bn, h)))
        cat = torch.cat((x, h), 1)
        assert l1.op.conv.groups == 2 and h.shape[1] == 4
        ref = nn.functional.avg_pool2d(cat, 2) if "pool" in after else torch.relu(_bn(m.norm, cat))
        assert torch.allclose(y, ref, atol=1e-5)


def test_igc_basic_block_with_grouped_projection_matches_reference():
    from spaces.blocks import igc_basic
    m, x, y = _run(igc_basic(8, 16, 2, 4), 8)
    l0, l1 = m.layers
    assert [l.op.primary.groups for l in m.layers] == [4, 4] and m.project.op.conv.groups == 4
    with torch.no_grad():
        h = _bn(l1.bn, l1.op(torch.relu(_bn(l0.bn, l0.op(x)))))
        s = _bn(m.project.bn, _conv(m.project, x, 2))
    assert torch.allclose(y, torch.relu(h + s), atol=1e-5)


def test_block_norm_and_pool_round_trip_and_validate():
    from spaces.blocks import dense
    arch = get_backbone("condensenet74", (3, 32, 32), 10)
    assert Arch.from_json(arch.to_json()) == arch
    blocks = [b for st in arch.to_dict()["stages"] for b in st]
    assert [b.get("pool") for b in blocks].count("avg") == 4 and blocks[-1]["norm"] == "bn"
    assert "pool" not in blocks[0] and "norm" not in blocks[0]  # defaults left out: older files stay equal
    with pytest.raises(ArchError, match="field 'pool'"):
        dense(4, 2, 2, pool="avg3")
    with pytest.raises(ArchError, match="field 'norm'"):
        dense(4, 2, 2, norm="ln")
    with pytest.raises(ArchError, match="stage 0 block 0: field 'pool'.*too small"):
        Arch((8, 1, 1), 2, LayerSpec("conv", 8, 1), ((dense(4, 2, 2, pool="avg"),),), HeadSpec())


# -- size limits (issue 15) -------------------------------------------------------------
def test_limits_refuse_huge_networks_before_building():
    stem = LayerSpec("conv", 8)
    with pytest.raises(ArchError, match="parameters exceed"):
        build_model(Arch((3, 32, 32), 10, stem, (LayerSpec("conv", 10 ** 9),), HeadSpec()))
    deep = Arch((3, 8, 8), 10, stem, tuple(LayerSpec("conv", 8) for _ in range(10_000)), HeadSpec())
    with pytest.raises(ArchError, match="10001 layers exceed the limit of 4096"):
        build_model(deep)
    with pytest.raises(ArchError, match="GiB of activations"):
        build_model(Arch((3, 100_000, 100_000), 10, stem, (), HeadSpec()))
    with pytest.raises(ArchError, match="kernel_size.*wider than the 32x32"):
        Arch((3, 32, 32), 10, LayerSpec("conv", 8, 101), (), HeadSpec())
    check_arch_limits(get_backbone("resnet50", (3, 224, 224), 1000))  # the papers' nets pass


def test_limits_are_configurable_and_estimates_are_stated():
    from spaces.limits import estimate_activation_bytes, estimate_params
    arch = get_backbone("small", (1, 32, 32), 10)
    dense = 1 * 16 * 9 + sum(a * b * 9 for a, b in ((16, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)))
    assert estimate_params(arch) == dense
    acts = 1024 + 16 * 1024 + 32 * 256 * 2 + 64 * 64 * 2 + 128 * 16 * 2
    assert estimate_activation_bytes(arch) == 4 * acts
    with pytest.raises(ArchError, match="max_params"):
        check_arch_limits(arch, max_params=dense - 1)
    check_arch_limits(arch, max_params=dense)
    with pytest.raises(ArchError, match="max_activation_bytes"):
        build_model(arch, limits={"max_activation_bytes": 4 * acts - 1})
