"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from its four official idx files.

``train-images-idx3-ubyte.gz`` (60,000 x 28 x 28), ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (the official 10,000-image
test set, which is the test split). The files are looked for in ``data_dir`` (or its
``fashion-mnist`` sub-folder), then in the Debian package ``dataset-fashion-mnist``'s folder
``/usr/share/datasets/fashion-mnist``, then in the cache folder that ``setup.sh`` fills
without root (``$XDG_CACHE_HOME/groupnas/fashion-mnist``, default ``~/.cache/...``). Plain
(not gzipped) files are read too.

IDX format (LeCun et al., the MNIST page): two zero bytes, a type code (0x08 = unsigned
byte), the number of dimensions d, then d big-endian uint32 sizes and the data in C order.
The header's sizes are checked (images 28 x 28, the counts of images and labels equal, the
memory they need available) before the data is read, and the data must be exactly as long
as declared.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path

import numpy as np

from .data_errors import DataError
from .data_files import check_fits, converted_bytes

__all__ = ["FILES", "DEBIAN_DIR", "cache_dir", "find_folder", "read_idx", "load_fashion_mnist"]

FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
NUM_CLASSES = 10
HOW_TO_GET = ("install the Debian package dataset-fashion-mnist (as root: apt-get install "
              "dataset-fashion-mnist; bash setup.sh does it, or unpacks it into the cache without root), "
              "or download the four files from github.com/zalandoresearch/fashion-mnist into a folder "
              "and pass --data-dir FOLDER")


def cache_dir() -> Path:
    """Where ``setup.sh`` puts the files when it cannot install the package as root."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "groupnas" / "fashion-mnist"


def _file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _complete(folder: Path) -> bool:
    return all(_file(folder, stem) is not None for stem in FILES.values())


def find_folder(data_dir: str | Path | None) -> Path:
    """The first folder holding all four files: ``data_dir``, the Debian folder, the cache."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        for folder in (root, root / "fashion-mnist"):
            if folder.is_dir() and _complete(folder):
                return folder
        if not root.is_dir():
            raise DataError(f"fashion-mnist: no folder {root}; {HOW_TO_GET}")
        missing = [s + ".gz" for s in FILES.values() if _file(root, s) is None]
        raise DataError(f"fashion-mnist: {root} lacks {', '.join(missing)}; {HOW_TO_GET}")
    for folder in (DEBIAN_DIR, cache_dir()):
        if folder.is_dir() and _complete(folder):
            return folder
    raise DataError(f"fashion-mnist: the files are in neither {DEBIAN_DIR} nor {cache_dir()}; {HOW_TO_GET}")


def read_idx(path: Path, ndim: int, extra_bytes: int = 0) -> np.ndarray:
    """The uint8 array of an idx file (gzipped or not) of ``ndim`` dimensions.

    ``extra_bytes``: memory the caller will need on top of the array (its float copies); both
    are checked against the memory budget before the data is read.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) != 4 or head[:2] != b"\0\0":
                raise DataError(f"{path}: not an idx file (bad magic {head!r})")
            if head[2] != 0x08:
                raise DataError(f"{path}: idx type code 0x{head[2]:02x}; expected 0x08 (unsigned bytes)")
            if head[3] != ndim:
                raise DataError(f"{path}: {head[3]} dimensions; expected {ndim}")
            raw = fh.read(4 * ndim)
            if len(raw) != 4 * ndim:
                raise DataError(f"{path}: the idx header is cut short")
            shape = struct.unpack(f">{ndim}I", raw)
            if ndim == 3 and shape[1:] != (28, 28):
                raise DataError(f"{path}: images of {shape[1]}x{shape[2]}; Fashion-MNIST's are 28x28")
            n = math.prod(shape)
            check_fits(n + extra_bytes, f"{path} ({' x '.join(map(str, shape))})")
            data = fh.read(n)
            if len(data) != n:
                raise DataError(f"{path}: holds {len(data)} bytes of data but its header declares "
                                f"{' x '.join(map(str, shape))} = {n}")
    except DataError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: cannot read it as a gzipped idx file ({err})") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _pair(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    y = read_idx(_file(folder, FILES[f"{part}_y"]), 1)  # type: ignore[arg-type]
    x_path = _file(folder, FILES[f"{part}_x"])
    x = read_idx(x_path, 3, extra_bytes=converted_bytes(len(y), (1, 28, 28)))  # type: ignore[arg-type]
    if len(x) != len(y):
        raise DataError(f"fashion-mnist: {x_path} holds {len(x)} images but its labels file {len(y)} labels")
    if len(y) and int(y.max()) >= NUM_CLASSES:
        raise DataError(f"fashion-mnist: {part} labels go up to {int(y.max())}; expected 0..9")
    return x[:, None], y.astype(np.int64)


def load_fashion_mnist(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train (60000,1,28,28) uint8, y_train, x_test (10000,1,28,28) uint8, y_test)."""
    folder = find_folder(data_dir)
    x, y = _pair(folder, "train")
    x_te, y_te = _pair(folder, "test")
    return x, y, x_te, y_te
