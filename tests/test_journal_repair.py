"""Fault tests of the journal repair on the journal of a real tiny run, torn at many byte offsets.

The reference is independent of ``search.journal_repair``: the original file cut at its last
whole line, read by plain Optuna. A repair must give exactly those bytes (so every record that
was whole is kept, and nothing else changes), keep a byte-exact copy of the damaged file, and a
resumed run must keep every trial that was complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile_runs import copy_run, lock_env, optuna_complete, tiny_run, whole_lines
from search_cli import run

from search.cli_errors import CliError
from search.journal_repair import BACKUP_INFIX, check, open_journal, repair, scan


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    run_dir = tiny_run(tmp_path_factory.mktemp("base"))
    return run_dir, (run_dir / "study.journal").read_bytes()


def _line_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, index of the newline) of each line."""
    spans, start = [], 0
    while start < len(data):
        end = data.index(b"\n", start)
        spans.append((start, end))
        start = end + 1
    return spans


def _cuts(data: bytes) -> list[int]:
    """Byte offsets to tear at: at, just after, inside, one before and at the newline of a spread
    of lines (every 5th, and the last three)."""
    spans = _line_spans(data)
    chosen = spans[::5] + spans[-3:]
    return sorted({c for s, e in chosen for c in (s, s + 1, (s + e) // 2, e - 1, e)})


def test_clean_journal_is_left_alone(base: tuple[Path, bytes], tmp_path: Path) -> None:
    _, data = base
    found, kept = scan(data)
    assert not found.damaged and found.records == data.count(b"\n") and b"".join(kept) == data
    path = tmp_path / "study.journal"
    path.write_bytes(data)
    assert not repair(path).damaged
    assert path.read_bytes() == data and list(tmp_path.iterdir()) == [path]   # no copy made


def test_tear_at_many_offsets_keeps_every_whole_record(base: tuple[Path, bytes], tmp_path: Path) -> None:
    _, data = base
    newlines = {e for _, e in _line_spans(data)}
    cuts = _cuts(data)
    assert len(cuts) > 80
    for cut in cuts:
        torn = data[:cut]
        path = tmp_path / f"cut{cut}" / "study.journal"
        path.parent.mkdir()
        path.write_bytes(torn)
        result = repair(path)
        repaired = path.read_bytes()
        # a record that lacks only its newline is whole: kept; any other torn tail is dropped
        expected = data[:cut + 1] if cut in newlines else whole_lines(data, cut)
        assert repaired == expected, cut
        assert optuna_complete(repaired) == optuna_complete(expected)
        torn_tail = cut not in newlines and torn != expected
        assert result.damaged == (torn_tail or cut in newlines)
        if result.damaged:
            assert result.backup is not None and result.backup.read_bytes() == torn
            assert result.backup.name.startswith("study.journal" + BACKUP_INFIX)
        if torn_tail:
            assert len(result.dropped) == 1 and "torn last line" in result.dropped[0].reason
            assert result.dropped[0].offset == len(expected) and result.dropped[0].size == cut - len(expected)


def test_write_glued_onto_a_torn_line_is_salvaged(base: tuple[Path, bytes], tmp_path: Path) -> None:
    """Optuna itself appends after a torn last line (the glued line then breaks every read):
    the torn part is dropped and the glued record kept."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    run_dir, data = base
    spans = _line_spans(data)
    start, end = spans[len(spans) // 2]
    path = tmp_path / "study.journal"
    path.write_bytes(data[:(start + end) // 2])
    study = optuna.load_study(study_name=run_dir.name, storage=JournalStorage(JournalFileBackend(str(path))))
    study.set_user_attr("written_after_the_tear", 1)          # glued onto the torn line
    with pytest.raises(ValueError):       # the next write lands on its own line, then its read-back fails
        study.set_user_attr("and_one_more", 2)
    with pytest.raises(ValueError):       # and plain Optuna can no longer read the file at all
        JournalStorage(JournalFileBackend(str(path)))
    result = repair(path)
    assert result.salvaged == 1 and len(result.dropped) == 1
    repaired = path.read_bytes()
    assert repaired.startswith(data[:start])
    assert optuna_complete(repaired) == optuna_complete(data[:start])
    again = optuna.load_study(study_name=run_dir.name, storage=JournalStorage(JournalFileBackend(str(path))))
    assert again.user_attrs["written_after_the_tear"] == 1 and again.user_attrs["and_one_more"] == 2


def test_stray_lines_are_dropped_and_nothing_else(base: tuple[Path, bytes], tmp_path: Path) -> None:
    _, data = base
    lines = data.splitlines(keepends=True)
    strays = [b"hello from an editor\n", b"\x00" * 24 + b"\n", b"[1, 2]\n", b"{}\n",
              b'{"op_code": 99, "worker_id": "x"}\n', b"\n", b"\xff\xfe not utf-8\n"]
    mixed = b"".join(lines[:3] + strays[:4] + lines[3:40] + strays[4:] + lines[40:])
    path = tmp_path / "study.journal"
    path.write_bytes(mixed)
    result = repair(path)
    assert path.read_bytes() == data
    assert [d.line for d in result.dropped] == [4, 5, 6, 7, 45, 46, 47]
    assert result.records == len(lines)


def test_read_only_view_reads_whole_records_and_refuses_writes(base: tuple[Path, bytes], tmp_path: Path) -> None:
    import optuna

    run_dir, data = base
    cut = len(data) - 30
    path = tmp_path / "study.journal"
    path.write_bytes(data[:cut])
    said: list[str] = []
    storage = open_journal(path, repair_it=False, run_hint="RUNDIR", say=said.append)
    assert path.read_bytes() == data[:cut] and list(tmp_path.iterdir()) == [path]   # untouched
    assert len(said) == 1 and "is damaged" in said[0] and "--resume RUNDIR" in said[0]
    study = optuna.load_study(study_name=run_dir.name, storage=storage)
    done = {t.number for t in study.get_trials() if t.state.name == "COMPLETE"}
    assert done == set(optuna_complete(whole_lines(data, cut)))
    with pytest.raises(CliError, match="read-only"):
        study.set_user_attr("x", 1)
    assert check(path)[0].damaged


def _cli_cuts(data: bytes) -> dict[str, int]:
    """The tears the CLI test makes: in the last line, a whole last record without its newline,
    and mid-file inside the record that completes a trial."""
    spans = _line_spans(data)
    completes = [i for i, (s, e) in enumerate(spans)
                 if json.loads(data[s:e]).get("op_code") == 6 and json.loads(data[s:e]).get("state") == 1]
    s, e = spans[completes[len(completes) // 2]]
    return {"last-line": len(data) - 25, "no-newline": len(data) - 1, "mid-file": (s + e) // 2}


@pytest.mark.parametrize("where", ["mid-file", pytest.param("last-line", marks=pytest.mark.slow),
                                   pytest.param("no-newline", marks=pytest.mark.slow)])
def test_report_then_resume_keep_every_complete_trial(base: tuple[Path, bytes], tmp_path: Path, where: str) -> None:
    src, data = base
    cut = _cli_cuts(data)[where]
    torn = data[:cut]
    run_dir = copy_run(src, tmp_path / "r", torn)
    kept_before = optuna_complete(data[:cut + 1] if where == "no-newline" else whole_lines(data, cut))

    rep = run("search.report", str(run_dir))
    assert rep.returncode == 0 and "Traceback" not in rep.stdout + rep.stderr, rep.stderr
    assert "is damaged" in rep.stderr and f"--resume {run_dir}" in rep.stderr and "Pareto front" in rep.stdout
    assert (run_dir / "study.journal").read_bytes() == torn                 # report only reads
    exp = run("search.export", str(run_dir), "--pick", "knee", "--out", str(tmp_path / "k.json"))
    assert exp.returncode == 0 and "is damaged" in exp.stderr and (tmp_path / "k.json").is_file(), exp.stderr

    res = run("search.run", "--resume", str(run_dir), extra_env=lock_env(tmp_path))
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Traceback" not in out, out
    assert "repair:" in out and "study.journal was damaged" in out
    backups = list(run_dir.glob("study.journal" + BACKUP_INFIX + "*"))
    assert len(backups) == 1 and backups[0].read_bytes() == torn
    after = optuna_complete((run_dir / "study.journal").read_bytes())      # plain Optuna reads it again
    assert all(after.get(n) == v for n, v in kept_before.items()), (kept_before, after)
