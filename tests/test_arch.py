"""Arch validation, JSON round trip and the builder's determinism."""

import json

import pytest
import torch

from spaces import Arch, ArchError, LayerSpec, build_model, get_backbone, load_arch, save_arch


def test_json_round_trip_equal(tmp_path):
    arch = get_backbone("resnet", (3, 32, 32), 10)
    assert Arch.from_json(arch.to_json()) == arch
    save_arch(arch, tmp_path / "a.json")
    assert load_arch(tmp_path / "a.json") == arch


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
    ],
)
def test_bad_config_names_layer_and_field(mutate, needle):
    data = json.loads(get_backbone("small").to_json())
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


@pytest.mark.parametrize("name, shape", [("small", (1, 32, 32)), ("vgg16", (3, 32, 32)), ("resnet", (3, 32, 32))])
def test_backbones_forward_and_feature_shapes(name, shape):
    arch = get_backbone(name, shape, 7)
    model = build_model(arch).eval()
    assert model(torch.randn(2, *shape)).shape == (2, 7)
    x = torch.randn(1, *shape)
    x = model.stem(x)
    shapes = arch.feature_shapes()
    assert tuple(x.shape[1:]) == shapes[0]
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
