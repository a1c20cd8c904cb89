"""A throwaway single-node Ray cluster on loopback for tests (``ray start --head --block``).

The cluster runs in its own process group with its own temp folder and free ports, and is
stopped by signalling that group only -- ``ray stop`` would stop every Ray process on the
machine, including ones this test did not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from loopback import free_port


@dataclass
class RayCluster:
    address: str
    proc: subprocess.Popen
    temp_dir: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:  # `ray start --block` drains and stops its node on SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                pass
        try:  # anything of the group still alive (raylet, workers): kill it
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_cluster(env: dict[str, str], log: Path, num_cpus: int = 2, timeout: float = 120.0) -> RayCluster:
    """``ray start --head`` on 127.0.0.1 (no dashboard); returns once its GCS accepts connections."""
    ray_cli = Path(sys.executable).with_name("ray")
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="rayt", dir="/tmp")   # short: Ray's socket paths are length-limited
    ports = {f"--{name}": str(free_port()) for name in (
        "node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "runtime-env-agent-port", "metrics-export-port")}
    argv = [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
            f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={temp_dir}", *[f"{k}={v}" for k, v in ports.items()]]
    fh = log.open("w")
    proc = subprocess.Popen(argv, env={**env, "RAY_USAGE_STATS_ENABLED": "0"}, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)
    cluster = RayCluster(f"127.0.0.1:{port}", proc, temp_dir, log)
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()}")
        if _port_open(port) and "Ray runtime started" in log.read_text():
            return cluster
        time.sleep(0.5)
    cluster.stop()
    raise RuntimeError(f"ray start did not come up in {timeout} s:\n{log.read_text()}")
