"""Loaders on tiny files of the real formats; stratified, seeded splits; clear errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators.data import DataError, check_arch_data, load_data, stratified_split
from spaces import get_backbone

# ----------------------------------------------------------------------------- digits

def test_digits_shapes_sizes_and_normalisation():
    d = load_data("digits", seed=0)
    assert d.input_shape == (1, 32, 32) and d.num_classes == 10
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert d.x_train.shape[1:] == (1, 32, 32) and d.x_train.dtype == torch.float32
    assert d.y_train.dtype == torch.int64
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3
    # stratified: each class's share of val/test within one example of 20 %
    counts = np.bincount(np.concatenate([d.y_train, d.y_val, d.y_test]), minlength=10)
    for split in (d.val, d.test):
        per_class = np.bincount(split.y.numpy(), minlength=10)
        assert np.all(np.abs(per_class - 0.2 * counts) <= 1)


def test_digits_split_fixed_by_seed():
    a, b, c = load_data(seed=3), load_data(seed=3), load_data(seed=4)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_val, c.y_val)


def test_digits_image_size_keeps_the_original_pixels():
    d = load_data("digits", image_size=8)
    assert d.input_shape == (1, 8, 8)
    from sklearn.datasets import load_digits
    raw = load_digits().images.reshape(len(d.y_train) + len(d.y_val) + len(d.y_test), -1)
    # every normalised val image is an affine image of some original one: check the first
    v = d.x_val[0].flatten().numpy()
    dist = [np.corrcoef(v, r)[0, 1] if r.std() > 0 else 0 for r in raw]
    assert max(dist) > 0.9999


def test_stratified_split_is_a_partition():
    y = np.repeat(np.arange(5), [10, 20, 7, 3, 50])
    parts = stratified_split(y, (0.2, 0.3), seed=1)
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(len(y)))
    for c, n in zip(range(5), [10, 20, 7, 3, 50]):
        assert abs(np.sum(y[parts[0]] == c) - max(1, round(0.2 * n))) <= 0
        assert np.sum(y[parts[2]] == c) >= 1


def test_limit_keeps_a_stratified_subset():
    d = load_data(limit=500)
    total = len(d.train) + len(d.val) + len(d.test)
    assert 495 <= total <= 505
    assert set(np.unique(d.y_train.numpy())) == set(range(10))


def test_unknown_name_and_bad_fractions():
    with pytest.raises(DataError, match="known data sets: digits, fashion-mnist, cifar10, npz, folder"):
        load_data("mnist")
    with pytest.raises(DataError, match="val_fraction"):
        load_data(val_fraction=1.5)
    with pytest.raises(DataError, match="below 1"):
        load_data(val_fraction=0.6, test_fraction=0.5)


def test_check_arch_data():
    d = load_data()
    check_arch_data(get_backbone("small", (1, 32, 32), 10), d)
    with pytest.raises(DataError, match=r"input_shape \(3, 32, 32\).*\(1, 32, 32\)"):
        check_arch_data(get_backbone("small", (3, 32, 32), 10), d)
    with pytest.raises(DataError, match="num_classes 7"):
        check_arch_data(get_backbone("small", (1, 32, 32), 7), d)


# ----------------------------------------------------------------------------- cifar10

def _write_cifar(root: Path, n_train: int = 10, n_test: int = 10, seed: int = 0, protocol: int = 2) -> dict:
    """A tiny folder in the exact official format: pickled dicts with bytes keys."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    raw = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else n_train
        # channel c takes values in [60c, 60c + 50]: a wrong (N,3072) -> (N,3,32,32) layout mixes them
        data = np.concatenate([rng.integers(60 * c, 60 * c + 50, size=(n, 1024)) for c in range(3)],
                              axis=1).astype(np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(n) % 10)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        with (folder / name).open("wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
        raw[name] = (data, labels)
    return raw


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_tiny_folder(tmp_path, protocol):
    raw = _write_cifar(tmp_path, protocol=protocol)
    d = load_data("cifar10", tmp_path / "cifar-10-batches-py", seed=0)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert len(d.train) + len(d.val) == 50 and len(d.test) == 10
    data, labels = raw["test_batch"]
    assert d.y_test.tolist() == labels  # the official test batch is the test split, in order
    img = data.reshape(-1, 3, 32, 32).astype(np.float64) / 255
    for c in range(3):  # each channel is an affine (normalised) image of the same raw channel
        slope, icpt = np.polyfit(img[:, c].ravel(), d.x_test[:, c].numpy().ravel(), 1)
        fit = slope * img[:, c].ravel() + icpt
        assert slope > 0 and np.max(np.abs(fit - d.x_test[:, c].numpy().ravel())) < 1e-3
    # the parent folder is accepted too
    d2 = load_data("cifar10", tmp_path, seed=0)
    assert torch.equal(d2.x_train, d.x_train)


def test_cifar10_missing_folder_and_files(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_data("cifar10", tmp_path / "nowhere")
    with pytest.raises(DataError, match="--data-dir"):
        load_data("cifar10")
    _write_cifar(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(DataError, match="lacks test_batch"):
        load_data("cifar10", tmp_path)


def test_cifar10_bad_shape_is_named(tmp_path):
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with path.open("wb") as fh:
        pickle.dump({b"data": np.zeros((4, 1000), np.uint8), b"labels": [0, 1, 2, 3]}, fh, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_2.*\(N, 3072\)"):
        load_data("cifar10", tmp_path)


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar10_never_executes_pickled_code(tmp_path):
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with (tmp_path / "cifar-10-batches-py" / "data_batch_1").open("wb") as fh:
        pickle.dump({b"data": _Evil(str(marker)), b"labels": []}, fh, protocol=2)
    with pytest.raises(DataError, match="refusing global"):
        load_data("cifar10", tmp_path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- npz

def test_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2, 8, 8)).astype(np.float32)
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_data("npz", tmp_path / "d.npz", seed=1)
    assert d.input_shape == (2, 8, 8) and d.num_classes == 4
    assert len(d.train) + len(d.val) + len(d.test) == 40
    for split in (d.train, d.val, d.test):
        assert set(split.y.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    "arrays, needle",
    [
        ({"x": np.zeros((4, 8, 8)), "y": np.zeros(4)}, r"x must have shape \(N, C, H, W\)"),
        ({"x": np.zeros((4, 1, 8, 8))}, "expected arrays 'x'"),
        ({"x": np.zeros((4, 1, 8, 8)), "y": np.arange(3)}, "y has 3"),
        ({"x": np.zeros((4, 1, 8, 8)), "y": np.array([0.5, 1, 0, 1])}, "integers"),
        ({"x": np.zeros((4, 1, 8, 8)), "y": np.array([0, 1, None, 1], dtype=object)}, "plain arrays"),
    ],
)
def test_npz_bad_files(tmp_path, arrays, needle):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=needle):
        load_data("npz", tmp_path / "bad.npz")


def test_npz_missing_or_not_npz(tmp_path):
    with pytest.raises(DataError, match=r"no file .*x \(N,C,H,W\)"):
        load_data("npz", tmp_path / "none.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match="cannot read"):
        load_data("npz", tmp_path / "text.npz")
