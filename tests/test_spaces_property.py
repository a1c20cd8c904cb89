"""Hypothesis properties of every family's options over random channel widths and strides."""

from __future__ import annotations

import math

import torch
from hypothesis import Phase, given, settings, strategies as st

from spaces import make_op, validate_op
from spaces.mixed import MIXED_FAMILIES
from spaces.space import LayerShape

torch.set_num_threads(1)

shapes = st.builds(
    lambda cin, cout, s, idx, hw: LayerShape(idx, cin, cout, s, 3, hw, hw),
    st.integers(1, 256), st.integers(1, 256), st.sampled_from([1, 2]), st.integers(0, 20), st.integers(2, 40))


def families():
    return [cls(kernels=(3, 5)) for cls in MIXED_FAMILIES.values()]


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_every_option_is_possible_distinct_and_from_the_shape_only(shape):
    for fam in families():
        opts = fam.options(shape)
        # deterministic, and the same for the same shape at another position / map size
        other = LayerShape(shape.index + 7, shape.in_channels, shape.out_channels, shape.stride, 3, 5, 5)
        assert opts == fam.options(shape) == fam.options(other), fam.name
        assert len({o.layer for o in opts}) == len(opts), fam.name
        assert len({o.choice for o in opts}) == len(opts), fam.name
        for o in opts:
            validate_op(o.layer.op, shape.in_channels, shape.out_channels, o.layer.kernel_size, shape.stride,
                        **dict(o.layer.params))


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_divisibility_invariants(shape):
    cin, cout = shape.in_channels, shape.out_channels
    g = math.gcd(cin, cout)
    fams = {f.name: f for f in families()}
    groups = [dict(o.choice)["groups"] for o in fams["group"].options(shape)]
    assert set(groups) == {d for d in range(1, g + 1) if cin % d == 0 and cout % d == 0}
    for o in fams["group"].options(shape):
        p = o.layer.params and dict(o.layer.params)
        if o.layer.op == "group":
            assert cin % p["groups"] == 0 and cout % p["groups"] == 0
            assert not p["shuffle"] or 1 < p["groups"] < cout
    for o in fams["igc"].options(shape):
        L = dict(o.choice)["igc_L"]
        if o.layer.op == "igc":
            p = dict(o.layer.params)
            assert p["L"] * p["M"] == cout and cin % p["L"] == 0
        else:
            assert o.layer.op == "dwsep" and dict(o.layer.params) == {"linear": True} and L == cin == cout
    for o in fams["hetconv"].options(shape):
        P = dict(o.choice)["hetconv_P"]
        assert cin % P == 0 and cout % P == 0
        assert (o.layer.op == "conv") == (P == 1)
    for o in fams["bottleneck"].options(shape):
        p = dict(o.layer.params)
        assert cout % p["reduction"] == 0 and (cout // p["reduction"]) % p["groups"] == 0


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 24), st.integers(1, 24), st.sampled_from([1, 2]), st.integers(3, 9), st.data())
def test_shapes_line_up(cin, cout, stride, hw, data):
    """A drawn option builds and maps (cin, hw, hw) to (cout, ceil(hw/s), ceil(hw/s))."""
    shape = LayerShape(0, cin, cout, stride, 3, hw, hw)
    opts = [o for f in families() for o in f.options(shape)]
    o = data.draw(st.sampled_from(opts))
    m = make_op(o.layer.op, cin, cout, o.layer.kernel_size, stride, **dict(o.layer.params)).eval()
    with torch.no_grad():
        y = m(torch.randn(1, cin, hw, hw))
    assert y.shape == (1, cout, -(-hw // stride), -(-hw // stride))


# -- (space, backbone) pairs -----------------------------------------------------------
from functools import cache  # noqa: E402

import pytest  # noqa: E402

from spaces import BACKBONES, Arch, build_model, get_space  # noqa: E402
from spaces.catalog import SPACES  # noqa: E402


@cache
def _space(name: str, backbone: str):
    return get_space(name, backbone=backbone, input_shape=(3, 32, 32), num_classes=10)


class _DrawTrial:
    """An Optuna-like trial whose choices Hypothesis draws."""

    def __init__(self, data) -> None:
        self.data, self.params = data, {}

    def suggest_categorical(self, name, values):
        self.params[name] = self.data.draw(st.sampled_from(values), label=name)
        return self.params[name]


@settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no slow shrink
@given(st.sampled_from(sorted(SPACES)), st.sampled_from(sorted(BACKBONES)), st.data())
def test_space_backbone_pairs_sample_valid_networks(name, backbone, data):
    """Random pairs in the default suite; every pair in ``test_every_space_backbone_pair`` (slow)."""
    _check_pair(name, backbone, data)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_backbone_pair(name, backbone):
    @settings(max_examples=5, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(st.data())
    def run(data):
        _check_pair(name, backbone, data)
    run()


def _check_pair(name: str, backbone: str, data) -> None:
    space = _space(name, backbone)
    trial = _DrawTrial(data)
    arch = space.sample(trial)
    assert Arch.from_json(arch.to_json()) == arch
    assert space.arch_from_params(trial.params) == arch and space.params_of(arch) == trial.params
    template = space.templates[1.0]
    assert [(b.shortcut, b.combine, b.split, b.shuffle) for b in arch.blocks] == \
        [(b.shortcut, b.combine, b.split, b.shuffle) for b in template.blocks]  # the skeleton is kept
    # a block choice rewrites its unit only (spaces.block_choices): every other layer keeps its
    # shape; a unit's layers have the shapes of its rewrite for the drawn value
    expected = list(template.layers)
    blocks = list(template.blocks)
    for u in space.units():
        rewritten = u.rewrite(trial.params[u.name])
        assert len(rewritten) == len(u.blocks)
        blocks[u.first:u.first + len(u.blocks)] = rewritten
        l0 = sum(len(b.layers) for b in template.blocks[:u.first])
        expected[l0:l0 + u.n_layers] = [l for b in rewritten for l in b.layers]
        for k in u.fixed:  # layers the value sets are not searched
            assert arch.layers[l0 + k] == expected[l0 + k]
    assert [b.proj_groups for b in arch.blocks] == [b.proj_groups for b in blocks]
    assert [s[0] for s in arch.feature_shapes()] == [s[0] for s in template.feature_shapes()]  # block outputs kept
    for layer, want, (c, _, _) in zip(arch.layers, expected, arch.layer_inputs()):
        assert (layer.out_channels, layer.stride) == (want.out_channels, want.stride)
        if layer.op in ("group", "flgc"):  # groups divide both widths (condense / dgc: see their ops)
            g = layer.p["groups"]
            assert c % g == 0 and layer.out_channels % g == 0
    if backbone in ("resnet20", "shufflenet_v2", "mobilenet_v2", "small"):  # keep it fast: run the small ones
        model = build_model(arch).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
