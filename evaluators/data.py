"""Data sets as in-memory tensors: ``load_data(name, data_dir=None, seed=0)``.

- ``digits`` (no file needed): scikit-learn's 1,797 real 8x8 grey digits, upsampled
  (bilinear) to 1x32x32 so that the CIFAR-style backbones apply.
- ``fashion-mnist``: Fashion-MNIST (Xiao et al. 2017), 70,000 grey 28x28 images of 10 kinds
  of clothing, from its four official idx files (``evaluators.fashion_mnist``: ``data_dir``,
  else the Debian package's folder, else ``setup.sh``'s cache). The official 10,000-image
  test set is the test split.
- ``cifar10``: the python version of CIFAR-10 (Krizhevsky 2009) from a local
  ``cifar-10-batches-py`` folder; the official test batch is the test split
  (``evaluators.data_files``: an unpickler that runs no code and allocates nothing declared).
- ``npz``: any ``.npz`` file with ``x`` (N, C, H, W) and integer labels ``y`` (N,).
- ``folder``: one sub-folder of PNG/JPEG images per class (``evaluators.image_folder``),
  resized to ``image_size``; decoded lazily through a DataLoader when it does not fit in memory.

Splits are stratified and fixed by ``seed``: train / validation / held-out test. ``limit``
keeps a stratified subset of the training pool, taken before any conversion to float, and
every size a file declares is checked against the available memory before it is allocated.
Inputs are normalised per channel with the train split's mean and standard deviation.
Labels must be 0..K-1 with K no larger than the number of examples. Every problem is one
``DataError`` naming what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .data_errors import DataError
from .data_files import (
    CIFAR_TEST_FILE,
    CIFAR_TRAIN_FILES,
    check_fits,
    cifar_folder,
    converted_bytes,
    read_cifar_batch,
    read_npz,
)

if TYPE_CHECKING:
    from .image_folder import LazyImages

#: a split's inputs: a float tensor, or images decoded on demand that index like one
Images: TypeAlias = "Tensor | LazyImages"

__all__ = ["DataError", "Images", "Split", "Dataset", "DATASETS", "load_data", "check_arch_data", "stratified_split",
           "batches", "MAX_CLASSES"]

DATASETS = ("digits", "fashion-mnist", "cifar10", "npz", "folder")
#: more classes than this is not a classification data set this tool can build a head for
MAX_CLASSES = 100_000


class Split(NamedTuple):
    """Inputs ``x`` (N, C, H, W) float32 and labels ``y`` (N,) int64. ``x`` is a tensor, or for
    ``--data folder`` images too many to hold a ``LazyImages`` that indexes like one."""

    x: Images
    y: Tensor

    def __len__(self) -> int:
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
    #: more validation examples, from the training pool outside the ``limit`` sample (issue 14):
    #: scored with ``val`` at a trial's final epoch only; None when there are none
    val_extra: Split | None = None

    @property
    def x_train(self) -> Images:
        return self.train.x

    @property
    def y_train(self) -> Tensor:
        return self.train.y

    @property
    def x_val(self) -> Images:
        return self.val.x

    @property
    def y_val(self) -> Tensor:
        return self.val.y

    @property
    def x_test(self) -> Images:
        return self.test.x

    @property
    def y_test(self) -> Tensor:
        return self.test.y

    def describe(self) -> str:
        c, h, w = self.input_shape
        extra = f" (+{len(self.val_extra)} for the final score)" if self.val_extra is not None else ""
        return (f"{self.name}: {c}x{h}x{w}, {self.num_classes} classes, "
                f"train {len(self.train)} / val {len(self.val)}{extra} / test {len(self.test)}")


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


def _extra_val(y: np.ndarray, keep: np.ndarray, wanted: int, seed: int) -> np.ndarray:
    """Stratified indices of at most ``wanted`` examples of ``y`` outside ``keep`` (sorted)."""
    rest = np.setdiff1d(np.arange(len(y)), keep)
    if wanted <= 0 or len(rest) == 0:
        return np.zeros(0, dtype=np.int64)
    if wanted >= len(rest):
        return rest
    take, _ = stratified_split(y[rest], (wanted / len(rest),), seed + 104729)
    return rest[take]


def _to_float(a: np.ndarray) -> np.ndarray:
    """float32 copy; unsigned bytes are scaled to [0, 1]."""
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


def _normalise(train: np.ndarray, *others: np.ndarray) -> list[Tensor]:
    """Per-channel standardisation (in float32) with the train split's statistics."""
    mean = train.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = train.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = np.where(std > 1e-8, std, 1.0)
    m, s = mean.astype(np.float32), std.astype(np.float32)
    out = []
    for a in (train, *others):
        a -= m
        a /= s
        out.append(torch.from_numpy(a))
    return out


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{where}: labels must have shape (N,), got {tuple(y.shape)}")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{where}: labels must be integers 0..K-1, got dtype {y.dtype}")
    if y.dtype.kind == "u" and y.dtype.itemsize == 8 and len(y) and int(y.max()) > np.iinfo(np.int64).max:
        raise DataError(f"{where}: labels must be integers 0..K-1, got {int(y.max())}")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: labels must be integers 0..K-1, got {int(y.min())}")
    _class_count(y, where)
    return y


