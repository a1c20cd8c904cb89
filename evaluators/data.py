"""Data sets as in-memory tensors: ``load_data(name, data_dir=None, seed=0)``.

- ``digits`` (default, no network): scikit-learn's 1,797 real 8x8 grey digits, upsampled
  (bilinear) to 1x32x32 so that the CIFAR-style backbones apply.
- ``cifar10``: the python version of CIFAR-10 (Krizhevsky 2009) from a local
  ``cifar-10-batches-py`` folder (``data_batch_1..5`` + ``test_batch``). The pickled batches
  are read with an unpickler that refuses every global except the three numpy callables an
  array needs (``_reconstruct``, ``ndarray``, ``dtype``) and a latin-1-only bytes decoder, so
  loading never runs code.
- ``npz``: any ``.npz`` file with ``x`` (N, C, H, W) and integer labels ``y`` (N,).

Splits are stratified and fixed by ``seed``: train / validation / held-out test. For CIFAR-10
the official test batch is the test split. Inputs are normalised per channel with the train
split's mean and standard deviation. Every problem is one ``DataError`` naming what was
expected.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DataError", "Split", "Dataset", "DATASETS", "load_data", "check_arch_data", "stratified_split"]

DATASETS = ("digits", "cifar10", "npz")
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"


class DataError(ValueError):
    """Missing, malformed or incompatible data; the message says what was expected."""


class Split(NamedTuple):
    """Inputs ``x`` (N, C, H, W) float32 and labels ``y`` (N,) int64."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits held as tensors, with their shape and class count."""

    name: str
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, int, int]
    num_classes: int

    @property
    def x_train(self) -> Tensor:
        return self.train.x

    @property
    def y_train(self) -> Tensor:
        return self.train.y

    @property
    def x_val(self) -> Tensor:
        return self.val.x

    @property
    def y_val(self) -> Tensor:
        return self.val.y

    @property
    def x_test(self) -> Tensor:
        return self.test.x

    @property
    def y_test(self) -> Tensor:
        return self.test.y

    def describe(self) -> str:
        c, h, w = self.input_shape
        return (f"{self.name}: {c}x{h}x{w}, {self.num_classes} classes, "
                f"train {len(self.train)} / val {len(self.val)} / test {len(self.test)}")


# ----------------------------------------------------------------------------- splitting

