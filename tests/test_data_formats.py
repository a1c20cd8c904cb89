"""Fashion-MNIST idx files, image folders, and hostile data files (refused before allocating)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators.data import DataError, load_data
from evaluators.fashion_mnist import DEBIAN_DIR, FILES

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers

def _idx(path: Path, array: np.ndarray, dims: tuple[int, ...] | None = None, code: int = 0x08) -> None:
    """An idx file as the MNIST page defines it: 0, 0, type, ndim, big-endian sizes, data."""
    dims = array.shape if dims is None else dims
    head = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    with gzip.open(path, "wb") as fh:
        fh.write(head + array.astype(np.uint8).tobytes())


def _fashion(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    raw = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        _idx(folder / (FILES[f"{part}_x"] + ".gz"), x)
        _idx(folder / (FILES[f"{part}_y"] + ".gz"), y)
        raw[part] = (x, y)
    return raw


def _capped(code: str, extra_mb: int = 300, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose address space is capped at its size + ``extra_mb`` MiB."""
    prelude = textwrap.dedent(f"""
        import resource, torch, numpy as np
        import evaluators.data, evaluators.fashion_mnist, evaluators.image_folder
        from evaluators.data import DataError, load_data
        vm = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:')][0]
        cap = vm + {extra_mb} * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        try:
    """)
    body = textwrap.indent(textwrap.dedent(code), "    ")
    tail = "\nexcept DataError as err:\n    print('DataError:', err)\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", prelude + body + tail], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


# ----------------------------------------------------------------------------- fashion-mnist

def test_fashion_mnist_idx_files(tmp_path):
    raw = _fashion(tmp_path / "fashion-mnist")
    d = load_data("fashion-mnist", tmp_path / "fashion-mnist", seed=0)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert len(d.train) + len(d.val) == 60 and len(d.test) == 20
    x_te, y_te = raw["test"]
    assert d.y_test.tolist() == y_te.tolist()  # the official test set is the test split, in order
    slope, icpt = np.polyfit(x_te.ravel() / 255.0, d.x_test.numpy().ravel(), 1)
    assert slope > 0 and np.max(np.abs(slope * x_te.ravel() / 255.0 + icpt - d.x_test.numpy().ravel())) < 1e-4
    # the parent folder (with a fashion-mnist sub-folder) is accepted too; limit keeps a stratified subset
    d2 = load_data("fashion-mnist", tmp_path, seed=0, limit=30)
    assert len(d2.train) + len(d2.val) == 30 and len(d2.test) == 20
    assert sorted(np.bincount(np.concatenate([d2.y_train, d2.y_val]), minlength=10)) == [3] * 10


def test_fashion_mnist_image_size_resizes(tmp_path):
    _fashion(tmp_path)
    d = load_data("fashion-mnist", tmp_path, image_size=32)
    assert d.input_shape == (1, 32, 32) and d.x_test.shape == (20, 1, 32, 32)


@pytest.mark.parametrize("damage, needle", [
    ("missing", r"lacks t10k-labels-idx1-ubyte.gz.*dataset-fashion-mnist"),
    ("magic", "not an idx file"),
    ("code", "type code 0x0d"),
    ("dims", "images of 32x32"),
    ("short", "holds 1000 bytes of data but its header declares"),
    ("count", "holds 60 images but its labels file 59"),
    ("labels", "labels go up to 12"),
])
def test_fashion_mnist_bad_files(tmp_path, damage, needle):
    _fashion(tmp_path)
    lab = tmp_path / (FILES["test_y"] + ".gz")
    img = tmp_path / (FILES["train_x"] + ".gz")
    if damage == "missing":
        lab.unlink()
    elif damage == "magic":
        with gzip.open(img, "wb") as fh:
            fh.write(b"PK\x03\x04rubbish")
    elif damage == "code":
        _idx(img, np.zeros((60, 28, 28)), code=0x0D)
    elif damage == "dims":
        _idx(img, np.zeros((60, 32, 32)))
    elif damage == "short":
        _idx(img, np.zeros(1000), dims=(60, 28, 28))
    elif damage == "count":
        _idx(tmp_path / (FILES["train_y"] + ".gz"), np.arange(59) % 10)
    elif damage == "labels":
        _idx(lab, np.full(20, 12))
    with pytest.raises(DataError, match=needle):
        load_data("fashion-mnist", tmp_path)


