"""The confirmation round (search.confirm, search.confirm_round): which nets it re-trains, that
their figures are those of a direct longer training, that pareto.json states only the claims it
upholds, that a resumed or interrupted round loses nothing, and the option's checks.

Objectives accuracy,params: both are deterministic on one thread, so the run's claims are the
same every time (latency would make them depend on the machine's noise).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from search_cli import ROOT, lock_env, run

sys.path.insert(0, str(ROOT / "bench"))

ARGS = ["--space", "igc", "--trials", "8", "--data", "digits", "--epochs", "1", "--data-limit", "300",
        "--latency-seconds", "0.05", "--seed", "0", "--objectives", "accuracy,params"]
EPOCHS = 2


@pytest.fixture(scope="module")
def confirmed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("confirm")
    res = run("search.run", *ARGS, "--confirm-epochs", str(EPOCHS), "--confirm-nets", "1000", "--out", str(tmp),
              "--name", "c",
              extra_env=lock_env(tmp))
    assert res.returncode == 0, res.stdout + res.stderr
    return tmp / "c"


def _dominates(a: dict, b: dict) -> bool:
    """accuracy up, params down, from the values pareto.json prints (independent of search.rundata)."""
    ge = a["accuracy"] >= b["accuracy"] and a["params"] <= b["params"]
    return ge and (a["accuracy"], a["params"]) != (b["accuracy"], b["params"])


def _expected(doc: dict, confirmed: dict[str, float]) -> dict[int, tuple[set[str], set[str]]]:
    """trial -> (claims stated, claims withdrawn) by the rule: dominates on the values, and its
    confirmed accuracy is at least the baseline's."""
    base = {b["name"]: b for b in doc["baselines"]}
    out = {}
    for m in doc["members"]:
        beaten = {n for n, b in base.items() if b["trial"] != m["trial"] and _dominates(m["values"], b["values"])}
        kept = {n for n in beaten if confirmed[str(m["trial"])] >= confirmed[str(base[n]["trial"])]}
        out[m["trial"]] = (kept, beaten - kept)
    return out


def test_round_trains_exactly_the_claims_nets_for_longer(confirmed_run: Path) -> None:
    from evaluators.data import load_data
    from evaluators.train_proxy import train
    from search.runfolder import load_run
    from search.settings import Settings
    from spaces import build_model
    from spaces.arch import Arch

    doc = json.loads((confirmed_run / "pareto.json").read_text())
    conf = json.loads((confirmed_run / "confirm.json").read_text())
    assert conf["epochs"] == EPOCHS and doc["confirm"]["epochs"] == EPOCHS
    # trained side by side in spawned processes, one thread each (search.confirm_round.round_workers)
    assert conf["processes"] == min(2, len(conf["members"])) and conf["threads"] == 1
    base = {b["name"]: b for b in doc["baselines"]}
    claimers = {m["trial"] for m in doc["members"]
                if any(b["trial"] != m["trial"] and _dominates(m["values"], b["values"]) for b in base.values())}
    beaten = {b["trial"] for m in doc["members"] for b in base.values()
              if b["trial"] != m["trial"] and _dominates(m["values"], b["values"])}
    assert claimers, "the fixture run must make a claim for this test to mean anything"
    assert {int(n) for n in conf["members"]} == claimers | beaten
    # each figure is that of a direct training of the trial's arch for EPOCHS epochs, same split and seed
    config = json.loads((confirmed_run / "config.json").read_text())
    s = Settings.from_dict(config["settings"])
    data = load_data(s.data, s.data_dir, seed=s.seed, limit=s.data_limit, val_examples=s.val_examples)
    _, study, _ = load_run(confirmed_run)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for n in sorted(claimers)[:1] + sorted(beaten)[:1]:
        arch = Arch.from_json(trials[n].user_attrs["arch"])
        want = train(build_model(arch, seed=s.seed), data, epochs=EPOCHS, lr=s.lr, batch_size=s.batch_size,
                     seed=s.seed, threads=conf["threads"]).accuracy
        assert conf["members"][str(n)]["accuracy"] == pytest.approx(want, abs=1e-12), n
        assert conf["members"][str(n)]["accuracy"] != pytest.approx(trials[n].values[0], abs=1e-9)  # not the search's


