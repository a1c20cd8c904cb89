"""Hostile but fair inputs to the commands (issue 15): each gets one clear ``error:`` line and a
non-zero exit, or (for damage the tools can repair) a message and a working result; never a
traceback. Every command here runs as a subprocess under a memory cap (``CAP``), so a memory
bomb fails fast instead of taking the machine down.

The cases cover every class of issue 15: storage, options, processes, data files,
architectures and inference mode.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hostile_runs import copy_run, lock_env, tiny_run
from polling import alive, children, wait_until
from search_cli import ROOT, TINY, env

CAP = 3 << 30          # bytes of address space per command: torch loads in it, a bomb does not


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


def cmd(module: str, *args: str, timeout: float = 120, extra_env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env(**(extra_env or {})),
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_cap)


def refused(res: subprocess.CompletedProcess, *any_of: str) -> None:
    """Exit 2, no traceback, one ``error:`` line on stderr that says one of ``any_of``."""
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out[-2000:]
    assert res.returncode == 2, (res.returncode, out[-2000:])
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, res.stderr
    assert any(w.lower() in errors[0].lower() for w in any_of), (any_of, errors[0])


def fine(res: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 0, no traceback, and each of ``words`` in the output."""
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Traceback" not in out, out[-2000:]
    for w in words:
        assert w in out, (w, out[-2000:])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("hostile"))


# ----------------------------------------------------------------------------- storage and run folders

def test_torn_last_line_report_says_so_and_reads_the_rest(base: Path, tmp_path: Path) -> None:
    data = (base / "study.journal").read_bytes()
    run_dir = copy_run(base, tmp_path / "r", data[:-20])
    fine(cmd("search.report", str(run_dir)), "is damaged", "torn last line", "Pareto front")


def test_stray_line_in_the_middle(base: Path, tmp_path: Path) -> None:
    lines = (base / "study.journal").read_bytes().splitlines(keepends=True)
    run_dir = copy_run(base, tmp_path / "r", b"".join(lines[:5] + [b"oops, a stray line\n"] + lines[5:]))
    fine(cmd("search.report", str(run_dir)), "is damaged", "line 6", "Pareto front")
    fine(cmd("search.export", str(run_dir), "--out", str(tmp_path / "k.json")), "is damaged", "wrote trial")
    fine(cmd("search.run", "--resume", str(run_dir), extra_env=lock_env(tmp_path)), "repair:")
    assert b"oops" not in (run_dir / "study.journal").read_bytes()


@pytest.mark.parametrize("text, words", [
    ("[1, 2]", ("not a run configuration", "JSON list")),
    ("{not json", ("not valid JSON",)),
    ('{"objectives": "accuracy"}', ("'objectives' must be a list",)),
    ('{"objectives": ["accuracy", "beauty"]}', ("unknown objective 'beauty'",)),
    ('{"storage": 42}', ("'storage' must be a string",)),
])
def test_broken_config_is_an_error_naming_the_file(base: Path, tmp_path: Path, text: str,
                                                    words: tuple[str, ...]) -> None:
    run_dir = copy_run(base, tmp_path / "r")
    (run_dir / "config.json").write_text(text)
    commands = [("search.report", ()), ("search.run", ("--resume",))]
    if text.startswith("["):                             # the other commands read it the same way: once
        commands += [("search.export", ("--out", str(tmp_path / "a.json"))),
                     ("search.remeasure", ("--runtime", "torch"))]
    for module, args in commands:
        res = cmd(module, *args, str(run_dir)) if module == "search.run" else cmd(module, str(run_dir), *args)
        refused(res, str(run_dir / "config.json"))
        refused(res, *words)


def test_config_without_run_settings_cannot_resume(base: Path, tmp_path: Path) -> None:
    run_dir = copy_run(base, tmp_path / "r")
    (run_dir / "config.json").write_text('{"storage": "study.journal"}')
    res = cmd("search.run", "--resume", str(run_dir))
    refused(res, "missing field 'space'")
    refused(res, "cannot be resumed")


@pytest.mark.parametrize("name, content", [
    ("pareto.json", "[]"), ("pareto.json", '{"objectives": ["accuracy"], "members": [{"trial": "x"}]}'),
    ("pareto.json", '{"objec'), ("trials.csv", "number,state\n1"), ("pareto.png", "\x89PNG\r\n"),
    ("pareto.html", "<html><body>"), ("best/arch.json", "[]"),
])
def test_broken_derived_file_is_rebuilt_from_the_storage(base: Path, tmp_path: Path, name: str, content: str) -> None:
    run_dir = copy_run(base, tmp_path / "r")
    (run_dir / name).write_text(content)
    fine(cmd("search.export", str(run_dir), "--out", str(tmp_path / "a.json")), f"{name} in {run_dir} was damaged",
         "rebuilt from the storage")
    doc = json.loads((run_dir / "pareto.json").read_text())
    assert doc["objectives"] == ["accuracy", "latency"] and doc["members"]
    assert (run_dir / name).read_bytes() != content.encode()