def test_fashion_mnist_no_folder(tmp_path):
    with pytest.raises(DataError, match="no folder"):
        load_data("fashion-mnist", tmp_path / "nowhere")


@pytest.mark.skipif(not (DEBIAN_DIR / (FILES["test_y"] + ".gz")).exists(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package():
    d = load_data("fashion-mnist", limit=1000)
    assert len(d.test) == 10_000 and np.bincount(d.y_test.numpy()).tolist() == [1000] * 10
    assert len(d.train) + len(d.val) == 1000


def test_fashion_mnist_header_bomb_is_refused_before_allocating(tmp_path):
    _fashion(tmp_path)
    _idx(tmp_path / (FILES["train_y"] + ".gz"), np.zeros(100), dims=(4_000_000_000,))
    _idx(tmp_path / (FILES["train_x"] + ".gz"), np.zeros(100), dims=(4_000_000_000, 28, 28))
    r = _capped(f"load_data('fashion-mnist', {str(tmp_path)!r})")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DataError:" in r.stdout and "GiB of memory" in r.stdout and "--data-limit" in r.stdout


# ----------------------------------------------------------------------------- image folders

def _images(root: Path, per_class: int = 6, rgb: bool = True) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "emu"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = 20 + 3 * i, 24 + 2 * c  # every image has its own size: all are resized
            base = np.full((h, w, 3), 60 * c, np.uint8) + rng.integers(0, 40, (h, w, 3)).astype(np.uint8)
            im = Image.fromarray(base if rgb else base[..., 0])
            im.save(root / name / (f"{i}.png" if i % 2 else f"{i}.JPG"), **({"quality": 95} if i % 2 == 0 else {}))
    (root / "notes.txt").write_text("not a class")
    (root / "empty").mkdir()


def test_image_folder_classes_sizes_and_labels(tmp_path):
    _images(tmp_path)
    d = load_data("folder", tmp_path, image_size=16, seed=0)
    assert d.input_shape == (3, 16, 16) and d.num_classes == 3
    assert len(d.train) + len(d.val) + len(d.test) == 18
    # class c is brighter than class c-1 in the raw pixels: normalised means keep the order
    x = torch.cat([d.x_train, d.x_val, d.x_test])
    y = torch.cat([d.y_train, d.y_val, d.y_test])
    means = [float(x[y == c].mean()) for c in range(3)]
    assert means[0] < means[1] < means[2]
    grey = tmp_path / "grey"
    _images(grey, rgb=False)
    assert load_data("folder", grey, image_size=8).input_shape == (1, 8, 8)


def test_image_folder_lazy_matches_in_memory_and_trains(tmp_path):
    from evaluators.train_proxy import train
    from spaces import build_model, get_backbone

    _images(tmp_path, per_class=10)
    eager = load_data("folder", tmp_path, image_size=16, seed=1, lazy=False)
    lazy = load_data("folder", tmp_path, image_size=16, seed=1, lazy=True)
    assert torch.equal(eager.y_train, lazy.y_train) and torch.equal(eager.y_test, lazy.y_test)
    assert torch.allclose(eager.x_train, lazy.x_train[torch.arange(len(lazy.train))], atol=1e-4)
    assert torch.allclose(eager.x_val, lazy.x_val[0:len(lazy.val)], atol=1e-4)
    arch = get_backbone("small", (3, 16, 16), 3)
    runs = [train(build_model(arch, seed=0), d, epochs=1, batch_size=8, seed=0) for d in (eager, lazy)]
    assert runs[0].history == pytest.approx(runs[1].history, abs=1e-6)


@pytest.mark.parametrize("setup, needle", [
    ("none", "no folder"), ("one", "at least 2"), ("broken", "cannot read image"),
])
def test_image_folder_errors(tmp_path, setup, needle):
    if setup == "one":
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "x.png").write_bytes(b"")
    if setup == "broken":
        _images(tmp_path)
        (tmp_path / "cat" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=needle):
        load_data("folder", tmp_path / "nowhere" if setup == "none" else tmp_path, image_size=8)


# ----------------------------------------------------------------------------- hostile files

def test_cifar_pickle_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    # numpy writes _reconstruct(ndarray, (0,), b'b'); this one declares 2,000,000 x 3072 in ~150 bytes
    bomb = (b"\x80\x02}q\x00(C\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\n"
            b"q\x03J\x80\x84\x1e\x00M\x00\x0c\x86q\x04C\x01Bq\x05\x87q\x06Rq\x07C\x06labelsq\x08]q\tu.")
    assert len(bomb) < 160
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(bomb)
    with pytest.raises(pickle.UnpicklingError):  # the file is a real bomb for a plain unpickler
        class Probe(pickle.Unpickler):
            def find_class(self, module, name):
                if name == "_reconstruct":
                    def probe(cls, shape, dtype):
                        raise pickle.UnpicklingError(f"would allocate {shape}")
                    return probe
                return super().find_class(module, name)
        Probe(io.BytesIO(bomb), encoding="bytes").load()
    r = _capped(f"load_data('cifar10', {str(tmp_path)!r})")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DataError:" in r.stdout and "refusing an array placeholder of shape (2000000, 3072)" in r.stdout


def _npz_with_header(path: Path, shape: tuple[int, ...], y: np.ndarray, payload: bytes = b"") -> None:
    """A .npz whose x.npy header declares ``shape`` (uint8) but holds only ``payload``."""
    from numpy.lib import format as npformat

    head = io.BytesIO()
    npformat.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", head.getvalue() + payload)
        buf = io.BytesIO()
        np.save(buf, y)
        z.writestr("y.npy", buf.getvalue())


def test_npz_declaring_gigabytes_is_refused_before_allocating(tmp_path):
    y = np.arange(2_000_000) % 10
    _npz_with_header(tmp_path / "bomb.npz", (2_000_000, 3, 512, 512), y, payload=bytes(4096))
    r = _capped(f"load_data('npz', {str(tmp_path / 'bomb.npz')!r})")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DataError:" in r.stdout and "GiB of memory" in r.stdout and "--data-limit" in r.stdout


def test_npz_limit_applies_before_conversion(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(1000, 3, 100, 100), dtype=np.uint8)  # 30 MB; as float32 twice, 240 MB
    y = np.arange(1000) % 10
    x[:, 0, 0, 0] = np.arange(1000) % 256
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code = (f"d = load_data('npz', {str(tmp_path / 'd.npz')!r}, limit=LIMIT); "
            "print('loaded', len(d.train) + len(d.val) + len(d.test))")
    r = _capped(code.replace("LIMIT", "None"), extra_mb=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DataError:" in r.stdout and "--data-limit" in r.stdout
    r = _capped(code.replace("LIMIT", "100"), extra_mb=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "loaded 100" in r.stdout
    # the rows kept are the stratified subset that the full arrays give
    from evaluators.data import _subsample

    keep = _subsample(y, 100, 0)
    d = load_data("npz", tmp_path / "d.npz", limit=100)
    assert len(d.train) + len(d.val) + len(d.test) == 100
    raw = np.sort(x[keep][:, 0, 0, 0].astype(np.int64))
    got = torch.cat([d.x_train, d.x_val, d.x_test])[:, 0, 0, 0].numpy()
    order = np.argsort(got)
    # channel 0 is an affine image of the raw channel: same ranks, same values after the fit
    slope, icpt = np.polyfit(raw, got[order], 1)
    assert slope > 0 and np.max(np.abs(slope * raw + icpt - got[order])) < 1e-3


@pytest.mark.parametrize("y, needle", [
    (np.array([0, 1, 10**9, 1]), "labels go up to 1000000000"),
    (np.array([0, 1, 2, 500]), "labels go up to 500, i.e. 501 classes, for 4 examples"),
])
def test_npz_labels_out_of_range(tmp_path, y, needle):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=y)
    with pytest.raises(DataError, match=needle):
        load_data("npz", tmp_path / "d.npz")


def test_plain_npy_gets_its_own_message(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 1, 8, 8)))
    with pytest.raises(DataError, match=r"single \.npy array.*numpy\.savez\(FILE, x=x, y=y\)"):
        load_data("npz", tmp_path / "x.npy")


