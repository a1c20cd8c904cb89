"""The at-epoch pruning rule grants the candidate the completed trials' typical gain to the end."""

from __future__ import annotations

import random
import statistics

import pytest

from search.pruning import MIN_CURVES, FrontPruner, Member

OBJ = ["accuracy", "latency"]


def _member(n: int, lat: float, curve: list[float]) -> Member:
    return Member(n, {"accuracy": curve[-1], "latency_ms": lat, "latency_iqr_ms": 0.0, "acc_epochs": curve})


# a fast starter that plateaus (depthwise-like), then three costlier slow starters that end above it
FAST = _member(0, 1.0, [0.79, 0.82, 0.835])
SLOW = [_member(1, 3.0, [0.76, 0.83, 0.855]), _member(2, 3.0, [0.77, 0.84, 0.86]),
        _member(3, 3.0, [0.75, 0.82, 0.85])]


def _cand(lat: float, curve: list[float]) -> dict:
    return {"latency_ms": lat, "latency_iqr_ms": 0.0, "acc_epochs": curve}


def test_typical_gain_is_the_median_over_every_completed_trial_not_only_the_front() -> None:
    p = FrontPruner(OBJ, [FAST, *SLOW])
    assert {m.number for m in p.front} == {0, 2}       # trials 1 and 3 are dominated by trial 2 ...
    for e in (1, 2):                                   # ... and still count in the gains
        want = statistics.median(m.get("accuracy") - m.get("acc_epochs")[e - 1] for m in [FAST, *SLOW])
        assert p.typical_gain(e) == pytest.approx(want)
    assert p.typical_gain(3) is None                    # nobody trained past epoch 3


def test_a_slow_starter_behind_a_fast_plateauing_member_is_kept_a_hopeless_one_stopped() -> None:
    new, old = FrontPruner(OBJ, [FAST, *SLOW]), FrontPruner(OBJ, [FAST, *SLOW], gain_quantile=None)
    slow_start = _cand(2.0, [0.765])        # 0.025 behind the fast member at epoch 1, like the slow ones
    assert old.at_epoch(slow_start, 1) is not None          # epoch-1 accuracies alone: stopped
    assert new.at_epoch(slow_start, 1) is None              # 0.765 + median gain 0.0925 > 0.835 - 0.01
    hopeless = _cand(2.0, [0.70])                            # 0.70 + 0.0925 < 0.825
    why = new.at_epoch(hopeless, 1)
    assert why is not None and "front member trial 0" in why
    # costlier than every front member: nothing of comparable cost to judge it by
    assert new.at_epoch(_cand(0.5, [0.10]), 1) is None


def test_too_few_curves_fall_back_to_the_members_own_gain() -> None:
    few = [FAST, SLOW[1]][: MIN_CURVES - 1]
    p = FrontPruner(OBJ, few)
    assert p.typical_gain(1) is None
    assert p.at_epoch(_cand(2.0, [0.765]), 1) is not None    # 0.765 < 0.79 - 0.01, as the old rule


def test_the_rule_never_stops_a_candidate_that_epoch_accuracies_alone_would_keep() -> None:
    rng = random.Random(7)
    fired = 0
    for _ in range(300):
        members = []
        for n in range(rng.randint(1, 8)):
            a1 = rng.uniform(0.5, 0.8)
            members.append(_member(n, rng.uniform(0.5, 3.0), [a1, a1 + rng.uniform(0, 0.1), a1 + rng.uniform(0, 0.15)]))
        cand = _cand(rng.uniform(0.5, 3.0), [rng.uniform(0.4, 0.8), rng.uniform(0.5, 0.9)])
        e = rng.choice([1, 2])
        new = FrontPruner(OBJ, members).at_epoch(cand, e)
        old = FrontPruner(OBJ, members, gain_quantile=None).at_epoch(cand, e)
        assert new is None or old is not None
        fired += new is not None
    assert fired > 10  # the rule still prunes
