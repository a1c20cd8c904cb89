"""Reading data files without trusting them: CIFAR-10 python batches and ``.npz`` archives.

Nothing here allocates from a size the file merely declares until that size has been checked
against the memory this process can still use (``memory_budget``: the smaller of the kernel's
``MemAvailable`` and what ``RLIMIT_AS`` leaves). A 147-byte pickle that declares a
2,000,000 x 3072 array, or a compressed ``.npz`` of zeros that expands to gigabytes, is a
``DataError`` before any allocation, not a machine brought down.

- CIFAR-10 (Krizhevsky 2009, python version): pickled dicts read with an unpickler that
  refuses every global except what an array needs; numpy's ``_reconstruct`` is replaced by a
  check that the placeholder it allocates is empty (numpy itself always writes shape ``(0,)``;
  the data then arrives through ``__setstate__``, which checks the buffer length first).
- ``.npz``: each member's ``.npy`` header (``numpy.lib.format``) is read first; shape, dtype
  and order are checked, then only the rows kept by ``--data-limit`` are read, streamed in
  chunks, so the limit applies before the array is held or converted.
"""

from __future__ import annotations

import math
import os
import pickle
import resource
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .data_errors import DataError

__all__ = ["memory_budget", "check_fits", "read_cifar_batch", "cifar_folder", "read_npz",
           "CIFAR_FOLDER", "CIFAR_TRAIN_FILES", "CIFAR_TEST_FILE"]

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
#: share of the available memory one data set may take (the rest is for the models and torch)
MEMORY_SHARE = 0.5


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space_left() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        return None
    return soft


def memory_budget() -> int:
    """Bytes a data set may still allocate: ``MEMORY_SHARE`` of the memory left to this process."""
    candidates = [v for v in (_meminfo_available(), _address_space_left()) if v is not None]
    if not candidates:
        try:
            candidates = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (ValueError, OSError):
            return 1 << 62
    return int(MEMORY_SHARE * min(candidates))


def check_fits(nbytes: int, what: str) -> None:
    """``DataError`` unless ``nbytes`` fit in ``memory_budget()``."""
    budget = memory_budget()
    if nbytes > budget:
        raise DataError(f"{what} would need {nbytes / 2**30:.2f} GiB of memory, but only "
                        f"{budget / 2**30:.2f} GiB may be used here; use --data-limit N (or a smaller file)")


def converted_bytes(n: int, sample_shape: Sequence[int]) -> int:
    """Bytes of ``n`` examples as float32, twice (the converted copy and the normalised one)."""
    return 2 * 4 * int(n) * math.prod(int(s) for s in sample_shape)


# ----------------------------------------------------------------------------- cifar10