def test_pareto_states_only_upheld_claims_and_withdraws_the_rest(confirmed_run: Path, tmp_path: Path) -> None:
    doc = json.loads((confirmed_run / "pareto.json").read_text())
    conf = json.loads((confirmed_run / "confirm.json").read_text())
    accs = {n: m["accuracy"] for n, m in conf["members"].items()}
    for m in doc["members"]:
        kept, gone = _expected(doc, accs)[m["trial"]]
        assert set(m["dominates_baselines"]) == kept and set(m["withdrawn_claims"]) == gone
        assert m["confirmed_accuracy"] == accs.get(str(m["trial"]))
    # lower one claiming member's confirmed accuracy below every baseline's: its claims are withdrawn
    run_dir = tmp_path / "c"
    shutil.copytree(confirmed_run, run_dir)
    member = next(m for m in doc["members"] if m["dominates_baselines"])
    conf["members"][str(member["trial"])]["accuracy"] = min(accs.values()) - 0.01
    (run_dir / "confirm.json").write_text(json.dumps(conf))
    res = run("search.report", str(run_dir))
    assert res.returncode == 0, res.stderr
    after = json.loads((run_dir / "pareto.json").read_text())
    m2 = next(m for m in after["members"] if m["trial"] == member["trial"])
    assert m2["dominates_baselines"] == [] and set(m2["withdrawn_claims"]) == set(member["dominates_baselines"])
    assert "withdrawn (trial: baselines)" in res.stdout and f"{member['trial']}: " in res.stdout
    # a baseline left out of the round (as --confirm-nets does): its claims are unchecked, not stated
    victim = next(b for m in doc["members"] for b in m["dominates_baselines"] if m["trial"] != member["trial"]) \
        if any(m["dominates_baselines"] for m in doc["members"] if m["trial"] != member["trial"]) else None
    if victim is not None:
        gone = json.loads((run_dir / "confirm.json").read_text())
        del gone["members"][str(next(b["trial"] for b in doc["baselines"] if b["name"] == victim))]
        (run_dir / "confirm.json").write_text(json.dumps(gone))
        assert run("search.report", str(run_dir)).returncode == 0
        later = json.loads((run_dir / "pareto.json").read_text())
        for m in later["members"]:
            assert victim not in m["dominates_baselines"] and victim not in m["withdrawn_claims"]
        assert any(victim in m["unchecked_claims"] for m in later["members"])
        (run_dir / "confirm.json").write_text(json.dumps(conf))
        assert run("search.report", str(run_dir)).returncode == 0
    # bench/front_transfer.py reads the same withdrawals
    import front_transfer

    from search.runfolder import load_run

    _, study, config = load_run(run_dir)
    epochs, dropped = front_transfer.withdrawn(run_dir, study, config)
    assert epochs == EPOCHS
    want = {(m["trial"], b) for m in after["members"] for b in m["withdrawn_claims"]}
    assert set(dropped) == want and {(member["trial"], b) for b in member["dominates_baselines"]} <= want