def test_remeasure_with_broken_pareto_json(base: Path, tmp_path: Path) -> None:
    run_dir = copy_run(base, tmp_path / "r")
    (run_dir / "pareto.json").write_text("[]")
    fine(cmd("search.remeasure", str(run_dir), "--runtime", "torch", "--seconds", "0.05", "--members", "front",
             extra_env=lock_env(tmp_path)), "rebuilt from the storage")


def test_export_into_an_existing_folder_and_unwritable_paths(base: Path, tmp_path: Path) -> None:
    folder = tmp_path / "picked"
    folder.mkdir()
    res = cmd("search.export", str(base), "--out", str(folder))
    fine(res, str(folder / "trial-"))
    (written,) = folder.glob("trial-*.json")
    assert json.loads(written.read_text())["layers"]
    refused(cmd("search.export", str(base), "--out", str(base / "config.json" / "x.json")), "cannot write")
    refused(cmd("search.export", str(base), "--pick", "front", "--out", str(base / "config.json")), "is a file")


def test_report_on_missing_or_empty_folders(tmp_path: Path) -> None:
    refused(cmd("search.report", str(tmp_path / "nope")), "does not exist")
    refused(cmd("search.report", str(tmp_path)), "holds no study")
    (tmp_path / "study.journal").write_bytes(b"")
    refused(cmd("search.report", str(tmp_path)), "holds no study")


def _start(tmp_path: Path, *args: str, sleep: float = 2.0) -> subprocess.Popen:
    """``search.run`` in the background, each trial first sleeping ``sleep`` s (a ``TrialHook``)."""
    return subprocess.Popen([sys.executable, "-m", "hooked_run", json.dumps({"sleep": sleep}), "--space", "groups",
                             "--no-baselines", *TINY, "--out", str(tmp_path), "--name", "k", *args], cwd=ROOT,
                            env=env(**lock_env(tmp_path)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_cap)


def _completes(journal: Path) -> int:
    return journal.read_bytes().count(b'"state":1') if journal.is_file() else 0


def test_report_reads_the_run_state_marker(base: Path, tmp_path: Path) -> None:
    """The marker of a search whose process is gone means it was killed; a live one, in progress."""
    import socket

    gone = subprocess.Popen(["true"])
    gone.wait()
    run_dir = copy_run(base, tmp_path / "r")
    marker = run_dir / f".running-{socket.gethostname()}-{gone.pid}.json"
    marker.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "started": "earlier"}))
    fine(cmd("search.report", str(run_dir)), "this run was killed", f"--resume {run_dir}")
    marker.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    fine(cmd("search.report", str(run_dir)), "still in progress")