# ----------------------------------------------------------------------------- val_extra (issue 14)

def _which(rows: np.ndarray, x: torch.Tensor) -> np.ndarray:
    """Index into ``rows`` (raw images, flattened) of each normalised image of ``x``: both are
    standardised per image (an affine normalisation leaves that unchanged) and matched."""
    def z(a: np.ndarray) -> np.ndarray:
        a = a.reshape(len(a), -1).astype(np.float64)
        return (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)
    dist = ((z(x.numpy())[:, None, :] - z(rows)[None, :, :]) ** 2).mean(2)
    best = dist.argmin(1)
    assert np.all(dist[np.arange(len(best)), best] < 1e-8), "every image comes from the pool"
    return best


def test_val_extra_comes_from_outside_the_limit_stratified_and_normalised_like_train(tmp_path):
    raw_x, raw_y = _fashion(tmp_path, n_train=400, n_test=20)["train"]
    d = load_data("fashion-mnist", tmp_path, seed=0, limit=100, val_examples=150)
    assert d.val_extra is not None and len(d.val) + len(d.val_extra) == 150
    tr, va, ex = (_which(raw_x, s.x) for s in (d.train, d.val, d.val_extra))
    assert len(set(tr)) + len(set(va)) + len(set(ex)) == len(set(tr) | set(va) | set(ex)) == 230  # disjoint
    assert np.array_equal(raw_y[ex], d.val_extra.y.numpy())  # labels travel with their images
    # stratified: each class's 30 left-out examples give round(30 * 130 / 300) = 13
    assert np.array_equal(np.bincount(d.val_extra.y.numpy(), minlength=10), np.full(10, 13))
    # normalised with the train split's statistics, computed here from the raw train images
    train_raw = raw_x[tr].astype(np.float64) / 255
    m, s = train_raw.mean(), train_raw.std()
    expect = (raw_x[ex].astype(np.float64) / 255 - m) / s
    assert np.allclose(d.val_extra.x.numpy()[:, 0], expect, atol=1e-4)
    assert "+130 for the final score" in d.describe()
    # the draw is fixed by the seed and changes with it
    again = load_data("fashion-mnist", tmp_path, seed=0, limit=100, val_examples=150)
    other = load_data("fashion-mnist", tmp_path, seed=1, limit=100, val_examples=150)
    assert torch.equal(again.val_extra.x, d.val_extra.x)
    assert not np.array_equal(np.sort(_which(raw_x, other.val_extra.x)), np.sort(ex))


def test_val_extra_sizes_at_the_edges(tmp_path):
    _fashion(tmp_path, n_train=400, n_test=20)
    whole = load_data("fashion-mnist", tmp_path, seed=0, limit=100, val_examples=10**6)
    assert len(whole.val_extra) == 300  # the pool runs out: everything the limit left out
    assert load_data("fashion-mnist", tmp_path, seed=0, limit=100, val_examples=20).val_extra is None
    assert load_data("fashion-mnist", tmp_path, seed=0, val_examples=150).val_extra is None  # no limit
    assert load_data("fashion-mnist", tmp_path, seed=0, limit=100).val_extra is None
    for bad in (0, -5, 1.5, True):
        with pytest.raises(DataError, match="val_examples must be a positive integer"):
            load_data("fashion-mnist", tmp_path, limit=100, val_examples=bad)