def test_resumed_round_reuses_finished_nets_and_interrupted_one_keeps_them(confirmed_run: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import evaluators.train_proxy as tp
    from search.confirm_round import confirm_run
    from search.runfolder import load_run

    run_dir = tmp_path / "c"
    shutil.copytree(confirmed_run, run_dir)
    before = json.loads((run_dir / "confirm.json").read_text())["members"]
    _, study, config = load_run(run_dir)
    calls: list[int] = []
    real = tp.train

    def counting(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(tp, "train", counting)
    confirm_run(run_dir, study, config, printer=lambda s: None, workers=1)
    assert calls == [] and json.loads((run_dir / "confirm.json").read_text())["members"] == before

    # a round killed at its second net keeps its first; the next round trains only what is missing
    (run_dir / "confirm.json").unlink()

    def killed(*a, **k):  # type: ignore[no-untyped-def]
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(tp, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        confirm_run(run_dir, study, config, printer=lambda s: None, workers=1)
    kept = json.loads((run_dir / "confirm.json").read_text())["members"]
    from search.confirm_round import claimed_numbers
    from search.rundata import collect

    first = str(claimed_numbers(collect(study, config, run_dir=run_dir))[0])   # one process: claim order
    assert list(kept) == [first] and kept[first]["accuracy"] == before[first]["accuracy"]
    calls.clear()
    monkeypatch.setattr(tp, "train", counting)
    confirm_run(run_dir, study, config, printer=lambda s: None, workers=1)
    after = json.loads((run_dir / "confirm.json").read_text())["members"]
    assert len(calls) == len(before) - 1
    assert {n: m["accuracy"] for n, m in after.items()} == {n: m["accuracy"] for n, m in before.items()}


def test_round_stopped_mid_pool_keeps_what_finished_and_leaves_no_process(confirmed_run: Path,
                                                                          tmp_path: Path) -> None:
    import multiprocessing as mp

    from search.confirm_round import confirm_run
    from search.runfolder import load_run

    run_dir = tmp_path / "c"
    shutil.copytree(confirmed_run, run_dir)
    before = json.loads((run_dir / "confirm.json").read_text())["members"]
    (run_dir / "confirm.json").unlink()
    _, study, config = load_run(run_dir)
    lines: list[str] = []

    def interrupt_after_first(line: str) -> None:
        lines.append(line)
        if "1/" in line:                       # Ctrl-C as the first net of two side by side finishes
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        confirm_run(run_dir, study, config, printer=interrupt_after_first, workers=2)
    assert mp.active_children() == []          # the pool was terminated, not left training
    kept = json.loads((run_dir / "confirm.json").read_text())["members"]
    assert len(kept) == 1 and all(kept[n]["accuracy"] == before[n]["accuracy"] for n in kept)


def _die_at_start() -> None:
    """worker_init hook of the next test: the round process dies before it trains anything."""
    import os

    os._exit(3)


def test_round_process_that_dies_is_one_error_and_not_started_again(confirmed_run: Path, tmp_path: Path) -> None:
    import multiprocessing as mp

    from search.confirm_round import confirm_run
    from search.hooks import Hooks
    from search.runfolder import load_run

    run_dir = tmp_path / "c"
    shutil.copytree(confirmed_run, run_dir)
    (run_dir / "confirm.json").unlink()
    _, study, config = load_run(run_dir)
    with pytest.raises(RuntimeError, match="exited with code 3"):
        confirm_run(run_dir, study, config, printer=lambda s: None, workers=2, hooks=Hooks(worker_init=_die_at_start))
    assert mp.active_children() == []
    assert json.loads((run_dir / "confirm.json").read_text())["members"] == {}


def test_round_workers_one_thread_per_net_and_no_more_processes_than_cores_or_nets() -> None:
    from search.confirm_round import round_workers
    from search.settings import Settings

    s = Settings()
    assert round_workers(s, 6, cores=2) == (2, 1)
    assert round_workers(s, 1, cores=2) == (1, 1)
    assert round_workers(s, 6, cores=16) == (6, 1)
    assert round_workers(s.with_train_threads(2), 6, cores=2) == (1, 2)
    assert round_workers(s.with_train_threads(4), 6, cores=16) == (4, 4)


def test_default_is_twice_the_epochs_with_training_and_off_for_zero_cost() -> None:
    from search.options import build_parser, settings_from_args

    p = build_parser()
    assert settings_from_args(p.parse_args(["--epochs", "4"])).confirm_epochs == 8
    assert settings_from_args(p.parse_args(["--proxy", "synflow"])).confirm_epochs == 0
    assert settings_from_args(p.parse_args(["--confirm-epochs", "0"])).confirm_epochs == 0


@pytest.mark.parametrize("option,bad", [("--confirm-epochs", "-1"), ("--confirm-epochs", "100000"),
                                        ("--confirm-timeout", "0"), ("--confirm-timeout", "nan")])
def test_bad_confirm_option_is_one_error_line(option: str, bad: str, tmp_path: Path) -> None:
    res = run("search.run", option, bad, "--out", str(tmp_path))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"error: {option}" in lines[0]
    assert not list(tmp_path.iterdir())


def test_capped_round_takes_the_members_with_most_claims_first_and_their_baselines() -> None:
    from search.confirm_round import claimed_numbers
    from search.rundata import RunData, dominated_baselines, unchecked_claims

    def row(n: int, acc: float, lat: float, baseline: str | None = None) -> dict:
        return {"number": n, "values": {"accuracy": acc, "latency": lat}, "baseline": baseline}

    base = [row(0, 0.80, 10.0, "b0"), row(1, 0.70, 8.0, "b1"), row(2, 0.60, 6.0, "b2"), row(3, 0.50, 1.0, "b3")]
    a, c = row(10, 0.75, 5.0), row(12, 0.95, 7.0)   # a beats b1, b2; c beats b0, b1 (a is faster)
    e = row(13, 0.82, 5.5)                            # e beats b0, b1, b2: the most claims
    data = RunData(["accuracy", "latency"], base + [a, c, e], front=[base[3], a, e, c], baselines=base)
    assert claimed_numbers(data) == [13, 0, 1, 2, 10, 12]
    assert claimed_numbers(data, 3) == [13, 0, 1]
    assert claimed_numbers(data, 5) == [13, 0, 1, 2, 10]    # a's baselines are in already
    data.confirmed = {13: 0.9, 0: 0.8, 1: 0.7}             # a capped round of 3 nets
    assert dominated_baselines(data, e) == ["b0", "b1"] and unchecked_claims(data, e) == ["b2"]
    assert dominated_baselines(data, a) == [] and unchecked_claims(data, a) == ["b1", "b2"]


def test_round_order_breaks_equal_claim_counts_on_the_runs_cost_objective() -> None:
    from search.confirm_round import claimed_numbers
    from search.rundata import RunData

    def row(n: int, acc: float, params: float, baseline: str | None = None) -> dict:
        return {"number": n, "values": {"accuracy": acc, "params": params}, "baseline": baseline}

    b0, b1 = row(0, 0.70, 900.0, "b0"), row(1, 0.60, 950.0, "b1")
    small, big = row(20, 0.75, 300.0), row(10, 0.90, 800.0)    # each beats b0 and b1; small has fewer params
    data = RunData(["accuracy", "params"], [b0, b1, small, big], front=[small, big], baselines=[b0, b1])
    assert claimed_numbers(data) == [20, 0, 1, 10]          # not trial-number order (10 first)
    data = RunData(["accuracy", "params"], [b0, b1, small, big], front=[big, small], baselines=[b0, b1])
    assert claimed_numbers(data) == [20, 0, 1, 10]          # nor front order


def test_claim_rule_without_and_with_a_round() -> None:
    from search.confirm import claim_state

    assert claim_state(None, 1, 2) == "stated"                # no round: the search's claim stands
    assert claim_state({1: 0.8, 2: 0.8}, 1, 2) == "stated"    # a tie upholds
    assert claim_state({1: 0.79, 2: 0.8}, 1, 2) == "withdrawn"
    assert claim_state({1: 0.9}, 1, 2) == "unchecked"         # the baseline was not re-trained: not stated
    assert claim_state({2: 0.7}, 1, 2) == "unchecked"


def test_may_start_only_while_the_slowest_net_so_far_would_end_in_time() -> None:
    from search.confirm_round import may_start

    assert may_start(1e9, 1e9, None)                   # no limit
    assert may_start(0.0, 0.0, 10.0) and may_start(6.0, 4.0, 10.0)
    assert not may_start(6.5, 4.0, 10.0) and not may_start(11.0, 0.0, 10.0)


@pytest.mark.parametrize("workers", [1, 2])
def test_timed_round_leaves_the_nets_it_cannot_end_in_time_unchecked(confirmed_run: Path, tmp_path: Path,
                                                                      workers: int) -> None:
    """A limit no net fits: only each process's first net starts; the rest are listed as not
    started, and their claims become unchecked in pareto.json (none stated on them)."""
    from search.confirm_round import claimed_numbers, confirm_run
    from search.rundata import collect
    from search.runfolder import load_run, write_outputs

    run_dir = tmp_path / "c"
    shutil.copytree(confirmed_run, run_dir)
    before = json.loads((run_dir / "confirm.json").read_text())["members"]
    (run_dir / "confirm.json").unlink()
    _, study, config = load_run(run_dir)
    config["settings"]["confirm_timeout"] = 1e-3
    order = claimed_numbers(collect(study, config, run_dir=run_dir))
    assert len(order) > workers                        # the fixture's round has nets to leave out
    lines: list[str] = []
    doc = confirm_run(run_dir, study, config, printer=lines.append, workers=workers)
    assert doc is not None
    kept = json.loads((run_dir / "confirm.json").read_text())
    assert sorted(map(int, kept["members"])) == sorted(order[:workers])    # handed out in claim order
    assert kept["not_started"] == order[workers:] and kept["timeout"] == 1e-3
    assert all(kept["members"][n]["accuracy"] == before[n]["accuracy"] for n in kept["members"])
    assert any("not started within --confirm-timeout" in ln for ln in lines)
    pareto = write_outputs(run_dir, study, config)
    trained = set(map(int, kept["members"]))
    base = {b["baseline"]: b["number"] for b in pareto.baselines}
    from search.rundata import dominated_baselines, unchecked_claims

    for r in pareto.front:
        for b in dominated_baselines(pareto, r):
            assert {r["number"], base[b]} <= trained       # a claim is stated only on two trained nets
        for b in unchecked_claims(pareto, r):
            assert not {r["number"], base[b]} <= trained
    assert any(unchecked_claims(pareto, r) for r in pareto.front)     # every net of the order has a claim


def test_default_budget_caps_the_search_and_the_round_and_a_set_budget_does_not() -> None:
    import search.options as opts

    p = opts.build_parser()
    args = p.parse_args([])
    assert opts.search_timeout(args) == opts.DEFAULT_TIMEOUT
    assert opts.settings_from_args(args).confirm_timeout == opts.DEFAULT_CONFIRM_TIMEOUT
    for given in (["--trials", "50"], ["--timeout", "900"]):
        args = p.parse_args(given)
        assert opts.settings_from_args(args).confirm_timeout is None
        assert opts.search_timeout(args) == (900.0 if "--timeout" in given else None)
    args = p.parse_args(["--trials", "50", "--confirm-timeout", "60"])
    assert opts.settings_from_args(args).confirm_timeout == 60.0


def test_any_error_of_one_net_is_its_entry_in_the_rounds_own_process_and_ctrl_c_is_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One process (the path without spawned workers): a net whose training raises any error
    (not only RuntimeError / ValueError) becomes an error entry, with its seconds, and the next
    net is still trained; Ctrl-C is not swallowed."""
    import search.confirm_round as round_mod
    from search.hooks import NO_HOOKS

    def fake(arch_json: object, settings: object, epochs: int, threads: int) -> dict:
        if arch_json == "bad":
            raise TypeError("boom")
        if arch_json == "stop":
            raise KeyboardInterrupt
        return {"accuracy": 0.5}

    monkeypatch.setattr(round_mod, "_accuracy_entry", fake)
    tasks = [(1, "ok", {}, 1, 1), (2, "bad", {}, 1, 1), (3, "ok", {}, 1, 1)]
    got = dict(round_mod._trained(tasks, 1, NO_HOOKS))
    assert got[1]["accuracy"] == got[3]["accuracy"] == 0.5
    assert got[2]["error"] == "TypeError: boom" and "accuracy" not in got[2]
    assert all("seconds" in e for e in got.values())
    with pytest.raises(KeyboardInterrupt):
        list(round_mod._trained([(4, "stop", {}, 1, 1)], 1, NO_HOOKS))
