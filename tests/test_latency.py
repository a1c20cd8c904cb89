"""Measured latency: sane figures, threads and format recorded, ranking, the machine lock."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest
import torch
from torch import nn

from evaluators.latency import FORMATS, LatencyError, LockBusy, measure_latency, measurement_lock
from spaces import build_model, get_backbone


@pytest.fixture(scope="module")
def _cache(tmp_path_factory):
    return tmp_path_factory.mktemp("latency-cache")


@pytest.fixture(autouse=True)
def _private_lock(tmp_path, monkeypatch, _cache):
    monkeypatch.setenv("GROUPNAS_LATENCY_LOCK", str(tmp_path / "latency.lock"))
    monkeypatch.setenv("GROUPNAS_CACHE_DIR", str(_cache))  # calibrated once per shape in this module


def test_sane_figures_threads_and_format_recorded():
    model = build_model(get_backbone("small", (1, 32, 32), 10, width=0.5)).train()
    weight = model.stem.op.conv.weight
    torch.set_num_threads(2)
    # a tolerance no window can miss: converges at exactly `window` pairs per format
    r = measure_latency(model, (1, 32, 32), threads=1, max_seconds=5.0, tolerance=1.0, window=20,
                        calibrate_seconds=0.3)
    assert torch.get_num_threads() == 2  # restored
    assert r.threads == 1 and r.device == "cpu" and r.batch_size == 1 and r.runtime == "torch"
    assert r.input_shape == (1, 32, 32) and r.to_dict()["input_shape"] == [1, 32, 32]
    assert r.memory_format in FORMATS and set(r.formats) == set(FORMATS)
    assert r.formats[r.memory_format] == min(r.formats.values()) == r.median_ms
    assert r.converged and r.runs == r.drawn >= 20  # more when a burst of load hit the first window
    assert r.median_ms == pytest.approx(r.ref_ratio * r.ref_ms, rel=1e-12)
    assert r.iqr_ms == pytest.approx(r.spread * r.median_ms, rel=1e-9)
    assert 0.01 < r.median_ms < 1000 and r.ref_ms > 0 and r.raw_ms > 0 and r.node
    assert r.calibration.endswith("|t1|b1|1x32x32|ref-v1")
    rec = r.record()
    assert rec["latency_ms"] == r.median_ms and rec["latency_shape"] == [1, 32, 32]
    assert rec["latency_runtime"] == "torch"
    assert rec["latency_ref_ratio"] == r.ref_ratio and rec["latency_batch"] == 1 and rec["threads"] == 1
    # the caller's model is untouched: same tensors, same layout, same mode
    assert model.training and model.stem.op.conv.weight is weight
    assert weight.is_contiguous()


_SEEN: list[frozenset] = []  # module level: measure_latency times deep copies of the model


class _AffinityProbe(nn.Module):
    """A conv that notes on which cores its caller may run during each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        _SEEN.append(frozenset(os.sched_getaffinity(0)))
        return self.conv(x)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux affinity and two cores")
def test_a_one_thread_measurement_runs_on_one_core_and_restores_affinity():
    before = os.sched_getaffinity(0)
    _SEEN.clear()
    measure_latency(_AffinityProbe(), (1, 8, 8), threads=1, max_seconds=0.3, calibrate_seconds=0.2)
    assert _SEEN and all(len(s) == 1 for s in _SEEN), {len(s) for s in _SEEN}
    assert len(set(_SEEN)) == 1  # the same core for the whole window
    assert os.sched_getaffinity(0) == before


def test_time_cap_reports_unconverged_but_usable():
    m = nn.Conv2d(4, 4, 3)
    r = measure_latency(m, (4, 16, 16), threads=1, max_seconds=0.2, window=100_000, formats=("contiguous",),
                        calibrate_seconds=0.3)
    assert not r.converged and r.runs >= 1 and r.median_ms > 0 and set(r.formats) == {"contiguous"}


def test_batch_makes_it_slower():
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
    one = measure_latency(model, (16, 32, 32), batch_size=1, threads=1, max_seconds=2.0, calibrate_seconds=0.3)
    many = measure_latency(model, (16, 32, 32), batch_size=16, threads=1, max_seconds=2.0, calibrate_seconds=0.3)
    assert many.batch_size == 16
    assert many.median_ms > 2 * one.median_ms  # 16x the work; a loose bound for busy machines


