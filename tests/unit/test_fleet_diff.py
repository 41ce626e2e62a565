"""`knfleet diff` follows the run's own rules for what it deletes (prune) and refuses (the Own step): the same
functions of knfleet.desired.ownership, read from a cluster's lists."""

from __future__ import annotations

from typing import Any

from knfleet.desired import ownership, plan
from knfleet.fleet import diff as fleet_diff
from knfleet.kube.readiness import KSVC


def ksvc(name: str, owner: str | None = "default", manager: str = "knfleet") -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "knfleet", **({ownership.OWNER: owner} if owner else {})}
    return {"apiVersion": KSVC[0], "kind": KSVC[1],
            "metadata": {"name": name, "namespace": "ns", "labels": labels,
                         "managedFields": [{"manager": manager, "operation": "Apply" if manager == "knfleet"
                                            else "Update"}]}}


class Cluster:
    def __init__(self, services: list[dict[str, Any]]) -> None:
        self.services = services

    def has(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) == KSVC

    def list(self, api_version: str, kind: str, namespace: str | None = None, selector: str | None = None,
             ) -> list[dict[str, Any]]:
        wanted = dict(s.split("=", 1) for s in (selector or "").split(",") if s)
        return [o for o in self.services if all(o["metadata"]["labels"].get(k) == v for k, v in wanted.items())]


def test_diff_lists_as_deleted_only_what_the_runs_prune_deletes():
    cluster = Cluster([ksvc("kept"), ksvc("gone"), ksvc("copied-labels", manager="kubectl-client-side-apply"),
                       ksvc("theirs", owner="team-b")])
    step = plan.Prune(f"app.kubernetes.io/managed-by=knfleet,{ownership.OWNER}=default", ("ns/kept",), 60)
    assert [d.ref for d in fleet_diff.removed_services(cluster, step)] == ["Service/ns/gone"]


def test_diff_names_a_service_the_runs_own_step_would_refuse_as_an_error():
    cluster = Cluster([ksvc("handmade", owner=None, manager="kubectl-edit"), ksvc("theirs", owner="team-b"),
                       ksvc("mine")])
    step = plan.Own("default", ("ns/handmade", "ns/theirs", "ns/mine"), (), ())
    found = fleet_diff.refused_takeovers(cluster, step)
    assert [(d.ref, d.error) for d in found] == [("Service/ns/handmade", True), ("Service/ns/theirs", True)]
    assert "kubectl-edit" in found[0].why and "team-b" in found[1].why
    adopted = plan.Own("default", ("ns/handmade",), ("ns/handmade",), ())
    assert fleet_diff.refused_takeovers(cluster, adopted) == []
