"""Search spaces: draws with Optuna, round trips, coverage, exact size vs brute force, baselines."""

from __future__ import annotations

import itertools
import math

import optuna
import pytest
import torch

import spaces
from spaces import Arch, HeadSpec, LayerSpec, build_model, get_space, make_op, validate_op
from spaces.catalog import SPACES
from spaces.decomp import DecompFamily
from spaces.describe import main as describe_main
from spaces.groups import GroupFamily
from spaces.hetconv import HetConvFamily
from spaces.igc import IGCFamily
from spaces.mixed import MIXED_FAMILIES, BottleneckFamily, ConvFamily, DwsepFamily, InceptionFamily
from spaces.space import LayerOp, Space, SpaceError

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)

OURS = ["groups", "igc", "hetconv", "decomp", "mixed"]


def draw(space: Space, n: int, seed: int = 0):
    """``n`` (trial, arch) pairs from a RandomSampler study."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        arch = space.sample(trial)
        study.tell(trial, 0.0)
        yield trial, arch


def spec_key(layer: LayerSpec) -> tuple:
    return (layer.op, layer.kernel_size, layer.params)


# -- catalog -----------------------------------------------------------------------------
def test_catalog_names_and_reexports():
    assert set(OURS) <= set(spaces.SPACES)
    assert spaces.SPACES is SPACES and spaces.get_space is get_space
    assert set(spaces.BACKBONES) == {"small", "vgg16", "resnet", "mobilenet", "resnet20", "resnet18", "resnet50",
                                     "resnext50", "mobilenet_v1", "mobilenet_v2", "shufflenet_v1", "shufflenet_v2",
                                     "mobilefacenet", "condensenet74", "igc_resnet18"}
    for name in OURS:
        assert get_space(name).name == name and get_space(name).backbone_name == "small"


def test_catalog_errors_name_the_problem():
    with pytest.raises(SpaceError, match="unknown space .nope.*groups.*igc.*hetconv.*decomp.*mixed"):
        get_space("nope")
    with pytest.raises(ValueError, match="has no option 'widht'.*widths"):
        get_space("igc", widht=(1.0,))
    with pytest.raises(ValueError, match="unknown backbone 'tiny'"):
        get_space("igc", backbone="tiny")
    with pytest.raises(ValueError, match="kernels.*4"):
        get_space("igc", kernels=(3, 4))
    with pytest.raises(ValueError, match="widths.*-1"):
        get_space("groups", widths=(1.0, -1))
    with pytest.raises(ValueError, match="same channels"):
        get_space("groups", widths=(1.0, 1.01))
    with pytest.raises(ValueError, match="families.*'nope'"):
        get_space("mixed", families=("conv", "nope"))


# -- 500 draws per space ---------------------------------------------------------------
@pytest.mark.parametrize("name", OURS)
def test_draws_valid_roundtrip_build_and_cover(name):
    """Every drawn Arch is valid, round-trips (JSON, params), builds and runs (every 10th); every
    option of every layer is reached (mixed, with ~100 options a layer: the next test)."""
    space = get_space(name)
    n = 500
    reached = [set() for _ in range(space.n_layers)]
    for i, (trial, arch) in enumerate(draw(space, n, seed=1)):
        assert isinstance(arch, Arch)
        assert Arch.from_json(arch.to_json()) == arch
        assert space.arch_from_params(dict(trial.params)) == arch
        assert space.params_of(arch) == trial.params
        for j, layer in enumerate(arch.layers):
            reached[j].add(spec_key(layer))
        if i % 10 == 0:
            model = build_model(arch).eval()
            with torch.no_grad():
                y = model(torch.randn(1, *arch.input_shape))
            assert y.shape == (1, arch.num_classes)
    if name != "mixed":
        for j in range(space.n_layers):
            offered = {spec_key(o.layer.apply(space.templates[1.0].layers[j])) for o in space.layer_options(j)}
            assert reached[j] == offered, f"layer{j}: never drawn {offered - reached[j]}"


def test_mixed_every_option_of_every_layer_is_reached():
    space = get_space("mixed")
    reached = [set() for _ in range(space.n_layers)]
    for _trial, arch in draw(space, 2500, seed=2):
        for j, layer in enumerate(arch.layers):
            reached[j].add(LayerOp.from_spec(layer))
    for j in range(space.n_layers):
        offered = {o.layer for o in space.layer_options(j)}
        assert reached[j] == offered, f"layer{j}: never drawn {offered - reached[j]}"
    assert {LayerOp.from_spec(space.baselines()["dwsep"].layers[1])} <= reached[1]


def test_mixed_is_define_by_run():
    """Only the chosen family's parameters are suggested, and ``layerN.op`` always is."""
    space = get_space("mixed")
    for trial, arch in draw(space, 60, seed=3):
        for j in range(len(arch.layers)):
            names = {k.split("|")[0] for k in trial.params if k.startswith(f"layer{j}.")}
            assert f"layer{j}.op" in names
            family_keys = {"group": {"groups", "shuffle"}, "igc": {"igc_L"}, "hetconv": {"hetconv_P"},
                           "decomp": {"decomp"}, "inception": {"inception_pool"},
                           "bottleneck": {"bottleneck_r", "bottleneck_g"}}
            fam = trial.params[f"layer{j}.op"]
            for other, keys in family_keys.items():
                if other != fam:
                    assert not {f"layer{j}.{k}" for k in keys} & names, (fam, names)


