"""``confirm_run``: re-train the claimed dominations' nets for longer before they are stated (issue 14).

See ``search.confirm`` for why, the claim rule and the file. Cost: one training of
``confirm_epochs`` epochs (one-cycle SGD, ``evaluators.train_proxy.train``, the search's lr,
batch and seed) per front member that dominates a baseline on the search's values and per
baseline so dominated; nets already in ``confirm.json`` under the same epochs and training
settings (a resumed run) are not trained again. The nets are trained side by side in one
spawned process per core (one thread each; two 1-thread processes train ~1.3x as many nets per
second as one 2-thread process on this project's 2-core machine), or in this process with
``workers=1``. With ``settings.confirm_timeout`` a net is started only while the round's time so
far plus its slowest net so far fits in it (``may_start``), so the round ends near that limit
however fast the machine is at the time; the nets left out are listed under ``not_started``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .confirm import CONFIRM_FILE, load_confirm, training_key
from .hooks import NO_HOOKS, Hooks

__all__ = ["confirm_run", "claimed_numbers", "round_workers", "may_start"]


def claimed_numbers(data: Any, cap: int | None = None) -> list[int]:
    """The trial numbers the round trains, in order: front members with a claim on the search's
    values (after the end-of-run re-timing), the members with the most claims first (then the
    cheaper on the run's cost objectives, in their order: latency, params, MACs), each followed
    by the baselines it claims to beat; at most ``cap`` nets (None: all)."""
    from .rundata import search_claims

    by_name = {b["baseline"]: b["number"] for b in data.baselines}
    claims = [(r, search_claims(data, r)) for r in data.front]
    costs = [o for o in data.objectives if o != "accuracy"]
    claims.sort(key=lambda rc: (-len(rc[1]), *(rc[0]["values"].get(o, 0.0) for o in costs), rc[0]["number"]))
    out: list[int] = []
    for r, beaten in claims:
        for n in ([int(r["number"])] + [int(by_name[b]) for b in beaten]) if beaten else []:
            if n not in out:
                out.append(n)
    return out if cap is None else out[:cap]


def _write(run_dir: Path, doc: Mapping[str, Any]) -> None:
    from .safe_files import atomic_write_text

    atomic_write_text(run_dir / CONFIRM_FILE, json.dumps(doc, indent=2) + "\n")


def round_workers(settings: Any, nets: int, cores: int | None = None) -> tuple[int, int]:
    """(processes, threads per process) for a round of ``nets`` trainings: one thread per net
    (``--train-threads`` when given), so that every net of a round, resumed or not, trains
    alike; as many processes as the cores hold, never more than nets."""
    cores = max(1, int(cores if cores is not None else (os.cpu_count() or 1)))
    threads = int(settings.train_threads) if settings.train_threads is not None else 1
    return max(1, min(nets, cores // max(1, threads))), threads


def _train_one(task: tuple[int, Any, dict[str, Any], int, int]) -> tuple[int, dict[str, Any]]:
    """Train one net of the round: (trial number, its entry in confirm.json). Any error of the
    net is recorded as its entry (the claims on it are then not stated), in the round's own
    process and in a spawned one alike; Ctrl-C is not an error and stops the round."""
    number, arch_json, settings_dict, epochs, threads = task
    start = time.perf_counter()
    try:
        entry = _accuracy_entry(arch_json, settings_dict, epochs, threads)
    except Exception as err:  # noqa: BLE001 - recorded; the claims on this net are not stated
        entry = {"error": f"{type(err).__name__}: {err}"}
    entry["seconds"] = round(time.perf_counter() - start, 3)
    return number, entry


def _accuracy_entry(arch_json: Any, settings_dict: dict[str, Any], epochs: int, threads: int) -> dict[str, Any]:
    """Train the net for ``epochs`` and score it: its accuracy, 0 with the reason if it diverged."""
    from evaluators.train_proxy import TrainingDiverged, train
    from spaces.arch import Arch
    from spaces.build import build_model

    from .objective import get_data
    from .settings import Settings

    settings = Settings.from_dict(settings_dict)
    model = build_model(Arch.from_json(arch_json), seed=settings.seed)
    try:
        return {"accuracy": float(train(model, get_data(settings), epochs=epochs, lr=settings.lr,
                                        batch_size=settings.batch_size, seed=settings.seed, threads=threads,
                                        score_every_epoch=False).accuracy)}
    except TrainingDiverged as err:
        return {"accuracy": 0.0, "diverged": str(err)}


def _child_loop(tasks: Any, results: Any, parent: int, hooks: Hooks) -> None:
    """A spawned round process: die with the parent, leave Ctrl-C to it (it stops the round), run
    the caller's ``worker_init`` hook, then train tasks until the ``None`` that ends the queue.
    An error of one net is its entry (``_train_one``), and the next net goes on."""
    from .backends.optuna_workers import die_with_parent

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    hooks.worker_started()
    while (task := tasks.get()) is not None:
        results.put(_train_one(task))


def may_start(elapsed: float, slowest: float, limit: float | None) -> bool:
    """Whether the round starts another net ``elapsed`` seconds in, its slowest net so far having
    taken ``slowest`` seconds (0 before any finished): always without a ``limit``, else only
    while that net would end within it if it took as long as the slowest."""
    return limit is None or elapsed + slowest <= limit


class _Pace:
    """The round's clock: its start, its slowest net so far, and ``may_start`` over the two."""

    def __init__(self, limit: float | None) -> None:
        self.limit, self.start, self.slowest = limit, time.perf_counter(), 0.0

    def finished(self, entry: Mapping[str, Any]) -> None:
        self.slowest = max(self.slowest, float(entry.get("seconds", 0.0)))

    def go_on(self) -> bool:
        return may_start(time.perf_counter() - self.start, self.slowest, self.limit)


def _trained(tasks: Sequence[tuple[int, Any, dict[str, Any], int, int]], processes: int,
             hooks: Hooks, limit: float | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """The tasks' results as they finish, handed out in claim order while ``may_start`` allows
    (the first net of each process always starts; in claim order on one process too). The
    processes are killed when the caller stops early (Ctrl-C, an error); one that dies raises
    ``RuntimeError`` (no process is started again in its place)."""
    pace = _Pace(limit)
    if processes <= 1:
        for i, task in enumerate(tasks):
            if i and not pace.go_on():
                return
            number, entry = _train_one(task)
            pace.finished(entry)
            yield number, entry
        return
    import multiprocessing as mp
    import queue

    ctx = mp.get_context("spawn")
    todo, done = ctx.Queue(), ctx.Queue()
    waiting = iter(tasks)
    running = min(processes, len(tasks))
    for first in itertools.islice(waiting, running):
        todo.put(first)
    procs = [ctx.Process(target=_child_loop, args=(todo, done, os.getpid(), hooks), daemon=True)
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        while running:
            try:
                number, entry = done.get(timeout=1.0)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"confirmation round: a training process exited with code {dead[0]} "
                                       "(see its traceback above)") from None
                continue
            running -= 1
            pace.finished(entry)
            if pace.go_on() and (more := next(waiting, None)) is not None:
                todo.put(more)
                running += 1
            yield number, entry
        for _ in procs:
            todo.put(None)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join()


def confirm_run(run_dir: Path, study: Any, config: Mapping[str, Any],
                printer: Callable[[str], None] = print, *, workers: int | None = None,
                hooks: Hooks = NO_HOOKS) -> dict[str, Any] | None:
    """Re-train the nets of the run's claims for ``settings.confirm_epochs``; write and return
    ``confirm.json`` (after each net, so a killed round keeps what it finished). None, and no
    file, when the round is off (``confirm_epochs`` 0/None, a zero-cost proxy, no accuracy
    objective). ``workers``: processes (default ``round_workers``); 1 trains in this process."""
    from .rundata import collect
    from .settings import Settings

    settings = Settings.from_dict(config.get("settings") or {})
    epochs = int(settings.confirm_epochs or 0)
    if epochs <= 0 or settings.proxy != "train" or "accuracy" not in settings.objectives:
        return None
    data = collect(study, config, run_dir=run_dir)
    wanted = claimed_numbers(data)
    numbers = wanted if settings.confirm_nets is None else wanted[:settings.confirm_nets]
    key = training_key(settings.to_dict())
    old = load_confirm(run_dir)
    members: dict[str, Any] = {}
    threads = round_workers(settings, len(numbers))[1]
    if old is not None and old["epochs"] == epochs and old.get("key") == key and old.get("threads") == threads:
        members = {n: m for n, m in old["members"].items() if isinstance(m, dict) and "accuracy" in m}
    todo = [n for n in numbers if str(n) not in members]
    processes = round_workers(settings, len(todo))[0] if workers is None else max(1, int(workers))
    doc: dict[str, Any] = {"epochs": epochs, "key": key, "split": "val (+ the extra val examples)",
                           "note": "front members with a claim and the baselines they claim to beat, "
                                   "re-trained from the same initialisation (search.confirm)",
                           "processes": processes, "threads": threads, "members": members}
    limit = settings.confirm_timeout
    if limit is not None:
        doc["timeout"] = limit
    rows = {r["number"]: r for r in data.rows}
    if not numbers:
        printer("confirmation round: the front dominates no baseline, nothing to re-train")
    elif todo:
        capped = f"; {len(wanted) - len(numbers)} more left out by --confirm-nets {settings.confirm_nets}" \
            if len(wanted) > len(numbers) else ""
        side = f", {processes} side by side, {threads} thread(s) each" if processes > 1 else ""
        printer(f"confirmation round: re-training {len(todo)} net(s) for {epochs} epochs{side} "
                f"(the front members that dominate a baseline and those baselines{capped}) ...")
    _write(run_dir, doc)
    tasks = [(n, rows[n]["arch"], settings.to_dict(), epochs, threads) for n in todo]
    for i, (n, entry) in enumerate(_trained(tasks, processes, hooks, limit), 1):
        members[str(n)] = entry
        _write(run_dir, doc)
        row = rows[n]
        name = f" [{row['baseline']}]" if row["baseline"] else ""
        search_acc = row["values"].get("accuracy")
        got = f"{entry['accuracy']:.4f}" if "accuracy" in entry else entry["error"]
        printer(f"  {i}/{len(todo)} trial {n}{name}: search accuracy {search_acc:.4f} -> {epochs} epochs {got} "
                f"({entry['seconds']:.0f} s)")
    left = [n for n in todo if str(n) not in members]
    if left and limit is not None:
        doc["not_started"] = left
        _write(run_dir, doc)
        printer(f"confirmation round: {len(left)} net(s) not started within --confirm-timeout {limit:g} s "
                "(trials " + ", ".join(map(str, left)) + "): their claims are unchecked, not stated "
                "(--resume re-trains them)")
    return doc
