"""Per-machine calibration of the reference network: its time in ms, measured once, cached.

Latency is timed as a ratio to the reference (``evaluators.interleave``) and turned into ms
with ``ref_ms``, the reference's own time on this machine for the same runtime, device,
threads, batch and input shape. ``ref_ms`` is measured carefully once -- the reference alone
for ``seconds`` (default 3 s) in ~1 ms samples; ``ref_ms`` is the 5th percentile of the
samples (interference only ever adds time, so a low quantile is the machine's own speed; the
5th, not the minimum, so that one lucky sample does not set it) --
and cached in a JSON file outside any run folder::

    $GROUPNAS_CACHE_DIR/latency-calibration.json      (default: $XDG_CACHE_HOME/groupnas,
                                                        else ~/.cache/groupnas)

keyed by CPU model, CPU count, torch / onnxruntime versions, runtime, device, threads, batch,
shape and reference version. A missing, unreadable or corrupt file or entry is remeasured
(and rewritten atomically), never a traceback; a cache folder that cannot be written keeps the
entry for this process only. Delete the file to recalibrate. ``calibration_info()`` reports
the file and the entries this process used (``config.json`` records it).
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, TypeGuard

__all__ = ["CACHE_ENV", "CALIBRATION_FILE", "cache_dir", "calibration_path", "machine_id", "calibration_key",
           "get_calibration", "calibrate", "calibration_info", "read_json_cache", "write_json_cache"]

CACHE_ENV = "GROUPNAS_CACHE_DIR"
CALIBRATION_FILE = "latency-calibration.json"
_used: dict[tuple[str, str], dict[str, Any]] = {}  # (file, key) -> entry, for this process (calibration_info)


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """``override``, else ``$GROUPNAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/groupnas``, else
    ``~/.cache/groupnas``."""
    if override:
        return Path(override)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "groupnas"


def calibration_path(override: str | os.PathLike | None = None) -> Path:
    return cache_dir(override) / CALIBRATION_FILE


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def machine_id() -> dict[str, Any]:
    """What the cache key is made of, machine side."""
    import torch

    try:
        import onnxruntime as ort
        ort_version = ort.__version__
    except ImportError:
        ort_version = "none"
    from spaces.fold import ORT_MIN_GROUP_CHANNELS

    return {"cpu": _cpu_model(), "cpus": os.cpu_count() or 0, "system": platform.system(),
            "torch": torch.__version__, "onnxruntime": ort_version,
            "ort_group_channels": ORT_MIN_GROUP_CHANNELS}


def calibration_key(runtime: str, device: str, threads: int, batch: int, input_shape: tuple[int, ...],
                    reference: str) -> str:
    m = machine_id()
    shape = "x".join(str(int(v)) for v in input_shape)
    ver = m["onnxruntime"] if runtime == "onnxruntime" else m["torch"]
    return (f"{m['cpu']}|cpus{m['cpus']}|{runtime}-{ver}|{device}|t{threads}|b{batch}|{shape}|{reference}")


def read_json_cache(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when missing, unreadable or not a JSON object."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_json_cache(path: Path, doc: dict[str, Any]) -> bool:
    """Write ``doc`` atomically (temp file + rename); False (and a warning) when it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
        return True
    except OSError as err:
        warnings.warn(f"cannot write the latency cache {path} ({err}); set ${CACHE_ENV} to a writable "
                      "folder to keep it across runs", RuntimeWarning, stacklevel=3)
        return False


def _valid(entry: Any) -> TypeGuard[dict[str, Any]]:
    return (isinstance(entry, dict) and isinstance(entry.get("ref_ms"), (int, float))
            and not isinstance(entry.get("ref_ms"), bool) and math.isfinite(entry["ref_ms"]) and entry["ref_ms"] > 0)


def calibrate(fn: Callable[[], Any], seconds: float = 3.0, min_sample_ms: float = 1.0,
              sync: Callable[[], None] | None = None) -> dict[str, Any]:
    """Time ``fn`` alone (see the module doc): ``ref_ms`` and how it was measured."""
    from .interleave import quartiles, time_calls

    one = min(time_calls(fn, 1, sync) for _ in range(3))
    inner = max(1, int(min_sample_ms / max(one, 1e-3)))
    samples: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(samples) < 5:
        samples.append(time_calls(fn, inner, sync))
    q1, med, q3 = quartiles(samples)
    low = statistics.quantiles(samples, n=20, method="inclusive")[0]
    return {"ref_ms": low, "median_ms": med, "iqr_ms": q3 - q1, "samples": len(samples), "inner": inner,
            "seconds": seconds, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "node": socket.gethostname(),
            "min_ms": min(samples), "rule": "5th percentile of samples of the reference alone"}


def get_calibration(key: str, measure: Callable[[], dict[str, Any]],
                    path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The cached entry for ``key`` (in this process, else in the file), else ``measure()`` it
    and store it. Call under the measurement lock (it serialises writers across processes)."""
    file = Path(path) if path else calibration_path()
    memo = _used.get((str(file), key))
    if memo is not None:
        return memo
    doc = read_json_cache(file)
    stored = doc.get("entries")
    entries: dict[str, Any] = stored if isinstance(stored, dict) else {}
    found = entries.get(key)
    entry = found if _valid(found) else dict(measure(), key=key)
    if entry is not found:
        entries = {k: v for k, v in entries.items() if _valid(v)}
        entries[key] = entry
        write_json_cache(file, {"format": "groupnas latency calibration v1", "entries": entries})
    _used[(str(file), key)] = entry
    return entry


def calibration_info() -> dict[str, Any]:
    """The cache file, how to override it, this machine, and every entry used in this process."""
    return {"file": str(calibration_path()), "override_env": CACHE_ENV, "machine": machine_id(),
            "entries": {key: entry for (_, key), entry in _used.items()},
            "ref_ms_rule": "5th percentile of the reference timed alone, once per machine and setting"}


def _clear_memo() -> None:
    """Forget this process's entries (tests)."""
    _used.clear()