def test_width_search_roundtrip_and_size():
    space = get_space("igc", widths=(1.0, 1.5, 2.0))
    expected = sum(math.prod(2 * len([d for d in range(1, c + 1) if a % d == 0 and c % d == 0])
                             for a, c in zip(chans[:-1], chans[1:]))
                   for chans in ([16, 32, 32, 64, 64, 128, 128], [24, 48, 48, 96, 96, 192, 192],
                                 [32, 64, 64, 128, 128, 256, 256]))
    assert space.size == expected
    widths = set()
    for trial, arch in draw(space, 300, seed=4):
        assert space.arch_from_params(trial.params) == arch
        widths.add(trial.params["width"])
        assert arch.layers[-1].out_channels == int(128 * trial.params["width"])
    assert widths == {1.0, 1.5, 2.0}
    assert any("|width=" in n for n in space.param_names())
    assert space.baselines()["igc-L4"].layers[0].out_channels == 32  # baselines at width 1.0


# -- size against an independent brute force ---------------------------------------------
def raw_layers(cin: int, cout: int, kernels: tuple[int, ...], families: set[str]) -> set[tuple]:
    """Every layer a family could spell for (cin, cout), tried over wide integer ranges with
    ``validate_op`` as the judge, then merged where two spellings build the same network."""
    cands = []
    top = max(cin, cout)
    for k in kernels:
        if "conv" in families:
            cands.append(("conv", k, ()))
        if "group" in families:
            cands += [("group", k, (("groups", g), ("shuffle", s))) for g in range(1, top + 1) for s in (False, True)]
        if "dwsep" in families:
            cands.append(("dwsep", k, ()))
        if "igc" in families:
            cands += [("igc", k, (("L", L), ("M", M))) for L in range(1, top + 1) for M in range(1, top + 1)
                      if L * M == cout]  # other products fail validate_op; skipped for speed
        if "hetconv" in families:
            cands += [("hetconv", k, (("P", p),)) for p in range(1, top + 1)]
        if "decomp" in families:
            cands += [("conv", k, ())] + [("decomp", k, (("mode", m),)) for m in ("asym", "stack", "other")]
        if "bottleneck" in families:
            cands += [("bottleneck", k, (("groups", g), ("reduction", r))) for r in (2, 4) for g in range(1, top + 1)]
    if "inception" in families:
        cands += [("inception", 3, (("pool_branch", b),)) for b in (True, False)]
    ok = set()
    for op, k, params in cands:
        try:
            validate_op(op, cin, cout, k, 1, **dict(params))
        except ValueError:
            continue
        p = dict(params)
        # merges: a shuffle with 1 or C_out groups is the identity; 1 group is the dense conv;
        # HetConv P = 1 is dense; a 3x3 stacked is one 3x3; IGC with L = C_in = C_out is the
        # linear dwsep (no BN + ReLU between its parts; the paper-form dwsep is another network).
        if op == "group":
            if p["groups"] in (1, cout):
                p["shuffle"] = False
            if p["groups"] == 1:
                op, p = "conv", {}
        if op == "hetconv" and p["P"] == 1:
            op, p = "conv", {}
        if op == "decomp" and p["mode"] == "stack" and k == 3:
            op, p = "conv", {}
        if op == "igc" and p["M"] == 1 and p["L"] == cin:
            op, p = "dwsep", {"linear": True}
        ok.add((op, k, tuple(sorted(p.items()))))
    return ok


BRUTE = {
    "groups": ({"group"}, (3,)),
    "igc": ({"igc"}, (3, 5)),
    "hetconv": ({"hetconv"}, (3, 5)),
    "decomp": ({"decomp"}, (3, 5, 7)),
    "mixed": ({"conv", "group", "dwsep", "igc", "hetconv", "decomp", "inception", "bottleneck"}, (3, 5)),
}


