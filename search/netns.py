"""A private network namespace with loopback only, for a local Ray instance.

Ray 2.60's servers (GCS, raylet, core workers) listen on ``*:port`` whatever node address they
are given, and its runtime-env agent on the machine's external address. So ``search.run
--backend ray`` without ``--address`` re-executes itself (same pid, same arguments) inside a
new network namespace (Linux ``unshare(CLONE_NEWNET)``, with ``CLONE_NEWUSER`` when not root)
whose only interface is ``lo``: every socket Ray opens is then reachable from this machine's
loopback of that namespace only, and nothing outside the run can connect to it. Files, the
object store in ``/dev/shm``, pids and users stay those of the host.

A reaper process forked into the namespace before the run starts waits for the driver to exit
(however it exits, SIGKILL included) and then stops every process left in the namespace: Ray's
agents otherwise outlive a killed driver by minutes. Everything in the namespace belongs to
this run, so nothing else is touched.

A server on the host's own loopback (a PostgreSQL storage URL) is not reachable from inside, so
such runs are not isolated, and say so. Where the kernel refuses namespaces the run goes on
with a warning line.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import runpy
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["only_loopback", "reexec_isolated", "enter_private_netns", "state", "set_state"]

_STATE: list[str] = []          # in the re-executed process: "private", or why it is not isolated
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP, IFF_RUNNING = 0x1, 0x40


def interfaces(pid: int | str = "self") -> list[str]:
    """The network interfaces of ``pid``'s namespace (``/proc/<pid>/net/dev``)."""
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


def only_loopback(pid: int | str = "self") -> bool:
    """Whether ``pid``'s network namespace has no interface but ``lo``."""
    try:
        return interfaces(pid) == ["lo"]
    except OSError:
        return False


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _loopback_up() -> None:
    """``ip link set lo up`` through the ioctl it uses (a new namespace starts with ``lo`` down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP | IFF_RUNNING))


def enter_private_netns() -> None:
    """Move this (single-threaded) process into a new network namespace with ``lo`` up; ``OSError``
    when the kernel refuses. Not root: a user namespace that maps the caller's uid and gid to
    themselves, so files keep their owner."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) != 0 and (uid != 0 or libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0):
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    if Path("/proc/self/uid_map").read_text().strip() == "":
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _loopback_up()


def _namespace_pids() -> set[int]:
    """The other live processes of this process's network namespace."""
    me, mine = os.getpid(), os.readlink("/proc/self/ns/net")
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == mine:
                    pids.add(int(entry))
            except OSError:
                pass
    return pids


def _wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while os.getppid() == pid:
            time.sleep(0.5)
        return
    select.select([fd], [], [])
    os.close(fd)


def _reap_after(driver: int) -> None:
    """Wait for ``driver`` to exit, then SIGTERM and (2 s later) SIGKILL the namespace's processes."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)          # a terminal's Ctrl-C is the driver's to handle
    _wait_for_exit(driver)
    for sig, pause in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 0.5), (signal.SIGKILL, 0.5)):
        for pid in _namespace_pids():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        time.sleep(pause)
        if not _namespace_pids():
            break
    os._exit(0)


def start_reaper() -> None:
    """Fork the reaper (call while single-threaded, after entering the namespace)."""
    driver = os.getpid()
    if os.fork() == 0:
        try:
            _reap_after(driver)
        finally:
            os._exit(0)


def state() -> str | None:
    """``"private"``, why the namespace could not be entered, or None (not re-executed)."""
    return _STATE[-1] if _STATE else None


def set_state(text: str) -> None:
    _STATE.append(text)


def reexec_isolated(module: str, argv: Sequence[str]) -> None:
    """Replace this process by ``python -m search.netns MODULE ARGV...``, which enters a private
    namespace and then runs ``MODULE`` as ``__main__``. Does nothing when already re-executed."""
    if state() is not None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "search.netns", module, *argv])


def _main(args: list[str]) -> None:
    from search import netns  # this file runs as __main__: record the state in the module proper

    module, rest = args[0], args[1:]
    try:
        enter_private_netns()
        start_reaper()
        netns.set_state("private")
    except OSError as err:
        netns.set_state(f"not isolated ({err.strerror or err})")
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
