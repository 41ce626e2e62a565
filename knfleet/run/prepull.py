"""The pre-pull DaemonSets' own step: delete those no model needs any more (a model removed from group data, or its
`prepull` turned off; on uninstall, all of knfleet's). Applying them and waiting for them are an Apply and a Gate of
the plan like any other (knfleet.desired.prepull, knfleet.kube.readiness.images_pulled)."""

from __future__ import annotations

import time
from typing import Any

from pyinfra.api import operation

from knfleet.desired import plan as p
from knfleet.desired.prepull import unwanted
from knfleet.errors import NotReadyError, StuckError
from knfleet.kube import readiness, wait
from knfleet.kube.client import Cluster, KubeError
from knfleet.run.context import cluster as current_cluster
from knfleet.run.context import command, fail, save_notes, say, state, unchanged, warn

DAEMONSET = readiness.DAEMONSET


def delete_daemonsets(cluster: Cluster, daemonsets: list[dict[str, Any]], timeout: int) -> list[str]:
    """Delete these DaemonSets (each with its uid as a precondition) and their pods (background), and wait until the
    DaemonSets are gone."""
    notes = state().records()
    for o in daemonsets:
        cluster.delete(*DAEMONSET, o["metadata"]["name"], o["metadata"]["namespace"], uid=o["metadata"].get("uid"))
        notes.forget(o)
    try:
        wait.until_gone(cluster, daemonsets, timeout)
    except NotReadyError as err:
        raise StuckError(str(err)) from None
    save_notes(cluster)
    return [f"DaemonSet/{readiness.name_of(o)} (deleted)" for o in daemonsets]


@operation()
def prune_prepull(step: p.PrunePrepull):
    """Delete knfleet's pre-pull DaemonSets that the run does not apply (found by their labels, across namespaces),
    only those knfleet's field manager applied."""
    t0 = time.monotonic()
    cluster = current_cluster()
    try:
        live = cluster.list(*DAEMONSET, selector=step.selector)
    except KubeError as err:
        yield fail(step.title, f"cannot list the pre-pull DaemonSets: {err}", err.code)
        return
    gone, left = unwanted(live, step.keep)
    for why in left:
        warn(f"warning: not deleted: {why}")
    if not gone:
        unchanged(step.title, "no pre-pull DaemonSet to delete", t0)
        return
    say("pre-pull DaemonSets no model needs: " + ", ".join(readiness.name_of(o) for o in gone))
    yield command(step.title, delete_daemonsets, cluster, gone, step.timeout)
