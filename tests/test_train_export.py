"""search.train: one epoch on digits, every output file checked; ONNX parity; bad inputs.

The arch mixes learned ops (FLGC, CondenseNet), a shuffled group conv and dense convs on the
``small`` backbone, so the saved model is a condensed one whose structure comes from training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from evaluators.cost import count_macs, count_params
from evaluators.data import load_data
from evaluators.train_proxy import evaluate
from search.cli_errors import run_cli
from search.train import ShiftAugmented, augmentation_for, load_trained, main
from spaces import build_model, get_backbone, load_arch, save_arch
from spaces.ops.condense import IndexedGroupConv

ROOT = Path(__file__).resolve().parents[1]
LIMIT = "300"


def mixed_arch():
    base = get_backbone("small", (1, 32, 32), 10)
    ops = [("flgc", {"groups": 4}), ("condense", {"groups": 4, "condense_factor": 4}),
           ("group", {"groups": 4, "shuffle": True}), ("conv", {}), ("flgc", {"groups": 2}), ("conv", {})]
    arch = base
    for i, (op, params) in enumerate(ops):
        arch = arch.replace_layer(i, arch.layers[i].replace(op=op, params=params))
    return arch


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("train")
    save_arch(mixed_arch(), tmp / "best.json")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), GROUPNAS_LATENCY_LOCK=str(tmp / "lock"))
    res = subprocess.run([sys.executable, "-m", "search.train", str(tmp / "best.json"), "--data", "digits",
                          "--epochs", "1", "--data-limit", LIMIT, "--threads", "1"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return tmp / "best-trained", res.stdout     # the documented default --out


def test_every_file_and_metric(trained: tuple[Path, str]) -> None:
    out, stdout = trained
    assert "epoch   1/1" in stdout and "held-out test accuracy" in stdout
    assert load_arch(out / "arch.json") == mixed_arch()
    state = torch.load(out / "weights.pt", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    model = load_trained(out)
    assert sum(isinstance(m, IndexedGroupConv) for m in model.modules()) == 3   # condensed learned ops
    m = json.loads((out / "metrics.json").read_text())
    # accuracies recomputed independently from the reloaded weights on the same split
    data = load_data("digits", seed=0, limit=int(LIMIT))
    assert m["test_accuracy"] == pytest.approx(evaluate(model, data.test.x, data.test.y))
    assert m["val_accuracy"] == pytest.approx(evaluate(model, data.val.x, data.val.y))
    assert m["val_history"] == [pytest.approx(m["val_accuracy"])] and m["epochs"] == 1
    assert m["params"] == count_params(model) and m["macs"] == count_macs(model, (1, 32, 32))
    # the cost protocol prices a learned op at its condensed size before training: same figures
    untrained = build_model(mixed_arch())
    assert m["params"] == count_params(untrained) and m["macs"] == count_macs(untrained, (1, 32, 32))
    assert m["learned"] and m["condensed"] and "load_trained" in m["load"]
    assert m["latency"]["median_ms"] > 0 and m["latency"]["threads"] == 1
    # timed as search.run times a trial by default: inference form at 1x224x224 on onnxruntime
    assert m["latency"]["shape"] == [1, 224, 224] and m["latency"]["runtime"] == "onnxruntime"
    assert "at 1x224x224 on onnxruntime" in stdout
    assert m["augmentation"] == {"shift_px": 2, "flip": False} and m["seconds"] > 0
    assert {"torch", "onnx", "onnxruntime", "python", "numpy"} <= set(m["versions"])
    assert m["onnx"]["parity"]["ok"] and m["onnx"]["parity"]["atol"] == 1e-4 and m["onnx"]["parity"]["rtol"] == 1e-3


def test_onnx_parity_dynamic_batch(trained: tuple[Path, str]) -> None:
    out, _ = trained
    onnx.checker.check_model(onnx.load(str(out / "model.onnx")))
    model = load_trained(out)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    for batch in (1, 7):
        x = torch.randn((batch, 1, 32, 32), generator=gen)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.inference_mode():
            ref = model(x).numpy()
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)
        assert np.abs(ref).max() > 1e-3           # not a trivially zero output


def test_dense_arch_rebuilds_with_build_model(tmp_path: Path) -> None:
    """The recipe for an arch without learned ops: build_model + load_state_dict, strictly."""
    save_arch(get_backbone("small"), tmp_path / "small.json")
    assert main([str(tmp_path / "small.json"), "--data", "digits", "--epochs", "1", "--data-limit", "200",
                 "--threads", "1", "--no-latency", "--out", str(tmp_path / "o")]) == 0
    model = build_model(load_arch(tmp_path / "o" / "arch.json"))
    model.load_state_dict(torch.load(tmp_path / "o" / "weights.pt", weights_only=True))
    model.eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model(x), load_trained(tmp_path / "o")(x))
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert not m["learned"] and m["latency"] is None and "build_model" in m["load"]


def test_shift_augmentation_is_a_zero_filled_shift() -> None:
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    view = ShiftAugmented(x, pad=2, flip=False, seed=3)

    def shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        out = torch.zeros_like(img)
        for i in range(6):
            for j in range(6):
                if 0 <= i + dy < 6 and 0 <= j + dx < 6:
                    out[:, i, j] = img[:, i + dy, j + dx]
        return out

    seen = set()
    for _ in range(30):
        batch = view[torch.tensor([0, 1])]
        for k in range(2):
            match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                     if torch.equal(batch[k], shifted(x[k], dy, dx))]
            assert len(match) == 1
            seen.add(match[0])
    assert len(seen) > 5                          # the shifts vary
    assert augmentation_for("digits", (1, 32, 32), "auto") == (2, False)    # no flips for digits
    assert augmentation_for("cifar10", (3, 32, 32), "auto") == (4, True)
    assert augmentation_for("npz", (3, 64, 64), "auto") == (8, False)


def _one_line_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, args, prog="search.train")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_inputs(tmp_path: Path, capsys) -> None:
    res = subprocess.run([sys.executable, "-m", "search.train", str(tmp_path / "missing.json")], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"search.train: error: arch file not found: {tmp_path / 'missing.json'}"]

    (tmp_path / "bad.json").write_text('{"input_shape": [1, 32, 32], ')
    assert "not valid JSON" in _one_line_error([str(tmp_path / "bad.json")], capsys)
    save_arch(get_backbone("small", (3, 32, 32), 10), tmp_path / "rgb.json")
    msg = _one_line_error([str(tmp_path / "rgb.json"), "--data", "digits", "--epochs", "1"], capsys)
    assert "input_shape (3, 32, 32) does not match" in msg and "(1, 32, 32)" in msg
    save_arch(get_backbone("small", (1, 32, 32), 5), tmp_path / "c5.json")
    assert "num_classes 5 does not match" in _one_line_error([str(tmp_path / "c5.json"), "--data", "digits"], capsys)
    zero_epochs = [str(tmp_path / "c5.json"), "--data", "digits", "--epochs", "0"]
    assert "--epochs must be positive" in _one_line_error(zero_epochs, capsys)
    (tmp_path / "small-trained").mkdir()
    (tmp_path / "small-trained" / "weights.pt").write_bytes(b"")
    save_arch(get_backbone("small"), tmp_path / "small.json")
    assert "--overwrite" in _one_line_error([str(tmp_path / "small.json"), "--data", "digits"], capsys)
    assert not (tmp_path / "rgb-trained").exists()    # nothing written for a rejected arch