def stratified_split(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Indices of ``y`` split into ``len(fractions) + 1`` parts, stratified by class.

    Part ``k < len(fractions)`` takes ``round(n_c * fractions[k])`` examples of each class
    ``c`` (at least one when the class has enough examples); the last part takes the rest.
    Fixed by ``seed``; every part is sorted.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for k, frac in enumerate(fractions):
            take = int(round(len(idx) * frac))
            if frac > 0 and take == 0 and len(idx) - start > 1:
                take = 1
            parts[k].append(idx[start:start + take])
            start += take
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 < v < 1.0:
            raise DataError(f"{name} must be a number in (0, 1), got {v!r}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(f"val_fraction + test_fraction must be below 1, got "
                        f"{val_fraction} + {test_fraction}")


def _subsample(y: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Stratified subset of at most ``limit`` indices (all indices when ``limit`` is None)."""
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise DataError(f"limit must be a positive integer, got {limit!r}")
    keep, _ = stratified_split(y, (limit / len(y),), seed + 7919)
    return keep


def _normalise(train: np.ndarray, *others: np.ndarray) -> list[Tensor]:
    """Per-channel standardisation with the train split's statistics."""
    mean = train.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = train.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = np.where(std > 1e-8, std, 1.0)
    return [torch.from_numpy(((a - mean) / std).astype(np.float32)) for a in (train, *others)]


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{where}: labels must have shape (N,), got {tuple(y.shape)}")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{where}: labels must be integers 0..K-1, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: labels must be integers 0..K-1, got {int(y.min())}")
    return y


def _assemble(name: str, x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float,
              test_fraction: float, limit: int | None,
              test: tuple[np.ndarray, np.ndarray] | None = None,
              num_classes: int | None = None) -> Dataset:
    """Split (x, y) by class into train/val[/test], normalise, wrap as tensors."""
    _check_fractions(val_fraction, test_fraction)
    keep = _subsample(y, limit, seed)
    x, y = x[keep], y[keep]
    if num_classes is None:
        num_classes = int(y.max()) + 1 if len(y) else 0
    if num_classes < 2:
        raise DataError(f"{name}: expected at least 2 classes in the labels, got {num_classes}")
    if test is None:
        te, va, tr = stratified_split(y, (test_fraction, val_fraction), seed)
        x_te, y_te = x[te], y[te]
    else:
        va, tr = stratified_split(y, (val_fraction,), seed)
        x_te, y_te = test
        if len(y_te) and int(y_te.max()) >= num_classes:
            raise DataError(f"{name}: test labels go up to {int(y_te.max())} but the training "
                            f"data has {num_classes} classes")
    if len(tr) == 0 or len(va) == 0 or len(y_te) == 0:
        raise DataError(f"{name}: too few examples ({len(y)}) for a train/val/test split")
    x_tr, x_va, x_te = _normalise(x[tr].astype(np.float32), x[va].astype(np.float32),
                                  x_te.astype(np.float32))
    c, h, w = x.shape[1:]
    as_y = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return Dataset(name, Split(x_tr, as_y(y[tr])), Split(x_va, as_y(y[va])), Split(x_te, as_y(y_te)),
                   (int(c), int(h), int(w)), num_classes)


# ----------------------------------------------------------------------------- digits

def _load_digits(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        raise DataError(f"image_size must be an integer >= 8, got {image_size!r}")
    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N,1,8,8) in [0,1]
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.numpy(), bunch.target.astype(np.int64)


# ----------------------------------------------------------------------------- cifar10

def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """The one use of ``_codecs.encode`` in a protocol-2 pickle written by Python 3: bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except what a plain numpy array needs; nothing else can run.

    Allowed: numpy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``) and a
    latin-1-only stand-in for ``_codecs.encode`` (how Python 3 writes bytes at protocol 2).
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise pickle.UnpicklingError(f"refusing global {module}.{name}: a CIFAR-10 batch holds "
                                     "only dicts of arrays, lists and bytes")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as fh:
            obj = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OSError) as err:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({err})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with b'data' and b'labels', got {type(obj).__name__}")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in obj or "labels" not in obj:
        raise DataError(f"{path}: expected keys b'data' and b'labels', got {sorted(map(str, obj))}")
    data, labels = obj["data"], obj["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got "
                        f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != data.shape[0]:
        raise DataError(f"{path}: b'labels' must be a list of {data.shape[0]} integers")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: b'labels' must be a list of integers 0..9") from None
    if y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise DataError(f"{path}: b'labels' must be a list of integers 0..9")
    return data.reshape(-1, 3, 32, 32), y


def _cifar_folder(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        raise DataError(f"cifar10 needs --data-dir: a '{CIFAR_FOLDER}' folder or its parent")
    root = Path(data_dir).expanduser()
    if (root / CIFAR_FOLDER).is_dir():
        root = root / CIFAR_FOLDER
    if not root.is_dir():
        raise DataError(f"cifar10: no folder {root}; expected a '{CIFAR_FOLDER}' folder with "
                        f"{', '.join(CIFAR_TRAIN_FILES)} and {CIFAR_TEST_FILE}")
    missing = [f for f in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE) if not (root / f).is_file()]
    if missing:
        hint = ""
        if (root / "data_batch_1.bin").exists():
            hint = " (this looks like the binary version; use the python version, cifar-10-python.tar.gz)"
        raise DataError(f"cifar10: {root} lacks {', '.join(missing)}; expected the python version "
                        f"'{CIFAR_FOLDER}' with {', '.join(CIFAR_TRAIN_FILES)} and {CIFAR_TEST_FILE}{hint}")
    return root


def _load_cifar10(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    root = _cifar_folder(data_dir)
    parts = [_read_batch(root / f) for f in CIFAR_TRAIN_FILES]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    y = np.concatenate([p[1] for p in parts])
    x_te, y_te = _read_batch(root / CIFAR_TEST_FILE)
    return x, y, x_te.astype(np.float32) / 255.0, y_te


# ----------------------------------------------------------------------------- npz

def _load_npz(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    if data_dir is None:
        raise DataError("npz needs --data-dir: the path of a .npz file with x (N,C,H,W) and y (N,)")
    path = Path(data_dir).expanduser()
    if not path.is_file():
        raise DataError(f"npz: no file {path}; expected a .npz file with x (N,C,H,W) and y (N,)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if not {"x", "y"} <= keys:
                raise DataError(f"npz: {path} holds {sorted(keys)}; expected arrays 'x' (N,C,H,W) and 'y' (N,)")
            x, y = archive["x"], archive["y"]
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as err:  # not a zip, or an object array (pickle refused)
        raise DataError(f"npz: cannot read {path} as a .npz of plain arrays ({err})") from None
    if x.ndim != 4:
        raise DataError(f"npz: x must have shape (N, C, H, W), got {tuple(x.shape)}")
    if x.dtype.kind not in "fiub":
        raise DataError(f"npz: x must be numeric, got dtype {x.dtype}")
    y = _labels(y, "npz")
    if len(y) != len(x):
        raise DataError(f"npz: x has {len(x)} examples but y has {len(y)}; expected equal N")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError("npz: x holds NaN or infinite values")
    return x, y


# ----------------------------------------------------------------------------- entry points

def load_data(name: str = "digits", data_dir: str | Path | None = None, seed: int = 0, *,
              val_fraction: float = 0.2, test_fraction: float = 0.2, limit: int | None = None,
              image_size: int = 32) -> Dataset:
    """Load data set ``name`` as train / val / test tensors, stratified and fixed by ``seed``.

    ``data_dir``: the ``cifar-10-batches-py`` folder (or its parent) for ``cifar10``, the file
    for ``npz``; unused by ``digits``. ``limit`` keeps a stratified subset of at most that many
    training-pool examples (before splitting). ``test_fraction`` is unused for ``cifar10``
    (its official test batch is the test split). ``image_size`` is for ``digits`` only.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"seed must be an integer, got {seed!r}")
    if name == "digits":
        x, y = _load_digits(image_size)
        return _assemble("digits", x, y, seed, val_fraction, test_fraction, limit)
    if name == "cifar10":
        x, y, x_te, y_te = _load_cifar10(data_dir)
        return _assemble("cifar10", x, y, seed, val_fraction, test_fraction, limit, test=(x_te, y_te),
                         num_classes=10)
    if name == "npz":
        x, y = _load_npz(data_dir)
        return _assemble("npz", x, y, seed, val_fraction, test_fraction, limit)
    raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")


def check_arch_data(arch: Any, data: Dataset) -> None:
    """Raise ``DataError`` unless ``arch.input_shape``/``arch.num_classes`` match ``data``."""
    shape = tuple(arch.input_shape)
    if shape != tuple(data.input_shape):
        raise DataError(f"arch input_shape {shape} does not match the data {data.name} "
                        f"({tuple(data.input_shape)}); build the arch with input_shape={tuple(data.input_shape)}")
    if int(arch.num_classes) != data.num_classes:
        raise DataError(f"arch num_classes {arch.num_classes} does not match the data {data.name} "
                        f"({data.num_classes} classes); build the arch with num_classes={data.num_classes}")
