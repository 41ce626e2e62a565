"""The pre-pull DaemonSets' own steps (knfleet.desired.prepull; applied by the plan's Apply like any stage):

    Prepulled     wait until every eligible node has the images (knfleet.kube.readiness.images_pulled, through the
                  one waiter), or fail with PrepullFailed naming each node and the kubelet's reason
    PrunePrepull  delete those no model needs any more (a model removed from group data, or its `prepull` turned
                  off; on uninstall, all of knfleet's)
"""

from __future__ import annotations

import time
from typing import Any

from pyinfra.api import operation

from knfleet.desired import plan as p
from knfleet.desired.prepull import unwanted
from knfleet.errors import NotReadyError, Reason, StuckError
from knfleet.kube import readiness, wait
from knfleet.kube.client import Cluster, Forbidden, KubeError
from knfleet.run.applying import look, with_nodes
from knfleet.run.context import cluster as current_cluster
from knfleet.run.context import command, fail, save_notes, say, state, unchanged, warn

DAEMONSET = readiness.DAEMONSET


def say_warnings(why: str) -> str:
    """Warn each `warning: ` line of a passed check (nodes left out); its first line."""
    head, *rest = why.splitlines() or [""]
    for line in rest:
        if line.startswith("warning: "):
            warn(line)
    return head


def wait_pulled(cluster: Cluster, check: p.ImagesPulled, timeout: int) -> list[str]:
    """Until every pre-pull DaemonSet is Ready on all its nodes; then say where each image is (the report keeps it
    as the step's objects). On giving up: PrepullFailed, the first line naming each node without the image and the
    kubelet's reason in a word, then node by node the kubelet's messages."""
    try:
        why = wait.until_ready(cluster, check, timeout)
    except NotReadyError as err:
        text = str(err).replace("not ready after", "gave up after", 1).replace(":\n", ": ", 1)
        raise NotReadyError(with_nodes(cluster, text), code=Reason.PREPULL_FAILED) from None
    head = say_warnings(why)
    say(head)
    return [f"DaemonSet/{part}" for part in head.split(": ", 1)[-1].split("; ")]


@operation()
def prepulled(step: p.Prepulled):
    """Look once; wait only when an image is not on every eligible node yet."""
    t0 = time.monotonic()
    cluster = current_cluster()
    ready, why = look(cluster, step.check)
    if ready:
        unchanged(step.title, say_warnings(why), t0)
        return
    yield command(step.title, wait_pulled, cluster, step.check, step.timeout)


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
    except Forbidden:  # no model uses pre-pull, so the run did not ask for these rights: leftovers are not looked for
        warn("warning: pre-pull DaemonSets left by earlier runs were not looked for: this identity cannot list "
             "DaemonSets (grant list and delete on daemonsets to have them pruned)")
        unchanged(step.title, "not looked for (no right to list DaemonSets)", t0)
        return
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
