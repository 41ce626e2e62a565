"""One typed record per cluster for the whole run (`ClusterState`, held by the cluster's connector), and the few
helpers every operation uses to look, change or fail in pyinfra's way.

Like pyinfra's own operations, each operation first looks (read-only, through the cluster's client) and yields a
command only when the cluster must change; otherwise it reports no change (`unchanged`, pyinfra's noop). What each
step did goes into the record (`ClusterRun`, plain values), from which the report is built after the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FunctionCommand

from knfleet.errors import KnfleetError, Reason
from knfleet.kube import diff
from knfleet.kube.client import Cluster, KubeError
from knfleet.report.records import ClusterRun
from knfleet.run import stopping


@dataclass
class ClusterState:
    """What a run keeps for one cluster: its client, its record, knfleet's notes read once, the lock it holds."""

    record: ClusterRun
    cluster: Cluster | None = None
    input_error: str | None = None  # host data or kubeconfig refused: reported as bad input before any change
    notes: diff.Records | None = None  # kube-system/knfleet-state, read once per run
    upgrade_note: dict[str, str] | None = None  # kube-system/knfleet-upgrade, read once per run
    lock_holder: str | None = None
    renewer: Any = None  # knfleet.run.lock.Renewer while this run holds the lock

    def records(self) -> diff.Records:
        """knfleet's notes of what it applied on this cluster (read on first use)."""
        if self.notes is None:
            assert self.cluster is not None
            self.notes = diff.Records.load(self.cluster)
        return self.notes


def state() -> ClusterState:
    """The cluster state of the host pyinfra is working on."""
    return host.connector.run


def cluster() -> Cluster:
    c = state().cluster
    assert c is not None, "the connector connected no cluster"
    return c


def record() -> ClusterRun:
    return state().record


def executing() -> bool:
    return bool(host.state.is_executing)


def say(message: str) -> None:
    logger.info(f"{host.print_prefix}{message}")


def warn(message: str, keep: bool = True) -> None:
    """A warning on the output and, when executing, in the report."""
    logger.warning(f"{host.print_prefix}{message}")
    if keep and executing():
        record().warn(message.removeprefix("warning: "))


def command(title: str, fn: Callable[..., Any], *args: Any) -> FunctionCommand:
    """A command running fn(*args) on this machine. What it returns (the objects it changed) and how long it took
    go into the cluster's record; a knfleet error fails the cluster with its message and typed reason."""
    def run(state: Any, host: Any) -> bool:  # noqa: ARG001 - pyinfra passes its State and Host
        cs: ClusterState = host.connector.run
        t0 = time.monotonic()
        try:
            if cs.cluster is not None:
                stopping.check(cs.cluster.name, title)
            renewer = cs.renewer
            if renewer is not None and renewer.lost:
                raise KnfleetError(f"this run lost the cluster's lock ({renewer.lost}); stopped before {title}",
                                   code=Reason.LOCK_LOST)
            changed = fn(*args)
        except KnfleetError as err:
            cs.record.error(title, str(err), err.code)
            cs.record.step(title, "failed", t0, note=str(err).splitlines()[0][:300])
            host.log_styled(f"{title} failed: {err}", fg="red", log_func=logger.error)
            return False
        cs.record.step(title, "changed", t0, objects=list(changed or []))
        return True
    run.__name__ = title.replace(" ", "_")
    return FunctionCommand(run, (), {})


def fail(title: str, message: str, code: Reason = Reason.FAILED) -> FunctionCommand:
    """A command that fails the cluster with `message` (a look found something the run must not go past)."""
    def raise_it() -> None:
        raise KnfleetError(message, code=code)
    return command(title, raise_it)


def unchanged(title: str, why: str, t0: float) -> None:
    """No change: say why (pyinfra's noop), and keep the step's time in the record when executing."""
    host.noop(why)
    if executing():
        record().step(title, "ok", t0, note=why)


def save_notes(c: Cluster) -> None:
    """Write knfleet's notes back; bookkeeping only (the next run compares by dry run where they are missing)."""
    try:
        state().records().save(c)
    except KubeError:
        pass
