"""The run folder's files, read safely and written atomically.

``config.json`` records a run's settings (and the only copy of a ``--storage`` URL), so a broken
one is an error that names the file and says what to do; it is never guessed at. The derived
files (``pareto.json``, ``trials.csv``, the plots, ``best/arch.json``) hold nothing the storage
does not: a broken one is rebuilt from the storage, with a message. Every file is written through
a temporary file in the same folder and ``os.replace``, so a kill during a write leaves the old
file or the new one, never half of one. Cost: checking reads each derived file once (the HTML
plot only its last bytes).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

from .cli_errors import CliError

__all__ = ["atomic_path", "atomic_write_text", "read_config", "check_config", "broken_derived",
           "rebuild_derived", "CONFIG_TYPES", "DERIVED"]

_NUMBER = (int, float)
_NONE = type(None)
#: JSON types of the config.json keys (``search.config.RunConfig.to_dict``); a present key of
#: another type is an error. Which keys ``--resume`` needs is ``RunConfig.from_dict``'s to say.
CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "storage": (str,), "study_name": (str,), "space": (str,), "backbone": (str,), "backend": (str,),
    "sampler": (str,), "proxy": (str,), "objectives": (list,), "settings": (dict,), "baselines": (list,),
    "trials": (int,), "total_trials": (int,), "workers": (int,), "population": (int, _NONE),
    "num_classes": (int,), "timeout": (*_NUMBER, _NONE), "input_shape": (list,), "resumed": (list,),
    "ray": (dict, _NONE), "command": (str,), "data_summary": (str,), "space_size": (str,), "machine": (dict,),
    "created": (str,)}
#: Derived files at the top of the run folder (``best/arch.json`` too), rebuilt from the storage.
DERIVED = ("pareto.json", "trials.csv", "pareto.png", "pareto.html", "hypervolume.png", "layers.png")


# ----------------------------------------------------------------------------- writing

@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` (same suffix, so writers that go by it still work);
    moved onto ``path`` when the block ends without error, removed otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if tmp.exists():
            os.replace(tmp, path)
    except OSError as err:
        where = f" ({err.filename})" if err.filename and Path(err.filename) not in (path, tmp) else ""
        raise CliError(f"cannot write {path}: {err.strerror or err}{where}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; ``CliError`` naming the file when it cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise CliError(f"cannot write {path}: it is a folder")
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


# ----------------------------------------------------------------------------- config.json

_FIX = "restore it from a copy (the trials are in the storage, untouched)"


def _type_names(kinds: tuple[type, ...]) -> str:
    names = {"str": "a string", "list": "a list", "dict": "an object", "int": "an integer",
             "float": "a number", "NoneType": "null"}
    return " or ".join(dict.fromkeys(names.get(k.__name__, k.__name__) for k in kinds))


def check_config(doc: Any, path: Path, objectives: Collection[str] = ()) -> dict[str, Any]:
    """``doc`` if it is a run configuration; else ``CliError`` naming ``path`` and the fault."""
    fix = _FIX
    if not isinstance(doc, dict):
        raise CliError(f"{path} is not a run configuration (a JSON {type(doc).__name__}, expected an object): {fix}")
    for key, kinds in CONFIG_TYPES.items():
        v = doc.get(key)
        if key in doc and (not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds)):
            raise CliError(f"{path}: '{key}' must be {_type_names(kinds)}, got {json.dumps(v)[:60]}: {fix}")
    names = [*doc.get("objectives", []), *(doc.get("settings") or {}).get("objectives", [])]
    bad = [o for o in names if not isinstance(o, str) or (objectives and o not in objectives)]
    if bad:
        raise CliError(f"{path}: unknown objective {bad[0]!r} (known: {', '.join(objectives)}): {fix}")
    return doc


def read_config(path: str | Path, objectives: Collection[str] = ()) -> dict[str, Any] | None:
    """The checked config at ``path``; None when there is no such file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise CliError(f"{path} is not valid JSON ({err}): {_FIX}") from None
    return check_config(doc, path, objectives)


# ----------------------------------------------------------------------------- derived files

def _pareto_ok(raw: bytes) -> bool:
    doc = json.loads(raw)
    ok = isinstance(doc, dict) and isinstance(doc.get("objectives"), list)
    for key in ("members", "baselines"):
        entries = doc.get(key, []) if isinstance(doc, dict) else None
        ok = ok and isinstance(entries, list) and all(
            isinstance(e, dict) and isinstance(e.get("trial"), int) and isinstance(e.get("values", {}), dict)
            for e in entries)
    return ok


def _csv_ok(raw: bytes) -> bool:
    rows = list(csv.reader(io.StringIO(raw.decode())))
    return bool(rows) and rows[0][:2] == ["number", "state"] and all(len(r) == len(rows[0]) for r in rows)


def _png_ok(raw: bytes) -> bool:
    return raw.startswith(b"\x89PNG\r\n\x1a\n") and raw[-8:-4] == b"IEND"


def _file_ok(path: Path) -> bool:
    try:
        if path.suffix == ".html":
            with path.open("rb") as fh:
                fh.seek(max(0, path.stat().st_size - 64))
                return fh.read().rstrip().endswith(b"</html>")
        raw = path.read_bytes()
        if path.suffix == ".png":
            return _png_ok(raw)
        if path.suffix == ".csv":
            return _csv_ok(raw)
        if path.name == "pareto.json":
            return _pareto_ok(raw)
        return isinstance(json.loads(raw), dict)
    except (OSError, ValueError, csv.Error):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False


def broken_derived(run_dir: str | Path) -> list[str]:
    """Names (relative to ``run_dir``) of derived files that exist but are broken."""
    run_dir = Path(run_dir)
    names = [*DERIVED, "best/arch.json"]
    return [n for n in names if (run_dir / n).exists() and not _file_ok(run_dir / n)]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rebuild_derived(run_dir: str | Path, rebuild: Callable[[], Any],
                    say: Callable[[str], None] = _stderr) -> list[str]:
    """Rebuild the derived files (``rebuild()``) when one is broken, saying which; returns their names."""
    broken = broken_derived(run_dir)
    if broken:
        say(f"note: {', '.join(broken)} in {run_dir} {'was' if len(broken) == 1 else 'were'} damaged: "
            "rebuilt from the storage")
        rebuild()
    return broken