def _dwsep(c: int) -> nn.Module:
    from spaces import OPS, make_op

    if "dwsep" in OPS:
        return make_op("dwsep", c, c, 3, 1)
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False))


def test_dense_3x3_slower_than_depthwise_separable_at_c128():
    dense = nn.Conv2d(128, 128, 3, padding=1, bias=False)
    dws = _dwsep(128)
    a = measure_latency(dense, (128, 16, 16), threads=1, max_seconds=1.0, calibrate_seconds=0.3)
    b = measure_latency(dws, (128, 16, 16), threads=1, max_seconds=1.0, calibrate_seconds=0.3)
    assert a.median_ms > b.median_ms, (a, b)


def test_bad_arguments_and_missing_cuda():
    m = nn.Conv2d(1, 1, 3)
    with pytest.raises(ValueError, match="input_shape"):
        measure_latency(m, (1, 8))
    with pytest.raises(ValueError, match="threads"):
        measure_latency(m, (1, 8, 8), threads=0)
    with pytest.raises(ValueError, match="formats"):
        measure_latency(m, (1, 8, 8), formats=("nhwc",))
    with pytest.raises(ValueError, match="device"):
        measure_latency(m, (1, 8, 8), device="tpu")
    with pytest.raises(ValueError, match="runtime"):
        measure_latency(m, (1, 8, 8), runtime="tvm")
    if not torch.cuda.is_available():
        with pytest.raises(LatencyError, match="no CUDA GPU"):
            measure_latency(m, (1, 8, 8), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_measurement():
    r = measure_latency(nn.Conv2d(16, 16, 3, padding=1), (16, 32, 32), device="cuda", max_seconds=0.5)
    assert r.device.startswith("cuda") and r.median_ms > 0


def _hold(path: str, held, release) -> None:
    import os

    os.environ["GROUPNAS_LATENCY_LOCK"] = path
    from evaluators.latency import measurement_lock as lock

    with lock():
        held.set()
        release.wait(30)


def test_lock_excludes_a_second_process(tmp_path):
    path = str(tmp_path / "latency.lock")
    ctx = mp.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(path, held, release))
    proc.start()
    try:
        assert held.wait(60), "the child never took the lock"
        with pytest.raises(LockBusy, match="another process"):
            with measurement_lock(blocking=False):
                pass
        with pytest.raises(LockBusy, match="after 0.2 s"):
            measure_latency(nn.Conv2d(1, 1, 3), (1, 8, 8), lock_timeout=0.2, calibrate_seconds=0.3)
    finally:
        release.set()
        proc.join(30)
    assert proc.exitcode == 0
    with measurement_lock(timeout=10):  # free again; re-entrant inside one process
        r = measure_latency(nn.Conv2d(1, 1, 3), (1, 8, 8), max_seconds=0.2, calibrate_seconds=0.3)
    assert r.median_ms > 0


def _hold_slot(path, ready, release):
    import os
    os.environ["GROUPNAS_LATENCY_LOCK"] = path
    from evaluators.latency import compute_slot
    with compute_slot():
        ready.set()
        release.wait(10)


def test_measurement_waits_for_compute_slots_and_blocks_new_ones(tmp_path, monkeypatch):
    """A training step elsewhere (a compute slot) keeps a measurement from starting, and a
    measurement that holds the lock keeps new compute slots from starting."""
    import multiprocessing as mp

    from evaluators.latency import LockBusy, compute_slot, measurement_lock

    path = str(tmp_path / "lat.lock")
    monkeypatch.setenv("GROUPNAS_LATENCY_LOCK", path)
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_slot, args=(path, ready, release))
    proc.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockBusy):
            with measurement_lock(blocking=False):
                pass
        # two compute slots may be held at once (other trials keep training together)
        with compute_slot():
            pass
    finally:
        release.set()
        proc.join(30)
    with measurement_lock(timeout=5):
        child_ready, child_release = ctx.Event(), ctx.Event()
        child = ctx.Process(target=_hold_slot, args=(path, child_ready, child_release))
        child.start()
        assert not child_ready.wait(1.0)  # blocked while the measurement holds the lock
    assert child_ready.wait(30)  # and free to go once it is released
    child_release.set()
    child.join(30)
