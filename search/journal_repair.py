"""Torn and stray lines in an Optuna journal file: detect them, keep a copy, repair.

Optuna's ``JournalFileBackend`` stores a study as one JSON record per line, each append made
under its lock and fsynced. A kill or a full disk during an append leaves the last line without
its newline (a *torn* record). Optuna's reader skips a torn last line without a word, but the next
append is glued onto it, and from then on every read of the file raises ``JSONDecodeError``. A
stray line (an editor's text, a line of NUL bytes after a crash) does the same.

``scan`` sorts the lines of a journal: a record is *kept* when it is a whole line that parses as
a JSON object and replays in order (Optuna's own replay, so a record Optuna would choke on is
caught too); a record that is complete but lacks only its newline is kept; a complete record
glued after a torn one is *salvaged* (it starts at a record opening inside the line and runs to
its end); everything else is *dropped*. Nothing else is changed: trial ids, which Optuna numbers
by replay order, stay those that a reader of the whole records would see. ``repair`` does this
in place under the journal's lock, after copying the damaged file next to it; ``open_journal``
gives a storage over a journal: repaired, or a read-only view of its whole records.
Cost: one pass over the file, O(bytes), plus one replay of its records.

The Optuna-private details used (the replay class, the record opening ``{"op_code":``) are in
``search.optuna_adapter`` (``journal_replayer``, ``JOURNAL_RECORD_START``), pinned by its tests.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from optuna.storages.journal import BaseJournalBackend

from .optuna_adapter import JOURNAL_RECORD_START, journal_replayer

__all__ = ["Dropped", "JournalCheck", "scan", "check", "repair", "open_journal", "BACKUP_INFIX"]

BACKUP_INFIX = ".damaged-"
LOCK_GRACE_S = 5        # a live append holds the lock for milliseconds; an older lock is a killed writer's


# ----------------------------------------------------------------------------- the journal's lock

def _optuna_file_lock(path: Path) -> Any:
    """The lock Optuna's ``JournalFileBackend`` takes by default for each append."""
    from optuna.storages.journal import JournalFileSymlinkLock

    return JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE_S)


# ----------------------------------------------------------------------------- scanning

@dataclass(frozen=True)
class Dropped:
    """One line of the damaged file that was left out (or cut down to the record glued after it)."""

    line: int       # 1-based line number in the damaged file
    offset: int     # byte offset where the line starts
    size: int       # bytes dropped
    reason: str

    def describe(self) -> str:
        return f"line {self.line} (byte {self.offset}, {self.size} bytes): {self.reason}"


@dataclass
class JournalCheck:
    """What ``scan`` found in a journal, and what ``repair`` did about it."""

    path: Path
    records: int = 0                                    # whole records kept
    dropped: list[Dropped] = field(default_factory=list)
    salvaged: int = 0                                   # whole records recovered from glued lines
    newline_added: bool = False                         # the last record was whole but lacked "\n"
    backup: Path | None = None
    repaired: bool = False

    @property
    def damaged(self) -> bool:
        return bool(self.dropped or self.salvaged or self.newline_added)

    def summary(self) -> str:
        """One paragraph: what is wrong, what was kept, where the copy is."""
        if not self.damaged:
            return f"{self.path}: {self.records} records, no damage"
        parts = [d.describe() for d in self.dropped[:3]]
        if len(self.dropped) > 3:
            parts.append(f"and {len(self.dropped) - 3} more line(s)")
        if self.newline_added:
            parts.append("the last record was whole but lacked its newline (kept)")
        what = "; ".join(parts)
        glued = f" ({self.salvaged} recovered from glued lines)" if self.salvaged else ""
        if self.repaired:
            return (f"{self.path} was damaged: {what}. Repaired: its {self.records} whole records are kept{glued}; "
                    f"a copy of the damaged file is {self.backup}")
        return f"{self.path} is damaged: {what}. Reading its {self.records} whole records{glued}"