@pytest.mark.parametrize("name", OURS)
def test_size_equals_brute_force_on_small_backbone(name):
    families, kernels = BRUTE[name]
    space = get_space(name) if name != "mixed" else get_space(name, families=sorted(families))
    total = 1
    for j, shape in enumerate(space.shapes()):
        brute = raw_layers(shape.in_channels, shape.out_channels, kernels, families)
        offered = {(o.layer.op, o.layer.kernel_size, o.layer.params) for o in space.layer_options(j)}
        assert offered == brute, f"layer{j}: extra {offered - brute}, missing {brute - offered}"
        assert len(space.layer_options(j)) == len(offered)  # no two options build the same layer
        total *= len(brute)
    assert space.size == total


def tiny_template() -> Arch:
    stem = LayerSpec("conv", 4, 3, 1)
    layers = (LayerSpec("conv", 8, 3, 2), LayerSpec("conv", 8, 3, 1, residual=True))
    return Arch((1, 8, 8), 3, stem, layers, HeadSpec())


@pytest.mark.parametrize("families,kernels", [
    ([GroupFamily], (3,)), ([IGCFamily], (3, 5)), ([HetConvFamily], (3, 5)), ([DecompFamily], (3, 5)),
    ([ConvFamily, GroupFamily, DwsepFamily, IGCFamily, HetConvFamily, DecompFamily, InceptionFamily,
      BottleneckFamily], (3, 5)),
])
def test_tiny_space_enumerates_exactly_size_distinct_archs(families, kernels):
    space = Space("t", [f(kernels=kernels) for f in families], tiny_template())
    names = {f.name for f in families} | ({"conv"} if len(families) > 1 else set())
    per_layer = [raw_layers(4, 8, kernels, names), raw_layers(8, 8, kernels, names)]
    brute_archs = set()
    for a, b in itertools.product(*per_layer):
        t = tiny_template()
        layers = tuple(LayerOp(*x).apply(l) for x, l in zip((a, b), t.layers))
        brute_archs.add(Arch(t.input_shape, t.num_classes, t.stem, layers, t.head).to_json())
    enumerated = [space.arch_from_params(p).to_json() for p in space.iter_params()]
    assert len(enumerated) == len(set(enumerated)) == space.size == len(brute_archs)
    assert set(enumerated) == brute_archs


# -- the merged spellings really are the same network ------------------------------------
def test_merged_spellings_compute_the_same_function():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    a, b = make_op("group", 8, 8, 3, 1, groups=8, shuffle=True), make_op("group", 8, 8, 3, 1, groups=8)
    b.load_state_dict(a.state_dict())
    assert torch.allclose(a(x), b(x))
    a, b = make_op("decomp", 8, 16, 3, 2, mode="stack"), make_op("conv", 8, 16, 3, 2)
    with torch.no_grad():
        list(b.parameters())[0].copy_(list(a.parameters())[0])
    assert torch.allclose(a(x), b(x), atol=1e-6)
    a, b = make_op("igc", 8, 8, 3, 1, L=8, M=1), make_op("dwsep", 8, 8, 3, 1, linear=True)
    with torch.no_grad():
        b.depthwise.weight.copy_(a.primary.weight)
        b.pointwise.weight.copy_(a.secondary.weight)
    assert torch.allclose(a(x), b(x), atol=1e-5)


# -- options from shapes only ----------------------------------------------------------
def test_same_shape_same_options_across_backbones():
    """A layer's choices are a function of its shape: equal shapes on different backbones and
    positions get equal options."""
    by_shape: dict[tuple, list] = {}
    for backbone in ("small", "resnet", "vgg16"):
        space = get_space("mixed", backbone=backbone, input_shape=(3, 32, 32))
        for shape in space.shapes():
            key = (shape.in_channels, shape.out_channels, shape.stride)
            opts = [(o.choice, o.layer) for o in space.layer_options(shape.index)]
            by_shape.setdefault(key, []).append(opts)
    assert any(len(v) > 1 for v in by_shape.values())
    for key, lists in by_shape.items():
        assert all(o == lists[0] for o in lists), key


