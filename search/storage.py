"""The run folder's storage and config.json: open, create, read, write.

``runs/<name>/`` holds the Optuna storage (``study.journal``: Optuna's JournalStorage on a
file, which stays consistent when several processes append to it -- each write is one locked
append -- and which ``optuna-dashboard runs/<name>/study.journal`` opens), or a ``--storage``
URL recorded in ``config.json`` (``search.config.RunConfig``). An existing journal is checked
when a run is loaded: a torn or stray line is repaired (``--resume``) or read around
(``search.journal_repair``); a broken config.json is an error naming the file, and broken derived
files are rebuilt from the storage (``search.safe_files``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .cli_errors import CliError

__all__ = ["JOURNAL", "CONFIG", "open_storage", "storage_spec", "new_run_dir", "write_config", "read_config",
           "load_run", "machine_info", "check_name"]

JOURNAL = "study.journal"
CONFIG = "config.json"


def storage_spec(run_dir: Path, storage: str | None) -> str:
    """What config.json records: a URL, or a journal path (relative to the run folder if inside)."""
    if storage is None:
        return JOURNAL
    return storage


def open_storage(spec: str, run_dir: Path | None = None, must_exist: bool = False,
                 repair: bool | None = None) -> Any:
    """An Optuna storage for ``spec``: a URL (``sqlite:///...``, ``postgresql://...``) or a journal file.
    ``repair`` True/False: an existing journal is checked first (``search.journal_repair.open_journal``:
    repaired in place, or read for its whole records)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if "://" in spec:
        try:
            return optuna.storages.get_storage(spec)
        except Exception as err:  # any driver/URL problem is bad input here
            raise CliError(f"cannot open storage {spec!r}: {type(err).__name__}: {err}. Give a journal "
                           "file path, sqlite:///FILE.db or postgresql://USER@HOST/DB") from None
    path = Path(spec)
    if not path.is_absolute() and run_dir is not None:
        path = run_dir / path
    if must_exist and not path.is_file():
        raise CliError(f"{path.parent} holds no study: {path.name} not found")
    if not path.parent.is_dir():
        raise CliError(f"cannot open storage {spec!r}: folder {path.parent} does not exist")
    if repair is not None and path.is_file():
        from .journal_repair import open_journal

        return open_journal(path, repair_it=repair, run_hint=str(run_dir or path.parent))
    return JournalStorage(JournalFileBackend(str(path)))


# ----------------------------------------------------------------------------- config

def machine_info() -> dict[str, Any]:
    """CPU model, core count, package versions: what a latency figure depends on."""
    import optuna
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "optuna": optuna.__version__,
                "numpy": np.__version__}
    for name in ("ray", "matplotlib", "plotly", "sklearn"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    from spaces.fold import ORT_MIN_GROUP_CHANNELS

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "ort_group_channels": ORT_MIN_GROUP_CHANNELS,
            "platform": platform.platform(), "node": platform.node(), "versions": versions}


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_name(name: str) -> str:
    """A run folder name is a plain name: no path separator, no ``..``, not absolute."""
    if not _NAME.fullmatch(name) or ".." in name or len(name) > 200:
        raise CliError(f"--name must be a plain folder name (letters, digits, . _ + -; no '/', no '..'), "
                       f"got {name!r}; use --out to choose where run folders go")
    return name


def new_run_dir(out: str | Path, space: str, name: str | None) -> Path:
    """``out/<name>`` or ``out/<space>-<YYYYmmdd-HHMMSS>``; refuses to reuse an existing run."""
    if name is not None:
        check_name(name)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out) / (name or f"{space}-{stamp}")
    if (run_dir / CONFIG).exists():
        raise CliError(f"run folder {run_dir} already holds a run; continue it with --resume {run_dir}, "
                       "or pick another --name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_config(run_dir: Path, config: Any) -> None:
    """Write config.json atomically (a ``RunConfig`` or its JSON document)."""
    from .safe_files import atomic_write_text

    doc = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    atomic_write_text(run_dir / CONFIG, json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.json as a dict ({} when absent); ``CliError`` naming the file when it is broken
    (not JSON, not an object, a key of the wrong type, an unknown objective: ``search.safe_files``)."""
    from .objectives import OBJECTIVES
    from .safe_files import read_config as read_checked

    return read_checked(run_dir / CONFIG, OBJECTIVES) or {}


def load_run(run: str | Path, repair: bool = False) -> tuple[Path, Any, dict[str, Any]]:
    """(run folder, Optuna study, config) of an existing run; ``CliError`` if there is none.
    A damaged journal is repaired (``repair``, keeping a copy) or read for its whole records.
    ``search.runfolder.load_run`` also rebuilds broken derived files."""
    import optuna

    run_dir = Path(run)
    if not run_dir.is_dir():
        raise CliError(f"run folder {run_dir} does not exist")
    config = read_config(run_dir)
    spec = config.get("storage", JOURNAL)
    if not isinstance(spec, str):
        raise CliError(f"{run_dir / CONFIG}: 'storage' must be a string, got {spec!r}")
    if "://" not in spec and not (run_dir / spec).is_file() and not Path(spec).is_file():
        raise CliError(f"{run_dir} holds no study (no {JOURNAL} and no storage in {CONFIG})")
    storage = open_storage(spec, run_dir, repair=repair)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    name = config.get("study_name") or (names[0] if len(names) == 1 else None)
    if name is None or name not in names:
        raise CliError(f"{run_dir} holds no study" + (f" named {name!r}" if name else "")
                       + (f" (studies there: {', '.join(names)})" if names else ""))
    study = optuna.load_study(study_name=name, storage=storage)
    if not config:
        config = dict(study.user_attrs.get("config", {}))
    return run_dir, study, config