def _class_count(y: np.ndarray, where: str) -> int:
    """K = max label + 1, refused when it is far beyond what the examples can hold."""
    k = int(y.max()) + 1 if len(y) else 0
    if k > MAX_CLASSES or k > len(y):
        present = len(np.unique(y))
        raise DataError(f"{where}: labels go up to {k - 1}, i.e. {k} classes, for {len(y)} examples "
                        f"({present} distinct labels); labels must be 0..K-1 with K at most the number of "
                        f"examples and {MAX_CLASSES}: renumber them 0..{present - 1}")
    return k


def _assemble(name: str, x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float,
              test_fraction: float, limit: int | None,
              test: tuple[np.ndarray, np.ndarray] | None = None,
              num_classes: int | None = None, val_examples: int | None = None) -> Dataset:
    """Split (x, y) by class into train/val[/test], normalise, wrap as tensors.

    With ``limit`` and ``val_examples``, ``val_extra`` tops the validation split up to
    ``val_examples`` with a stratified draw from the examples the limit left out.
    """
    _check_fractions(val_fraction, test_fraction)
    if num_classes is None:
        num_classes = _class_count(y, name)
    keep = _subsample(y, limit, seed)
    y_all, y = y, y[keep]
    if num_classes < 2:
        raise DataError(f"{name}: expected at least 2 classes in the labels, got {num_classes}")
    if test is None:
        te, va, tr = stratified_split(y, (test_fraction, val_fraction), seed)
        y_te = y[te]
    else:
        va, tr = stratified_split(y, (val_fraction,), seed)
        y_te = test[1]
        if len(y_te) and int(y_te.max()) >= num_classes:
            raise DataError(f"{name}: test labels go up to {int(y_te.max())} but the training "
                            f"data has {num_classes} classes")
    if len(tr) == 0 or len(va) == 0 or len(y_te) == 0:
        raise DataError(f"{name}: too few examples ({len(y)}) for a train/val/test split")
    extra_idx = np.zeros(0, dtype=np.int64)
    if val_examples is not None and len(keep) < len(y_all):
        extra_idx = _extra_val(y_all, keep, val_examples - len(va), seed)
    check_fits(converted_bytes(len(y) + (len(y_te) if test else 0) + len(extra_idx), x.shape[1:]),
               f"{name} as float32")
    extra = (x[extra_idx], y_all[extra_idx]) if len(extra_idx) else None
    x = x[keep]  # the limit applies before any conversion to float
    x_te = x[te] if test is None else test[0]
    more = [_to_float(extra[0])] if extra else []
    x_tr, x_va, x_te, *x_ex = _normalise(_to_float(x[tr]), _to_float(x[va]), _to_float(x_te), *more)
    c, h, w = x.shape[1:]
    as_y = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    val_extra = Split(x_ex[0], as_y(extra[1])) if extra else None
    return Dataset(name, Split(x_tr, as_y(y[tr])), Split(x_va, as_y(y[va])), Split(x_te, as_y(y_te)),
                   (int(c), int(h), int(w)), num_classes, val_extra)


# ----------------------------------------------------------------------------- digits

def _load_digits(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N,1,8,8) in [0,1]
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.numpy(), bunch.target.astype(np.int64)


# ----------------------------------------------------------------------------- files

def _load_cifar10(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    root = cifar_folder(data_dir)
    parts = [read_cifar_batch(root / f) for f in CIFAR_TRAIN_FILES]
    x_te, y_te = read_cifar_batch(root / CIFAR_TEST_FILE)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), x_te, y_te


