"""A polite stop: SIGTERM asks a run to stop before its next write or wait, not in the middle of one.

The Job controller ends a shard's pod with SIGTERM when its wave's failure budget is spent (`maxFailedIndexes`),
and a kubelet does the same on eviction or a node drain. Killed outright, the run would leave its clusters
half-applied with their locks held until the leases expire, and say nothing. Asked politely, each cluster's run
fails at its next step with the reason `Stopped` (its JSON report and the shard's result say where), pyinfra's
`finally` releases the locks, and the next run finishes what was left. A write already sent completes.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from knfleet.errors import Reason
from knfleet.kube.client import KubeError

_requested = threading.Event()
_why: list[str] = []


class Stopped(KubeError):
    """The run was asked to stop (SIGTERM): it stops before its next write or wait; nothing more is changed."""

    code = Reason.STOPPED

    def __init__(self, cluster: str, why: str, what: str) -> None:
        super().__init__(cluster, what, 0, "Stopped",
                         f"this run was asked to stop ({why}); stopped before {what}, nothing more was changed (the "
                         "next run finishes it)")

    def __str__(self) -> str:
        return self.message


def request(why: str) -> None:
    if not _requested.is_set():
        _why.append(why)
        _requested.set()


def requested() -> str | None:
    """Why the run was asked to stop, or None."""
    return _why[0] if _requested.is_set() else None


def check(cluster: str, what: str) -> None:
    """Raise Stopped when the run was asked to stop."""
    why = requested()
    if why is not None:
        raise Stopped(cluster, why, what)


def reset() -> None:
    _requested.clear()
    _why.clear()


def on_sigterm() -> None:
    """SIGTERM asks the run to stop (see the module's text); the process then ends as its run does."""
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal's interface
        request(f"signal {signal.Signals(signum).name}")
    signal.signal(signal.SIGTERM, handler)
