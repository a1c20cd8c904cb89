"""Latency model: fit / predict round trip on a tiny hand-made table, persistence, lazy filling."""

from __future__ import annotations

import json
import zlib

import pytest

from evaluators import calibration as cal, latency_model as lm
from spaces import get_backbone

SHAPE = (1, 16, 16)


@pytest.fixture(autouse=True)
def _private(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPNAS_LATENCY_LOCK", str(tmp_path / "latency.lock"))
    monkeypatch.setenv("GROUPNAS_CACHE_DIR", str(tmp_path / "cache"))
    lm._clear_memo()
    cal._clear_memo()
    yield
    lm._clear_memo()
    cal._clear_memo()


def _archs() -> list:
    base = get_backbone("small", SHAPE, 10)
    out = [base]
    for i, g in [(1, 2), (2, 4), (3, 2), (4, 8), (1, 4), (5, 2), (2, 2), (3, 4)]:
        layer = base.layers[i]
        out.append(base.replace_layer(i, layer.replace(op="group", params={"groups": g})))
    return out


def _unit_ms(key: str) -> dict[str, float]:
    v = 0.01 * (1 + zlib.crc32(key.encode()) % 17)
    return {"contiguous": v, "channels_last": 1.5 * v if "group" in key else 0.8 * v}


def _fill_table(archs: list) -> None:
    doc = lm._load(lm.table_path())
    setting = lm._setting("torch", 1, 1, SHAPE)
    for a in archs:
        for key, _, _ in lm.unit_keys(a, 1):
            doc["units"][f"{setting}|{key}"] = {"ms": _unit_ms(key)}


def _layer_sum_by_hand(arch) -> float:
    units = [_unit_ms(k) for k, _, _ in lm.unit_keys(arch, 1)]
    return min(sum(u[f] for u in units) for f in ("contiguous", "channels_last"))


def _truth(arch) -> float:  # a known law the correction must recover: group layers cost 1.5x their sum
    units = [_unit_ms(k) for k, _, _ in lm.unit_keys(arch, 1)]
    fmt = min(("contiguous", "channels_last"), key=lambda f: sum(u[f] for u in units))
    ops = [arch.stem.op, *(layer.op for layer in arch.layers), "head"]
    group = sum(u[fmt] for u, op in zip(units, ops) if op == "group")
    return 1.3 * _layer_sum_by_hand(arch) + 0.2 + 0.5 * group


def test_fit_predict_round_trip_on_a_tiny_table(monkeypatch):
    archs = _archs()
    _fill_table(archs)
    monkeypatch.setattr(lm, "_measure_units", lambda *a, **k: pytest.fail("nothing should be measured"))
    assert lm.layer_sum(archs[3]) == pytest.approx(_layer_sum_by_hand(archs[3]), rel=1e-12)
    fit_set, test_set = archs[:6], archs[6:]
    fit = lm.fit_correction(fit_set, [_truth(a) for a in fit_set], ridge=0.0)
    assert fit["n"] == 6 and fit["families"] == ["conv", "group"] and fit["residual_median_rel"] < 1e-4
    for a in test_set:  # never seen by the fit
        assert lm.predict_latency(a) == pytest.approx(_truth(a), rel=1e-4)
    # stored in the per-machine table and reused by a fresh process
    doc = json.loads(lm.table_path().read_text())
    assert lm._setting("torch", 1, 1, SHAPE) in doc["fits"]
    lm._clear_memo()
    assert lm.predict_latency(test_set[0]) == pytest.approx(_truth(test_set[0]), rel=1e-4)
    # another setting has no fit: the bare layer sum (here: all units missing -> measured lazily)
    calls = []
    monkeypatch.setattr(lm, "_measure_units", lambda arch, missing, *a, **k: calls.append(len(missing)))
    with pytest.raises(KeyError):
        lm.predict_latency(test_set[0], threads=2)
    assert calls and calls[0] == len({k for k, _, _ in lm.unit_keys(test_set[0], 1)})


def test_units_timed_in_an_older_inference_form_are_timed_again(monkeypatch):
    """A change to the inference form changes what a layer costs: the table filled under one
    ``INFERENCE_FORM_VERSION`` is not read under the next, and every unit is measured anew."""
    from spaces import inference

    arch = _archs()[2]
    _fill_table([arch])
    monkeypatch.setattr(lm, "_measure_units", lambda *a, **k: pytest.fail("nothing should be measured"))
    assert lm.layer_sum(arch) == pytest.approx(_layer_sum_by_hand(arch), rel=1e-12)
    monkeypatch.setattr(inference, "INFERENCE_FORM_VERSION", inference.INFERENCE_FORM_VERSION + 1)
    calls = []
    monkeypatch.setattr(lm, "_measure_units", lambda arch, missing, *a, **k: calls.append(len(missing)))
    with pytest.raises(KeyError):
        lm.layer_sum(arch)
    assert calls == [len({k for k, _, _ in lm.unit_keys(arch, 1)})]


def test_fit_needs_three_archs():
    with pytest.raises(ValueError, match="at least 3"):
        lm.fit_correction(_archs()[:2], [1.0, 2.0])


def test_missing_layers_are_measured_once_and_kept():
    arch = get_backbone("small", (1, 8, 8), 10, width=0.25)
    s = lm.layer_sum(arch, seconds=0.05)
    assert s > 0
    doc = json.loads(lm.table_path().read_text())
    keys = {k for k, _, _ in lm.unit_keys(arch, 1)}
    stored = [k for k in doc["units"] if any(k.endswith("|" + key) for key in keys)]
    assert len(stored) == len(keys)
    for k in stored:
        assert set(doc["units"][k]["ms"]) == {"contiguous", "channels_last"} and doc["units"][k]["ratio"]
    lm._clear_memo()
    assert lm.layer_sum(arch) == pytest.approx(s, rel=1e-12)  # read back, not remeasured
    # at another input shape the same arch has other layers (larger maps): measured anew, as new entries
    assert lm.layer_sum(arch, (1, 32, 32), seconds=0.05) > 0
    doc2 = json.loads(lm.table_path().read_text())
    assert set(doc["units"]) < set(doc2["units"])
    assert all(doc2["units"][k] == doc["units"][k] for k in doc["units"])  # old entries untouched


def test_default_ridge_is_chosen_by_leave_one_out_and_recovers_an_exact_law(monkeypatch):
    archs = _archs()
    _fill_table(archs)
    monkeypatch.setattr(lm, "_measure_units", lambda *a, **k: pytest.fail("nothing should be measured"))
    fit = lm.fit_correction(archs[:6], [_truth(a) for a in archs[:6]])
    assert fit["ridge"] == 0.0 and set(fit["loo_median_rel"]) == {str(r) for r in lm.RIDGES}
    assert lm.predict_latency(archs[7]) == pytest.approx(_truth(archs[7]), rel=1e-4)
    # a law with no family term: a S + b; shrinking the family terms away loses nothing
    fit = lm.fit_correction(archs[:6], [2.0 * lm.layer_sum(a) + 0.1 for a in archs[:6]])
    assert lm.predict_latency(archs[8]) == pytest.approx(2.0 * lm.layer_sum(archs[8]) + 0.1, rel=1e-4)


def test_blocks_are_the_units_of_a_block_backbone():
    arch = get_backbone("resnet20", (3, 32, 32), 10)
    keys = lm.unit_keys(arch, 1)
    assert [k for _, k, _ in keys] == ["stem", *["block"] * len(arch.blocks), "head"]
    assert len(arch.layers) > len(arch.blocks)          # two 3x3 layers per basic block, one unit
    mixed = arch.replace_layer(1, arch.layers[1].replace(op="group", params={"groups": 2}))
    shares = lm.unit_families(mixed)
    assert shares[1] == {"conv": 0.5, "group": 0.5} and shares[2] == {"conv": 1.0}
    assert lm.arch_families(mixed) == {"conv", "group"}


def test_the_fit_minimises_relative_error():
    """``a S + b`` fitted in relative terms equals numpy's weighted polyfit with weights 1 / y
    (an independent solver), and differs from the plain least-squares line on data where the two
    disagree (a 100 ms net off the line would otherwise dominate the 2 ms ones)."""
    import numpy as np

    s = np.array([1.0, 2.0, 3.0, 4.0, 50.0, 100.0])
    y = np.array([1.2, 2.1, 3.3, 4.0, 60.0, 90.0])
    x = np.stack([s, np.ones_like(s)], axis=1)
    coef = lm._solve(x, y, float("inf"))
    np.testing.assert_allclose(coef, np.polyfit(s, y, 1, w=1 / y), rtol=1e-9)
    plain = np.polyfit(s, y, 1)
    assert abs(coef[1] - plain[1]) > 0.2  # the intercepts differ: the weighting matters here
    rel = lambda c: float(np.sum(((x @ c - y) / y) ** 2))  # noqa: E731
    assert rel(coef) < rel(plain)
