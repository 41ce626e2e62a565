"""The one waiter: until a readiness check passes, or until objects are gone. Both poll the cluster's fresh lists
on the pooled connection (knfleet.kube.client.poll) and, on giving up, raise NotReadyError naming each object and
why (its readiness problem, or the finalizers that hold it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from knfleet.kube import readiness
from knfleet.kube.client import Cluster, poll


def until_ready(cluster: Cluster, check: Any, timeout: float, interval: float = 0.25) -> str:
    """Until `check` (a knfleet.desired.plan check) passes on `cluster`; its last explanation."""
    return poll(lambda: readiness.evaluate(cluster, check), timeout, interval=interval, cluster=cluster)


def held(obj: dict[str, Any]) -> str:
    """An object still present, named with the finalizers that hold it."""
    fins = obj["metadata"].get("finalizers") or []
    return f"{obj['kind']} {readiness.name_of(obj)}" + (f" (finalizers {fins})" if fins else "")


def present(cluster: Cluster, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live versions of those of `objects` that still exist (an object with a uid: that one, not a new one of
    the same name), from one list per kind and namespace, read concurrently."""
    known = [o for o in objects if cluster.has(o["apiVersion"], o["kind"])]
    keys = []
    for o in known:
        namespaced = cluster.resource(o["apiVersion"], o["kind"]).namespaced
        keys.append((o["apiVersion"], o["kind"], o["metadata"].get("namespace") if namespaced else None, None))
    cluster.list_many(keys)
    out = []
    for o in known:
        live, uid = cluster.find(o), o["metadata"].get("uid")
        if live is not None and (not uid or live["metadata"].get("uid") == uid):
            out.append(live)
    return out


def until_gone(cluster: Cluster, objects: list[dict[str, Any]], timeout: float, interval: float = 0.5,
               explain: Callable[[list[dict[str, Any]]], list[str]] | None = None) -> None:
    """Until none of `objects` exists (an object with a uid: until that one is gone, a new one of the same name
    does not count); on giving up, each one left named by `explain` (default: with its finalizers)."""
    def look() -> tuple[bool, str]:
        left = present(cluster, objects)
        return not left, "still present: " + ", ".join((explain or (lambda xs: [held(x) for x in xs]))(left))
    poll(look, timeout, interval=interval, cluster=cluster)


def until(cluster: Cluster, look: Callable[[], tuple[bool, str]], timeout: float, interval: float = 1.0) -> str:
    """Until `look()` says (True, why): for waits that are neither a readiness check nor a set of objects."""
    return poll(look, timeout, interval=interval, cluster=cluster)

