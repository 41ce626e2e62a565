"""A real Prometheus server (Debian's `prometheus` package) for the tests and the demo: it scrapes the simulated
data plane's metrics (localcluster/simulator/metrics.py, each cluster folder's metrics.url) and answers PromQL on
loopback. Started with a config of its own in a folder of its own, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localcluster.cluster import free_port


class PrometheusMissing(RuntimeError):
    pass


@dataclass
class Prometheus:
    pid: int
    url: str
    folder: Path

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)


def binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if not found:
        raise PrometheusMissing("no prometheus binary: install Debian's package (apt-get install prometheus); "
                                ".ci/run does")
    return found


def config(targets: list[str], interval: str = "1s") -> str:
    hosts = ", ".join(f"'{t.split('://', 1)[-1].rstrip('/')}'" for t in targets)
    return (f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
            f"scrape_configs:\n  - job_name: knfleet-simulator\n    static_configs:\n      - targets: [{hosts}]\n")


def start(folder: Path, targets: list[str], interval: str = "1s", timeout: float = 60) -> Prometheus:
    """Prometheus scraping `targets` (http://host:port of /metrics) every `interval`, until it answers ready."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(config(targets, interval))
    port = free_port()
    log = open(folder / "prometheus.log", "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [binary(), f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", "--storage.tsdb.retention.time=1d"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    prom = Prometheus(proc.pid, f"http://127.0.0.1:{port}", folder)
    (folder / "prometheus.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (folder / "prometheus.log").read_text()[-2000:]
            raise RuntimeError(f"prometheus exited {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return prom
        except OSError:
            pass
        time.sleep(0.2)
    prom.stop()
    raise RuntimeError(f"prometheus did not become ready in {timeout:.0f}s")
