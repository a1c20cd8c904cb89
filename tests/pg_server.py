"""A throwaway PostgreSQL server on 127.0.0.1 for tests (``initdb`` into a temp folder, ``pg_ctl``).

``missing()`` says why no server can be started here (no server binaries, no psycopg2), so a
test can skip with that reason. As root the server runs as the ``postgres`` user (PostgreSQL
refuses to run as root), in a temp folder that user owns; it listens on loopback only, on a
free port, with trust authentication, and is removed afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loopback import free_port

RUN_AS = "postgres"


def bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: ``$PG_BIN``, then PATH, then Debian's layout."""
    candidates = [os.environ.get("PG_BIN", "")]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def missing() -> str | None:
    """Why no server can run here, or None."""
    if bin_dir() is None:
        return ("PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql (apt-get install "
                "postgresql) or set PG_BIN")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary): Optuna's RDB storage needs it"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root and there is no {RUN_AS!r} user to run the server as"
    return None


@dataclass
class PgServer:
    url: str
    data: Path
    root: Path
    bin: Path

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        return _as_owner([str(self.bin / argv[0]), *argv[1:]])

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _as_owner(argv: list[str]) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", RUN_AS, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def start() -> PgServer:
    """initdb + pg_ctl start on a free loopback port; ``url`` is an SQLAlchemy/Optuna storage URL."""
    why = missing()
    if why:
        raise RuntimeError(why)
    bindir = bin_dir()
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="pgtest", dir="/tmp"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        os.chown(root, user.pw_uid, user.pw_gid)
    data, port = root / "data", free_port()
    res = _as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                     "--no-sync"])
    if res.returncode:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{res.stdout}\n{res.stderr}")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=50"
    res = _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "server.log"), "-w",
                     "-t", "60", "start"])
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; name the psycopg2 driver explicitly
    server = PgServer(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres", data, root, bindir)
    if res.returncode:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        server.stop()
        raise RuntimeError(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n{log}")
    return server
