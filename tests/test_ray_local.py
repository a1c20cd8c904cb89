"""A local Ray instance (``--backend ray`` without ``--address``) is reachable on loopback only,
and none of its processes outlives a killed driver (issue 15, processes).

Ray's own servers listen on ``*:port``; ``search.run`` runs them in a private network namespace
whose only interface is ``lo`` (``search.netns``). The test reads, from ``/proc``, the
listening TCP sockets that the run's processes hold, and the interfaces of the namespace they
are in, then SIGKILLs the driver and waits for every process of that namespace to go.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from polling import alive
from search_cli import TINY, popen

from search.netns import interfaces

pytestmark = pytest.mark.skipif(not Path("/proc/self/ns/net").exists(), reason="needs Linux /proc")
LISTEN = "0A"


def _netns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _in_namespace(ns: str) -> set[int]:
    """Every live process whose network namespace is ``ns``."""
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _netns(p.name) == ns
            and alive(int(p.name))}


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _address(hex_addr: str) -> str:
    """``/proc/net/tcp{,6}`` local address (little-endian hex words) as text."""
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def _loopback_or_any(text: str) -> bool:
    ip = ipaddress.ip_address(text)
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback or ip.is_unspecified


def _listening(pid: int) -> dict[str, str]:
    """The listening TCP sockets in ``pid``'s namespace: inode -> bound address."""
    found = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == LISTEN:
                found[cols[9]] = _address(cols[1].split(":")[0])
    return found


def _read_until(proc, word: str, timeout: float = 240) -> list[str]:
    lines: list[str] = []
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if word in line:
            return lines
    raise AssertionError(f"no {word!r} in the output:\n{''.join(lines)}")


def test_local_ray_listens_on_loopback_only_and_dies_with_its_driver(tmp_path: Path) -> None:
    proc = popen("--space", "groups", "--backend", "ray", "--trials", "60", "--no-baselines", *TINY,
                 "--out", str(tmp_path), "--name", "r", extra_env={"GROUPNAS_LATENCY_LOCK": str(tmp_path / "l")})
    ns = None
    try:
        out = _read_until(proc, "ray: joined")
        assert "loopback only" in out[-1], out[-1]
        _read_until(proc, "complete")                       # the trial workers run
        ns = _netns(proc.pid)
        assert ns is not None and ns != _netns("self"), "the driver should run in its own network namespace"
        assert interfaces(proc.pid) == ["lo"]
        pids = _in_namespace(ns)
        assert len(pids) >= 3, f"expected the driver, Ray's servers and a worker in the namespace, got {pids}"
        listening = _listening(proc.pid)
        held = {inode: listening[inode] for pid in pids for inode in _socket_inodes(pid) if inode in listening}
        assert len(held) >= 2, f"Ray's servers should listen in the namespace: {listening}"
        host = _listening(os.getpid())
        assert not set(held) & set(host), "a socket of the run listens in the host's namespace"
        # whatever address they bound (Ray uses 0.0.0.0), the only interface they can be reached on is lo
        assert all(_loopback_or_any(a) for a in held.values()), held
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert ns is not None
    end = time.time() + 15
    while time.time() < end and _in_namespace(ns):
        time.sleep(0.25)
    left = _in_namespace(ns)
    names = {p: Path(f"/proc/{p}/comm").read_text().strip() for p in left if alive(p)}
    assert not left, f"processes of the killed run still alive after 15 s: {names}"


@pytest.mark.parametrize("ray, isolated", [({"address": None}, True), ({"address": "127.0.0.1:6379"}, False),
                                           (None, True)])
def test_resume_isolates_only_runs_that_started_their_own_instance(tmp_path: Path, ray, isolated) -> None:
    """``--resume`` of a run made with ``--address`` goes back to that cluster, which a private
    namespace cannot reach: only a run with a local instance is re-executed into one."""
    import argparse
    import json

    from search.run import _local_ray_storage

    (tmp_path / "config.json").write_text(json.dumps({"backend": "ray", "storage": "study.journal", "ray": ray}))
    args = argparse.Namespace(address=None, resume=str(tmp_path), backend="optuna", storage=None, name=None,
                              out=str(tmp_path), space="igc")
    assert (_local_ray_storage(args) == "study.journal") is isolated
    args.address = "127.0.0.1:6379"  # an address given now: never isolated
    assert _local_ray_storage(args) is None