def _lines(data: bytes) -> Iterator[tuple[int, bytes, bool]]:
    """(offset, line without its newline, had a newline) for each line of ``data``."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            yield start, data[start:], False
            return
        yield start, data[start:end], True
        start = end + 1


def _record(text: bytes, apply: Callable[[dict[str, Any]], None]) -> str | None:
    """None when ``text`` is one whole record that replays; else why not."""
    if not text.strip():
        return "empty line"
    try:
        record = json.loads(text)
    except (ValueError, UnicodeDecodeError):   # JSONDecodeError is a ValueError
        return "not JSON (a torn write, or a stray line)"
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a journal record"
    try:
        apply(record)
    except Exception as err:  # anything Optuna's replay raises on this record
        return f"not a valid journal record ({type(err).__name__}: {err})"
    return None


def scan(data: bytes, path: Path | str = "<journal>") -> tuple[JournalCheck, list[bytes]]:
    """(what was found, the kept records as lines ending in ``\\n``) for the bytes of a journal."""
    result = JournalCheck(Path(path))
    apply = journal_replayer()
    kept: list[bytes] = []
    for number, (offset, line, had_newline) in enumerate(_lines(data), start=1):
        why = _record(line, apply)
        if why is None:
            kept.append(line + b"\n")
            result.newline_added = result.newline_added or not had_newline
            continue
        glued = _glued(line, apply)
        if glued is not None:
            kept.append(line[glued:] + b"\n")
            result.salvaged += 1
            result.dropped.append(Dropped(number, offset, glued, "a torn record with a whole record glued "
                                                                 "after it (an interrupted write): torn part dropped"))
            continue
        if not had_newline:
            why = "torn last line, no newline (an interrupted write)"
        result.dropped.append(Dropped(number, offset, len(line) + had_newline, why))
    result.records = len(kept)
    return result, kept


def _glued(line: bytes, apply: Callable[[dict[str, Any]], None]) -> int | None:
    """Offset of a whole record that ends ``line`` and starts after its first byte, if any."""
    at = line.find(JOURNAL_RECORD_START, 1)
    while at > 0:
        if _record(line[at:], apply) is None:
            return at
        at = line.find(JOURNAL_RECORD_START, at + 1)
    return None


# ----------------------------------------------------------------------------- checking and repairing

def _read_settled(path: Path, tries: int = 5) -> bytes:
    """The file's bytes; if its end is torn, read again a moment later in case a live writer is
    mid-append (an append takes milliseconds), until it stops changing."""
    data = path.read_bytes()
    for _ in range(tries):
        if not data or data.endswith(b"\n"):
            break
        time.sleep(0.2)
        again = path.read_bytes()
        if again == data:
            break
        data = again
    return data


def check(path: str | Path) -> tuple[JournalCheck, list[bytes]]:
    """Scan the journal at ``path`` without changing it (no lock taken)."""
    path = Path(path)
    return scan(_read_settled(path), path)


def _backup_path(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}{BACKUP_INFIX}{stamp}")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{BACKUP_INFIX}{stamp}-{n}")
        n += 1
    return candidate


def _write_synced(path: Path, chunks: list[bytes]) -> None:
    with open(path, "wb") as fh:
        for c in chunks:
            fh.write(c)
        fh.flush()
        os.fsync(fh.fileno())


def repair(path: str | Path) -> JournalCheck:
    """Repair the journal in place under its lock: a copy of the damaged file is written next to
    it first (``<name>.damaged-<time>``), then the kept records replace it atomically."""
    path = Path(path)
    lock = _optuna_file_lock(path)
    lock.acquire()
    try:
        data = path.read_bytes()
        result, kept = scan(data, path)
        if not result.damaged:
            return result
        result.backup = _backup_path(path)
        _write_synced(result.backup, [data])
        tmp = path.with_name(path.name + ".repair-tmp")
        _write_synced(tmp, kept)
        os.replace(tmp, path)
        result.repaired = True
    finally:
        lock.release()
    return result


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def open_journal(path: str | Path, *, repair_it: bool = False, run_hint: str = "",
                 say: Callable[[str], None] = _stderr) -> Any:
    """An Optuna ``JournalStorage`` over the journal at ``path``, checked first.

    Damaged: with ``repair_it`` it is repaired in place (see ``repair``); otherwise the storage is
    a read-only view of its whole records, and ``say`` tells how to repair (``run_hint``: the
    run folder, for the message). Either way ``say`` gets the summary.
    """
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(path)
    found, kept = check(path)
    if found.damaged and repair_it:
        found = repair(path)
    if not found.damaged or found.repaired:
        if found.repaired:
            say(f"repair: {found.summary()}")
        return JournalStorage(JournalFileBackend(str(path)))
    where = run_hint or "RUN"
    say(f"warning: {found.summary()}; python -m search.run --resume {where} repairs the file (keeping a copy)")
    return JournalStorage(_ReadOnlyJournal([json.loads(line) for line in kept], path, where))


class _ReadOnlyJournal(BaseJournalBackend):
    """The whole records of a damaged journal, in memory; writing is refused with a message."""

    def __init__(self, records: list[dict[str, Any]], path: Path, run_hint: str) -> None:
        self._records = records
        self._path = path
        self._hint = run_hint

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        yield from self._records[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        from .cli_errors import CliError

        raise CliError(f"{self._path} is damaged and open read-only; repair it first with "
                       f"python -m search.run --resume {self._hint}")
