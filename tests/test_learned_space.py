"""The ``learned`` space: the property test of every space, its size, baselines, and ``mixed``."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch

from evaluators.cost import count_macs
from spaces import Arch, HeadSpec, LayerSpec, build_model, get_space
from spaces.learned import learned_space
from spaces.space import SpaceError

optuna.logging.set_verbosity(optuna.logging.WARNING)
DRAWS = 500


pytestmark = pytest.mark.usefixtures("one_thread")


def test_random_draws_valid_built_round_trip_and_every_choice_reached():
    space = get_space("learned")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {}
    choices: dict[str, tuple] = {}
    ops = set()
    x = torch.randn(2, *space.input_shape)
    for n in range(DRAWS):
        trial = study.ask()
        arch = space.sample(trial)
        assert isinstance(arch, Arch)
        assert Arch.from_json(arch.to_json()) == arch
        assert space.arch_from_params(dict(trial.params)) == arch
        model = build_model(arch, seed=n).eval()
        with torch.no_grad():
            assert model(x).shape == (2, space.num_classes)
        for name, value in trial.params.items():
            seen.setdefault(name, set()).add(value)
            choices[name] = tuple(trial.distributions[name].choices)
        ops.update(layer.op for layer in arch.layers)
        study.tell(trial, 0.0)
    assert ops == {"conv", "group", "condense", "flgc", "dgc"}
    assert set(seen) == set(space.param_names())
    for name, values in choices.items():
        assert seen[name] == set(values), name


def _tiny_backbone() -> Arch:
    """3 layers, one with widths that are not powers of two (no DGC) or multiples of 8."""
    stem = LayerSpec("conv", 8)
    layers = (LayerSpec("conv", 16, stride=2), LayerSpec("conv", 12), LayerSpec("conv", 16, stride=2))
    return Arch((1, 8, 8), 4, stem, layers, HeadSpec())


def _expected_layer_count(cin: int, cout: int, fixed: bool) -> int:
    """Closed-form count of one layer's options, written independently of the families."""
    g_common = [g for g in range(1, min(cin, cout) + 1) if cin % g == 0 and cout % g == 0]
    fixed_n = sum(1 if g == 1 or g == cout else 2 for g in g_common)  # shuffle only where it moves
    condense_n = sum(cout % g == 0 for g in (1, 2, 4, 8)) * sum(cin % c == 0 for c in (2, 4, 8))
    flgc_n = sum(cin % g == 0 and cout % g == 0 for g in (2, 4, 8, 16))
    pow2 = lambda n: n & (n - 1) == 0  # noqa: E731
    dgc_n = sum(g <= min(cin, cout) for g in (2, 4, 8, 16)) if pow2(cin) and pow2(cout) else 0
    return (fixed_n if fixed else 0) + condense_n + flgc_n + dgc_n


@pytest.mark.parametrize("fixed", [True, False])
def test_size_equals_brute_force_and_closed_form(fixed):
    base = _tiny_backbone()
    space = learned_space(base, fixed=fixed)
    archs = {space.arch_from_params(p).to_json() for p in space.iter_params()}
    widths = [(8, 16), (16, 12), (12, 16)]
    assert len(archs) == space.size == math.prod(_expected_layer_count(i, o, fixed) for i, o in widths)
    assert not any(json.loads(a)["layers"][1]["op"] == "dgc" for a in archs)  # 16->12: no DGC


def test_baselines_are_members_and_match_fixed_macs():
    space = get_space("learned")
    params = space.baseline_params()
    assert {"condense-G4", "flgc-G4", "dgc-G4", "group-g4", "dense"} <= set(params)
    shape = space.input_shape
    macs = {}
    for name, arch in space.baselines().items():
        assert space.arch_from_params(params[name]) == arch
        macs[name] = count_macs(build_model(arch), shape)
    cond = space.baselines()["condense-G4"]
    assert all(l.op == "condense" and l.p == {"groups": 4, "condense_factor": 4} for l in cond.layers)
    # learning the grouping vs fixing it, at the same condensed MACs
    assert macs["condense-G4"] == macs["flgc-G4"] == macs["dgc-G4"] == macs["group-g4"] < macs["dense"]


def test_learned_ops_only_option_and_bad_option():
    space = get_space("learned", fixed=False)
    assert set(space.baseline_params()) == {"condense-G4", "flgc-G4", "dgc-G4"}
    with pytest.raises(SpaceError, match="fixed"):
        get_space("learned", fixed="yes")
    with pytest.raises(SpaceError, match="no option"):
        get_space("learned", groups=4)


def test_non_power_of_two_widths_drop_dgc_only():
    space = get_space("learned", widths=(1.5,))  # 24, 48, 96, 192 channels
    ops = {o.layer.op for i in range(space.n_layers) for o in space.layer_options(i)}
    assert {"condense", "flgc"} <= ops and "dgc" not in ops
    assert "dgc-G4" not in space.baseline_params()


def test_mixed_space_gains_the_learned_families():
    mixed = get_space("mixed")
    names = [f.name for f in mixed.families]
    assert {"condense", "flgc", "dgc"} <= set(names)
    ops = {o.choice[0][1] for o in mixed.layer_options(0)}
    assert {"condense", "flgc", "dgc"} <= ops
    assert {"condense-G4", "flgc-G4", "dgc-G4"} <= set(mixed.baseline_params())
    arch = mixed.baselines()["condense-G4"]
    assert mixed.arch_from_params(mixed.params_of(arch)) == arch