# -- baselines -------------------------------------------------------------------------
EXPECTED_BASELINES = {
    "groups": {"dense", "group-g2", "group-g2-shuffle", "group-g4", "group-g4-shuffle", "group-g8",
               "group-g8-shuffle"},
    "igc": {"igc-L2", "igc-L4", "igc-L8", "igc-M2", "igc-M4", "igc-M8"},
    "hetconv": {"dense", "hetconv-P2", "hetconv-P4", "hetconv-P8", "hetconv-P16"},
    "decomp": {"dense", "decomp-asym", "dense-k5", "decomp-stack"},
}


@pytest.mark.parametrize("name", OURS)
def test_baselines_are_members_and_enqueue(name):
    space = get_space(name)
    params = space.baseline_params()
    expected = EXPECTED_BASELINES.get(name) or set().union(*EXPECTED_BASELINES.values()) | {"dwsep", "inception",
                                                                                            "bottleneck"}
    assert expected <= set(params)
    archs = space.baselines()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for bname, p in params.items():
        assert space.params_of(archs[bname]) == p
        study.enqueue_trial(p)
        trial = study.ask()
        assert space.sample(trial) == archs[bname], bname
        assert trial.params == p
        study.tell(trial, 0.0)
    assert len({a.to_json() for a in archs.values()}) == len(archs)  # all different nets