@pytest.mark.slow
def test_report_says_a_killed_run_was_killed(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--trials", "4")
    try:
        wait_until(lambda: _completes(tmp_path / "k" / "study.journal") >= 1)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    fine(cmd("search.report", str(tmp_path / "k")), "this run was killed", f"--resume {tmp_path / 'k'}")
    fine(cmd("search.run", "--resume", str(tmp_path / "k"), extra_env=lock_env(tmp_path)))
    res = cmd("search.report", str(tmp_path / "k"))
    fine(res)
    assert "was killed" not in res.stdout + res.stderr       # resumed to the end: no longer a killed run


# ----------------------------------------------------------------------------- processes

def _workers_test(tmp_path: Path, sig: int) -> None:
    proc = _start(tmp_path, "--trials", "30", "--workers", "2", sleep=3.0)
    kids: list[int] = []
    try:
        wait_until(lambda: len(children(proc.pid)) >= 2)
        kids = children(proc.pid)
        time.sleep(2)
        os.kill(proc.pid, sig)                           # the main process alone
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.time() + 10
        while time.time() < deadline and any(alive(k) for k in kids):
            time.sleep(0.2)
        assert proc.poll() is not None, "the main process is still running"
        assert not [k for k in kids if alive(k)], "workers outlived their parent"
    finally:
        for p in [proc.pid, *kids]:                      # only the processes this test started
            if alive(p):
                os.kill(p, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_of_the_main_process_stops_its_workers(tmp_path: Path) -> None:
    _workers_test(tmp_path, signal.SIGKILL)


@pytest.mark.slow
def test_sigint_of_the_main_process_stops_its_workers(tmp_path: Path) -> None:
    _workers_test(tmp_path, signal.SIGINT)


# ----------------------------------------------------------------------------- options

OPTIONS = [
    (["--threads", "100000"], ("--threads",)), (["--seed", "-1"], ("--seed",)),
    (["--seed", str(10 ** 30)], ("--seed",)), (["--population", "1"], ("--population",)),
    (["--latency-batch", str(10 ** 9)], ("--latency-batch",)), (["--prune-margin", "nan"], ("--prune-margin",)),
    (["--workers", "100000"], ("--workers",)), (["--trials", "0"], ("--trials",)),
    (["--space", "nope"], ("unknown space",)), (["--objectives", "accuracy"], ("--objectives",)),
]


@pytest.mark.parametrize("args, words", OPTIONS, ids=[" ".join(a) for a, _ in OPTIONS])
def test_bad_option(args: list[str], words: tuple[str, ...], tmp_path: Path) -> None:
    # --describe: nothing runs even where the option is not validated yet
    refused(cmd("search.run", *args, "--describe", "--out", str(tmp_path)), *words)


@pytest.mark.parametrize("name", ["../x", "ABSOLUTE", "a/b", ".."])
def test_name_is_a_plain_name(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    name = str(tmp_path / "x") if name == "ABSOLUTE" else name     # outside --out, inside the test's folder
    refused(cmd("search.run", "--space", "groups", "--no-baselines", "--proxy", "synflow", "--trials", "1", *TINY,
                "--out", str(out), "--name", name, timeout=90), "--name")
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- data files (i14)

def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    head = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    head += b" " * (-(len(head) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savez(path, x=x, y=y)
    return path


def test_npz_declaring_a_huge_array_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _npy_header((2_000_000, 3, 32, 32)) + bytes(4096))
        z.writestr("y.npy", _npy_header((2_000_000,), "<i8") + bytes(4096))
    refused(cmd("search.run", "--describe", "--data", "npz", "--data-dir", str(path), timeout=60),
            "memory", "too large", "large", "declare")


def test_cifar_batch_declaring_a_huge_array_is_refused_fast(tmp_path: Path) -> None:
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    small = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    # the array's shape is pickled as BININT1 2, BININT2 3072, TUPLE2: declare 2,000,000 rows instead
    raw = pickle.dumps(small, protocol=2)
    shape = b"K\x02M" + (3072).to_bytes(2, "little") + b"\x86"
    assert shape in raw
    raw = raw.replace(shape, b"J" + (2_000_000).to_bytes(4, "little") + b"M" + (3072).to_bytes(2, "little") + b"\x86")
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (folder / name).write_bytes(raw)
    refused(cmd("search.run", "--data", "cifar10", "--data-dir", str(folder), "--trials", "1", "--no-baselines",
                "--out", str(tmp_path / "runs"), timeout=60),
            "memory", "large", "declares", "does not match")


@pytest.mark.parametrize("labels, words", [
    (np.r_[np.arange(39) % 10, 10 ** 9], ("label",)),
    (np.arange(40) * 1000, ("class",)),
])
def test_npz_labels_out_of_range(labels: np.ndarray, words: tuple[str, ...], tmp_path: Path) -> None:
    path = _npz(tmp_path / "d.npz", np.zeros((40, 1, 8, 8), np.float32), labels.astype(np.int64))
    refused(cmd("search.run", "--describe", "--data", "npz", "--data-dir", str(path), timeout=60), *words)


def test_plain_npy_gets_the_right_message(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((40, 1, 8, 8), np.float32))
    refused(cmd("search.run", "--describe", "--data", "npz", "--data-dir", str(path), timeout=60), ".npy")


# ----------------------------------------------------------------------------- architectures (i17)

def _arch_case(base: Path, tmp_path: Path, change) -> Path:
    arch = json.loads((base / "best" / "arch.json").read_text())
    change(arch)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    return path


def _wide(a: dict) -> None:
    a["layers"][0]["out_channels"] = 10 ** 9


def _deep(a: dict) -> None:
    a["layers"] = [dict(a["layers"][-1], stride=1, pool="none")] * 10_000


def _huge_input(a: dict) -> None:
    a["input_shape"] = [3, 100_000, 100_000]


def _huge_kernel(a: dict) -> None:
    for layer in a["layers"]:
        layer["kernel_size"] = 999


@pytest.mark.parametrize("change", [_wide, _deep, _huge_input, _huge_kernel], ids=lambda f: f.__name__[1:])
def test_oversized_architecture_is_refused_before_building(change, base: Path, tmp_path: Path) -> None:
    path = _arch_case(base, tmp_path, change)
    refused(cmd("search.train", str(path), "--epochs", "1", "--data-limit", "60", "--no-latency",
                "--out", str(tmp_path / "t"), timeout=60), "limit", "too large", "memory", "param", "kernel")


@pytest.mark.parametrize("shape", ["224x224x", "2x224x224", "1x0x5"])
def test_train_latency_shape_is_checked_before_training(shape: str, base: Path, tmp_path: Path) -> None:
    path = _arch_case(base, tmp_path, lambda a: None)
    refused(cmd("search.train", str(path), "--epochs", "1", "--data-limit", "60", "--latency-shape", shape,
                "--out", str(tmp_path / "t"), timeout=60), "--latency-shape")


# ----------------------------------------------------------------------------- inference mode (i16)

def test_hetconv_works_inside_inference_mode() -> None:
    code = ("import torch\nfrom spaces import make_op\nwith torch.inference_mode():\n"
            "    op = make_op('hetconv', 8, 8, 3, 1, P=2).eval()\n"
            "    print(tuple(op(torch.randn(1, 8, 6, 6)).shape))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True,
                         timeout=120, preexec_fn=_cap)
    fine(res, "(1, 8, 6, 6)")
