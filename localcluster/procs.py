"""Start and stop the local clusters' processes, always by PID, never by name."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def start(argv: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start a daemon in its own session (it outlives `make local-up`); output goes to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env, start_new_session=True,
        )
    return proc.pid


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def alive(pid: int, marker: str) -> bool:
    """True when `pid` runs and its command line contains `marker` (guards against PID reuse)."""
    _reap(pid)
    if _state(pid) in ("", "Z", "X"):
        return False
    argv = cmdline(pid)
    # An empty command line is a process between fork and exec (or exec-ing): still ours.
    return not argv or any(marker in a for a in argv)


def stop(pid: int, marker: str, timeout: float = 15.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`. Returns True if the process was running."""
    if not alive(pid, marker):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid, marker):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 5
    while alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True
