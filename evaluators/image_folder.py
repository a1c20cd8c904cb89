"""A user's own images: ``--data folder --data-dir DIR`` with one sub-folder per class.

``DIR/<class>/*.png|*.jpg|*.jpeg``; classes are the sub-folder names in sorted order (label
0 is the first). Images are decoded with Pillow and resized (bilinear) to ``size x size``;
grey when every class's first image is grey, RGB otherwise. When the decoded set fits in the
memory budget (``data_files.memory_budget``) it is held as a uint8 array and goes through
the same split and normalisation as every other data set; otherwise (or with
``lazy=True``) the splits hold ``LazyImages``: file lists decoded on demand, through a
``torch.utils.data.DataLoader`` with worker processes for training batches, normalised with
the mean and standard deviation of (up to) 1,000 training images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from .data_errors import DataError
from .data_files import converted_bytes, memory_budget

__all__ = ["EXTENSIONS", "scan", "decode", "LazyImages", "load_images"]

EXTENSIONS = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F", "P;L")
STAT_IMAGES = 1000


def scan(root: str | Path | None) -> tuple[list[str], list[Path], np.ndarray]:
    """(class names, image paths, labels) of a one-folder-per-class tree."""
    if root is None:
        raise DataError("folder needs --data-dir: a folder with one sub-folder of images per class")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"folder: no folder {base}; expected one sub-folder of PNG/JPEG images per class")
    classes: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS)
        if not files:
            continue
        paths.extend(files)
        labels.extend([len(classes)] * len(files))
        classes.append(sub.name)
    if len(classes) < 2:
        raise DataError(f"folder: {base} has {len(classes)} sub-folder(s) with PNG/JPEG images; "
                        "expected one sub-folder per class, at least 2")
    return classes, paths, np.asarray(labels, dtype=np.int64)


def _channels(paths: Sequence[Path], labels: np.ndarray) -> int:
    from PIL import Image

    firsts = [paths[int(np.flatnonzero(labels == c)[0])] for c in np.unique(labels)]
    for p in firsts:
        try:
            with Image.open(p) as im:
                if im.mode not in GREY_MODES:
                    return 3
        except OSError as err:
            raise DataError(f"folder: cannot read image {p} ({err})") from None
    return 1


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 (channels, size, size)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("L" if channels == 1 else "RGB", (size, size))  # JPEG: decode at reduced size
            small = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BILINEAR)
            a = np.asarray(small, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"folder: cannot read image {path} ({err})") from None
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


class LazyImages(torch.utils.data.Dataset):
    """Images decoded on demand; indexes like a (N, C, H, W) float tensor (int, slice, indices)."""

    def __init__(self, paths: Sequence[Path], size: int, channels: int,
                 mean: np.ndarray | None = None, std: np.ndarray | None = None, workers: int | None = None):
        self.paths = list(paths)
        self.size, self.channels = size, channels
        self.mean = np.zeros((channels, 1, 1), np.float32) if mean is None else mean.astype(np.float32)
        self.std = np.ones((channels, 1, 1), np.float32) if std is None else std.astype(np.float32)
        self.workers = min(4, os.cpu_count() or 1) if workers is None else workers

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.channels, self.size, self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> Tensor:
        a = decode(self.paths[i], self.size, self.channels).astype(np.float32) / 255.0
        return torch.from_numpy((a - self.mean) / self.std)

    def __getitem__(self, index: Any) -> Tensor:
        if isinstance(index, (int, np.integer)):
            return self.image(int(index))
        if isinstance(index, slice):
            ids: Sequence[int] = range(*index.indices(len(self)))
        else:
            ids = [int(i) for i in torch.as_tensor(index).reshape(-1).tolist()]
        if not ids:
            return torch.zeros((0, self.channels, self.size, self.size))
        return torch.stack([self.image(i) for i in ids])

    def subset(self, ids: Sequence[int] | np.ndarray) -> LazyImages:
        return LazyImages([self.paths[int(i)] for i in ids], self.size, self.channels, self.mean, self.std,
                          self.workers)

    def batches(self, order: Tensor, batch_size: int) -> Iterator[Tensor]:
        """The images of ``order`` in batches, decoded by a DataLoader's worker processes."""
        chunks = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        loader = torch.utils.data.DataLoader(self, batch_sampler=chunks, num_workers=self.workers)
        yield from loader


def _lazy(name: str, paths: list[Path], y: np.ndarray, size: int, channels: int, parts: list[np.ndarray],
          num_classes: int) -> Any:
    from .data import Dataset, Split

    te, va, tr = parts
    train = LazyImages([paths[i] for i in tr], size, channels)
    pick = np.random.default_rng(0).permutation(len(tr))[:STAT_IMAGES]
    sample = np.stack([decode(train.paths[i], size, channels) for i in pick]).astype(np.float64) / 255.0
    mean = sample.mean(axis=(0, 2, 3)).reshape(-1, 1, 1)
    std = np.where(sample.std(axis=(0, 2, 3)) > 1e-8, sample.std(axis=(0, 2, 3)), 1.0).reshape(-1, 1, 1)
    full = LazyImages(paths, size, channels, mean, std)
    as_y = lambda ids: torch.from_numpy(y[ids].copy())  # noqa: E731
    return Dataset(name, Split(full.subset(tr), as_y(tr)), Split(full.subset(va), as_y(va)),
                   Split(full.subset(te), as_y(te)), (channels, size, size), num_classes)


def load_images(data_dir: str | Path | None, size: int, seed: int, val_fraction: float, test_fraction: float,
                limit: int | None, lazy: bool | None = None) -> Any:
    """The ``folder`` data set (see the module docstring); ``lazy=None`` decides by memory."""
    from .data import _assemble, _check_fractions, _subsample, stratified_split

    if not isinstance(size, int) or isinstance(size, bool) or not 4 <= size <= 1024:
        raise DataError(f"image_size must be an integer in 4..1024, got {size!r}")
    _check_fractions(val_fraction, test_fraction)
    classes, paths, y = scan(data_dir)
    keep = _subsample(y, limit, seed)
    paths, y = [paths[i] for i in keep], y[keep]
    channels = _channels(paths, y)
    need = len(y) * channels * size * size + converted_bytes(len(y), (channels, size, size))
    if lazy is None:
        lazy = need > memory_budget()
    if not lazy:
        x = np.stack([decode(p, size, channels) for p in paths])
        return _assemble("folder", x, y, seed, val_fraction, test_fraction, None, num_classes=len(classes))
    parts = stratified_split(y, (test_fraction, val_fraction), seed)
    if any(len(p) == 0 for p in parts):
        raise DataError(f"folder: too few images ({len(y)}) for a train/val/test split")
    return _lazy("folder", paths, y, size, channels, parts, len(classes))