def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """The one use of ``_codecs.encode`` in a protocol-2 pickle written by Python 3: bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


def _empty_placeholder(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` for the only call numpy writes: an empty placeholder array."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing an array of type {subtype!r}")
    dims = shape if isinstance(shape, tuple) else (shape,)
    if not all(isinstance(d, int) and d >= 0 for d in dims) or math.prod(dims) > 1:
        raise pickle.UnpicklingError(f"refusing an array placeholder of shape {shape!r} (numpy writes "
                                     "(0,) and sends the data after; a larger one allocates from the "
                                     "declared size alone)")
    return np.ndarray.__new__(np.ndarray, (0,), "b")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except what a plain numpy array needs; nothing else can run."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype")}
    _RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if (module, name) in self._RECONSTRUCT:
            return _empty_placeholder
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise pickle.UnpicklingError(f"refusing global {module}.{name}: a CIFAR-10 batch holds "
                                     "only dicts of arrays, lists and bytes")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data (N, 3, 32, 32) uint8, labels (N,) int64) of one CIFAR-10 python batch."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    check_fits(2 * size, f"{path}")  # a pickle holds its arrays' bytes: no more than twice the file
    try:
        with path.open("rb") as fh:
            obj = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
    except MemoryError:
        raise DataError(f"{path}: not a CIFAR-10 python batch (it declares more memory than is available)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OSError, RecursionError) as err:
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
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: b'labels' must be a list of integers 0..9") from None
    if y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise DataError(f"{path}: b'labels' must be a list of integers 0..9")
    return data.reshape(-1, 3, 32, 32), y


def cifar_folder(data_dir: str | Path | None) -> Path:
    """The ``cifar-10-batches-py`` folder at or under ``data_dir``, with every file present."""
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


# ----------------------------------------------------------------------------- npz

def _header(fh: Any, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise DataError(f"{where}: not a plain .npy array ({err})") from None
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (dtype {dtype}); expected plain arrays of numbers")
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _read_rows(fh: Any, shape: tuple[int, ...], dtype: np.dtype, keep: np.ndarray, where: str) -> np.ndarray:
    """Rows ``keep`` (sorted) of a C-order array streamed from ``fh``, chunk by chunk."""
    row = math.prod(shape[1:]) * dtype.itemsize
    out = np.empty((len(keep), *shape[1:]), dtype=dtype)
    chunk = max(1, (16 << 20) // max(1, row))
    j = 0
    for start in range(0, shape[0], chunk):
        n = min(chunk, shape[0] - start)
        if j >= len(keep):
            break
        raw = fh.read(n * row)
        if len(raw) != n * row:
            raise DataError(f"{where}: the file ends before the {shape[0]} rows its header declares")
        block = np.frombuffer(raw, dtype=dtype).reshape(n, *shape[1:])
        stop = int(np.searchsorted(keep, start + n))
        if stop > j:
            out[j:stop] = block[keep[j:stop] - start]
        j = stop
    return out


def read_npz(path: Path, choose: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(x rows kept, y rows kept) of a ``.npz`` with ``x`` (N, C, H, W) and ``y`` (N,).

    ``choose(y)`` returns the sorted row indices to keep (the ``--data-limit`` subset); only
    those rows of ``x`` are read. Sizes are checked against ``memory_budget()`` first.
    """
    what = f"npz: {path}"
    if not zipfile.is_zipfile(path):
        with path.open("rb") as fh:
            magic = fh.read(6)
        if magic == b"\x93NUMPY":
            raise DataError(f"{what} is a single .npy array, not a .npz archive; save both arrays "
                            "in one file with numpy.savez(FILE, x=x, y=y)")
        raise DataError(f"{what}: cannot read it as a .npz of plain arrays (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"x.npy", "y.npy"} <= names:
                keys = sorted(n[:-4] if n.endswith(".npy") else n for n in names)
                raise DataError(f"{what} holds {keys}; expected arrays 'x' (N,C,H,W) and 'y' (N,)")
            with archive.open("y.npy") as fh:
                y_shape, y_fortran, y_dtype = _header(fh, f"{what} y")
                if len(y_shape) != 1:
                    raise DataError(f"npz: labels must have shape (N,), got {y_shape}")
                check_fits(y_shape[0] * max(8, y_dtype.itemsize), f"{what} y")
                y = _read_rows(fh, y_shape, y_dtype, np.arange(y_shape[0]), f"{what} y")
            with archive.open("x.npy") as fh:
                shape, fortran, dtype = _header(fh, f"{what} x")
                if len(shape) != 4:
                    raise DataError(f"npz: x must have shape (N, C, H, W), got {shape}")
                if dtype.kind not in "fiub":
                    raise DataError(f"npz: x must be numeric, got dtype {dtype}")
                if shape[0] != y_shape[0]:
                    raise DataError(f"npz: x has {shape[0]} examples but y has {y_shape[0]}; expected equal N")
                keep = np.asarray(choose(y), dtype=np.int64)
                sample = math.prod(shape[1:])
                check_fits(len(keep) * sample * dtype.itemsize + converted_bytes(len(keep), shape[1:]),
                           f"{what} x ({len(keep)} x {'x'.join(map(str, shape[1:]))} kept of {shape[0]})")
                if fortran:
                    check_fits(shape[0] * sample * dtype.itemsize, f"{what} x (Fortran order, read whole)")
                    x = _read_fortran(fh, shape, dtype, what)[keep]
                else:
                    x = _read_rows(fh, shape, dtype, keep, f"{what} x")
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as err:
        raise DataError(f"{what}: cannot read it as a .npz of plain arrays ({err})") from None
    return x, y[keep]


def _read_fortran(fh: Any, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    n = math.prod(shape) * dtype.itemsize
    raw = fh.read(n)
    if len(raw) != n:
        raise DataError(f"{what}: the file ends before the {shape[0]} rows its header declares")
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F")