def _load_npz(data_dir: str | Path | None, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if data_dir is None:
        raise DataError("npz needs --data-dir: the path of a .npz file with x (N,C,H,W) and y (N,)")
    path = Path(data_dir).expanduser()
    if not path.is_file():
        raise DataError(f"npz: no file {path}; expected a .npz file with x (N,C,H,W) and y (N,)")
    x, y = read_npz(path, lambda labels: _subsample(_labels(labels, "npz"), limit, seed))
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError("npz: x holds NaN or infinite values")
    return x, _labels(y, "npz")


# ----------------------------------------------------------------------------- entry points

def _image_size(image_size: int | None, default: int) -> int:
    size = default if image_size is None else image_size
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 1024:
        raise DataError(f"image_size must be an integer in 8..1024, got {size!r}")
    return size


def load_data(name: str = "digits", data_dir: str | Path | None = None, seed: int = 0, *,
              val_fraction: float = 0.2, test_fraction: float = 0.2, limit: int | None = None,
              image_size: int | None = None, lazy: bool | None = None,
              val_examples: int | None = None) -> Dataset:
    """Load data set ``name`` as train / val / test tensors, stratified and fixed by ``seed``.

    ``data_dir``: the folder of the idx files for ``fashion-mnist`` (default: the Debian
    package's folder, then setup.sh's cache), the ``cifar-10-batches-py`` folder (or its
    parent) for ``cifar10``, the file for ``npz``, the class folders' parent for ``folder``;
    unused by ``digits``. ``limit`` keeps a stratified subset of at most that many
    training-pool examples (before splitting and before conversion to float).
    ``test_fraction`` is unused where an official test set exists (fashion-mnist, cifar10).
    ``image_size``: side of the images of ``digits`` (default 32), ``folder`` (default 32) and
    ``fashion-mnist`` (default 28, the original; another size resizes bilinearly).
    ``lazy`` (``folder`` only): True keeps images on disk, None decides by memory.
    ``val_examples`` (digits, fashion-mnist, cifar10, with ``limit``): ``val_extra`` holds
    enough examples the limit left out to make ``val`` + ``val_extra`` that many (fewer when
    the pool runs out; within one a class, from rounding), stratified, normalised with the train
    split's statistics; the final score of a short training then rests on many more examples
    than the small val split (issue 14: scoring on 12,000 instead of 1,200 raised the proxy's
    Spearman from 0.37 to 0.59).
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"seed must be an integer, got {seed!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise DataError(f"limit must be a positive integer, got {limit!r}")
    if val_examples is not None and (not isinstance(val_examples, int) or isinstance(val_examples, bool)
                                     or val_examples < 1):
        raise DataError(f"val_examples must be a positive integer, got {val_examples!r}")
    if name == "digits":
        x, y = _load_digits(_image_size(image_size, 32))
        return _assemble("digits", x, y, seed, val_fraction, test_fraction, limit, val_examples=val_examples)
    if name == "fashion-mnist":
        from .fashion_mnist import load_fashion_mnist

        size = _image_size(image_size, 28)
        x, y, x_te, y_te = load_fashion_mnist(data_dir)
        if size != 28:
            x, x_te = _resize(x, size), _resize(x_te, size)
        return _assemble("fashion-mnist", x, y, seed, val_fraction, test_fraction, limit, test=(x_te, y_te),
                         num_classes=10, val_examples=val_examples)
    if name == "cifar10":
        x, y, x_te, y_te = _load_cifar10(data_dir)
        return _assemble("cifar10", x, y, seed, val_fraction, test_fraction, limit, test=(x_te, y_te),
                         num_classes=10, val_examples=val_examples)
    if name == "npz":
        x, y = _load_npz(data_dir, limit, seed)
        return _assemble("npz", x, y, seed, val_fraction, test_fraction, None)
    if name == "folder":
        from .image_folder import load_images

        return load_images(data_dir, _image_size(image_size, 32), seed, val_fraction, test_fraction, limit, lazy)
    raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, C, H, W) resized bilinearly to (N, C, size, size), still uint8."""
    check_fits(converted_bytes(len(x), (x.shape[1], size, size)), f"resizing to {size}x{size}")
    out = F.interpolate(torch.from_numpy(x.copy()).float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).numpy()


def batches(x: Any, order: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Inputs ``x[order]`` in batches: indexing for tensors, a DataLoader for lazily loaded images."""
    if hasattr(x, "batches"):
        yield from x.batches(order, batch_size)
        return
    for i in range(0, len(order), batch_size):
        yield x[order[i:i + batch_size]]


def check_arch_data(arch: Any, data: Dataset) -> None:
    """Raise ``DataError`` unless ``arch.input_shape``/``arch.num_classes`` match ``data``."""
    shape = tuple(arch.input_shape)
    if shape != tuple(data.input_shape):
        raise DataError(f"arch input_shape {shape} does not match the data {data.name} "
                        f"({tuple(data.input_shape)}); build the arch with input_shape={tuple(data.input_shape)}")
    if int(arch.num_classes) != data.num_classes:
        raise DataError(f"arch num_classes {arch.num_classes} does not match the data {data.name} "
                        f"({data.num_classes} classes); build the arch with num_classes={data.num_classes}")
