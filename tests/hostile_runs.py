"""Real tiny runs and plain-Optuna readings of their journals (shared by the storage fault tests)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import optuna
from search_cli import TINY, lock_env, run

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tiny_run(out: Path, name: str = "r", *extra: str) -> Path:
    """One real ``search.run`` of the groups space (4 trials, no baselines) on the TINY budget."""
    res = run("search.run", "--space", "groups", "--trials", "4", "--no-baselines", *TINY, "--out", str(out),
              "--name", name, *extra, extra_env=lock_env(out))
    assert res.returncode == 0, res.stdout + res.stderr
    return out / name


def copy_run(src: Path, dst: Path, journal: bytes | None = None) -> Path:
    """A copy of the run folder ``src`` at ``dst``, its journal replaced by ``journal`` if given."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock", ".running-*"))
    if journal is not None:
        (dst / "study.journal").write_bytes(journal)
    return dst


def optuna_complete(journal: bytes) -> dict[int, tuple]:
    """trial number -> (values, params) of the COMPLETE trials, as plain Optuna reads ``journal``
    (which must be whole lines: Optuna raises on a bad line that has lines after it)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j"
        path.write_bytes(journal)
        storage = JournalStorage(JournalFileBackend(str(path)))
        out: dict[int, tuple] = {}
        for s in storage.get_all_studies():
            for t in storage.get_all_trials(s._study_id):
                if t.state.name == "COMPLETE":
                    out[t.number] = (tuple(t.values), tuple(sorted(t.params.items())))
        return out


def whole_lines(data: bytes, cut: int) -> bytes:
    """``data[:cut]`` without its torn last line: what a careful reader keeps."""
    return data[:data.rfind(b"\n", 0, cut) + 1]