def test_baselines_are_what_their_names_say():
    b = get_space("mixed").baselines()
    chans = [32, 32, 64, 64, 128, 128]
    assert all(l.op == "conv" and l.kernel_size == 3 for l in b["dense"].layers)
    assert all(l.op == "dwsep" for l in b["dwsep"].layers)
    assert all(l.p == {"groups": 4, "shuffle": True} for l in b["group-g4-shuffle"].layers)
    assert all(l.p == {"groups": 8, "shuffle": False} for l in b["group-g8"].layers)
    assert [l.p for l in b["igc-L4"].layers] == [{"L": 4, "M": c // 4} for c in chans]
    assert [l.p for l in b["igc-M8"].layers] == [{"L": c // 8, "M": 8} for c in chans]
    assert all(l.op == "hetconv" and l.p == {"P": 16} for l in b["hetconv-P16"].layers)
    assert all(l.p == {"mode": "asym"} and l.kernel_size == 3 for l in b["decomp-asym"].layers)
    assert all(l.p == {"mode": "stack"} and l.kernel_size == 5 for l in b["decomp-stack"].layers)


def test_baseline_left_out_where_a_layer_cannot_take_it():
    space = get_space("hetconv", widths=(0.5,))  # first layer 8 -> 16: P = 16 does not divide 8
    assert "hetconv-P8" in space.baseline_params() and "hetconv-P16" not in space.baseline_params()


# -- errors on params ------------------------------------------------------------------
def test_arch_from_params_errors_name_the_parameter():
    space = get_space("igc")
    p = space.baseline_params()["igc-L4"]
    with pytest.raises(ValueError, match="missing parameter 'layer0.igc_L'"):
        space.arch_from_params({k: v for k, v in p.items() if k != "layer0.igc_L"})
    with pytest.raises(ValueError, match=r"layer9\.groups.*do not belong"):
        space.arch_from_params({**p, "layer9.groups": 2})
    with pytest.raises(ValueError, match=r"'layer0.igc_L' = 3 is not a choice; choices: \[1, 2, 4, 8, 16\]"):
        space.arch_from_params({**p, "layer0.igc_L": 3})
    with pytest.raises(ValueError, match="'layer0.kernel_size' = True is not a choice"):
        space.arch_from_params({**p, "layer0.kernel_size": True})
    with pytest.raises(ValueError, match="not a choice here"):
        space.params_of(get_space("groups").baselines()["group-g4"])
    with pytest.raises(ValueError, match="backbone"):
        space.params_of(get_space("igc", backbone="resnet").baselines()["igc-L4"])


# -- reporting -------------------------------------------------------------------------
def test_layer_choices_labels():
    space = get_space("mixed")
    b = space.baselines()
    assert space.layer_choices(b["igc-L4"])["layer0"] == "igc L4 M8 k3"
    assert space.layer_choices(b["group-g4-shuffle"])["layer5"] == "group g4 shuffle k3"
    assert space.layer_choices(b["hetconv-P4"])["layer2"] == "hetconv P4 k3"
    assert space.layer_choices(b["dense"]) == {f"layer{i}": "conv k3" for i in range(6)}
    assert space.layer_choices(b["decomp-stack"])["layer1"] == "decomp stack k5"


def test_describe_cli_prints_table_and_size(capsys):
    assert describe_main(["igc"]) == 0
    out = capsys.readouterr().out
    assert "layer5" in out and "igc_L=1,2,4,8,16,32,64,128" in out
    assert f"size: {get_space('igc').size} " in out
    assert describe_main(["nope"]) == 2
    assert "known spaces" in capsys.readouterr().err
    assert describe_main(["groups", "--backbone", "resnet", "--widths", "1", "2", "--params"]) == 0
    assert "width" in capsys.readouterr().out


def test_sizes_on_small_backbone():
    """Closed forms per layer (d = number of common divisors of C_in and C_out)."""
    shapes = [(16, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    d = [len([g for g in range(1, 129) if a % g == 0 and c % g == 0]) for a, c in shapes]
    groups = math.prod(1 + 2 * (n - 1) - (1 if a % c == 0 else 0) for n, (a, c) in zip(d, shapes))
    assert get_space("groups").size == groups == 2162160
    assert get_space("igc").size == get_space("hetconv").size == math.prod(2 * n for n in d) == 4515840
    assert get_space("decomp").size == 8 ** 6
    mixed_fams = ["conv", "group", "dwsep", "igc", "hetconv", "decomp", "inception", "bottleneck"]
    # where C_in = C_out, IGC's L = C (M = 1) is the linear dwsep, not the paper-form dwsep: +1 per kernel
    assert get_space("mixed", families=mixed_fams).size == 61 * (65 + 2) * 73 * (77 + 2) * 85 * (89 + 2)
    assert set(mixed_fams) <= set(MIXED_FAMILIES)


# -- every space on every backbone -----------------------------------------------------
PAPER_BACKBONES = [b for b in spaces.BACKBONES if b != "small"]


@pytest.mark.parametrize("backbone", PAPER_BACKBONES)
@pytest.mark.parametrize("name", ["groups", "igc", "hetconv", "decomp", "learned"])
def test_every_space_on_every_backbone_holds_the_paper_network(name, backbone):
    space = get_space(name, backbone=backbone, input_shape=(3, 32, 32))
    template = spaces.get_backbone(backbone, (3, 32, 32), 10)
    baselines = space.baselines()
    assert template in baselines.values()  # the paper's configuration is a baseline (by name, or as 'dense')
    assert space.params_of(template) == space.baseline_params()[
        next(k for k, a in baselines.items() if a == template)]
    # the grouping choice reaches every 3x3 (and depthwise) conv of every block in the groups space
    if name == "groups":
        for shape in space.shapes():
            if shape.kernel_size == 3 and math.gcd(shape.in_channels, shape.out_channels) > 1:
                groups = {dict(o.layer.params).get("groups", 1) for o in space.layer_options(shape.index)}
                assert {1, math.gcd(shape.in_channels, shape.out_channels)} <= groups
    # a 1x1 layer keeps kernel 1, and every option fits the map
    for shape in space.shapes():
        for o in space.layer_options(shape.index):
            if shape.kernel_size == 1:
                assert o.layer.kernel_size == 1
            assert o.layer.kernel_size <= 2 * max(shape.height, shape.width) + 1


def test_shufflenet_groups_baseline_is_the_paper_and_projection_blocks_stay():
    space = get_space("groups", backbone="shufflenet_v1", input_shape=(3, 32, 32))
    arch = space.baselines()["shufflenet_v1"]
    assert [b.shortcut for b in arch.blocks][:2] == ["avgpool", "identity"]
    dense = space.baselines()["dense"]  # groups per stage (spaces.block_choices): g = 1 in every stage
    assert [b.shortcut for b in dense.blocks] == [b.shortcut for b in arch.blocks]
    assert {space.params_of(dense)[f"stage{s}.groups"] for s in range(3)} == {1}
    assert "group-g4" not in space.baselines()  # one g for every 1x1 and 3x3 is not a per-stage choice


def test_describe_prints_the_block_structure(capsys):
    assert describe_main(["groups", "--backbone", "shufflenet_v2", "--input-shape", "3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "stage 0 block 0: 3 layers, shortcut branch (group g24 k3 -> conv k1), concat, shuffle 2" in out
    assert "stage 0 block 1: 3 layers, shortcut identity, concat, channel split, shuffle 2" in out
    assert "baselines: dense, " in out and "shufflenet_v2" in out
    assert describe_main(["groups", "--backbone", "condensenet74", "--input-shape", "3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "stage 0 block 3: 2 layers, shortcut identity, concat, avg pool" in out
    assert "stage 4 block 7: 2 layers, shortcut identity, concat, then bn relu" in out
    assert describe_main(["igc", "--backbone", "igc_resnet18", "--input-shape", "3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "stage 1 block 0: 2 layers, shortcut projection (groups 200), add, then relu" in out
