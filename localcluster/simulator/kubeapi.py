"""Thin access to the cluster for the simulator: raw JSON through the kubernetes client, plus watches."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from localcluster.kubewatch import Cache

# (group, version, plural) of the Knative objects the simulator reads or writes
PA = ("autoscaling.internal.knative.dev", "v1alpha1", "podautoscalers")
SKS = ("networking.internal.knative.dev", "v1alpha1", "serverlessservices")
KINGRESS = ("networking.internal.knative.dev", "v1alpha1", "ingresses")
REVISION = ("serving.knative.dev", "v1", "revisions")
KNATIVE_NS = "knative-serving"
KOURIER_NS = "kourier-system"
REVISION_LABEL = "serving.knative.dev/revision"


@dataclass
class Snapshot:
    """What one reconcile tick saw (the gateway reads the latest one)."""

    pas: list[dict[str, Any]] = field(default_factory=list)
    sks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    ingresses: list[dict[str, Any]] = field(default_factory=list)
    revisions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # revision deployments
    pods: list[dict[str, Any]] = field(default_factory=list)  # revision pods
    system: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # knative/kourier deployments
    autoscaler_config: dict[str, str] = field(default_factory=dict)
    network_config: dict[str, str] = field(default_factory=dict)

    def available(self, namespace: str, name: str) -> bool:
        dep = self.system.get((namespace, name))
        conds = ((dep or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in conds)


def key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


class Kube:
    def __init__(self, kubeconfig: str) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    @staticmethod
    def _raw(resp: Any) -> Any:
        return json.loads(resp.data)

    def watch(self, wake: threading.Event, stop: threading.Event) -> None:
        """Cache every kind the simulator reads (list, then watch): a snapshot costs no request."""
        c = self.custom
        self.caches = {
            "pas": Cache(c.list_cluster_custom_object, wake, stop, group=PA[0], version=PA[1], plural=PA[2]),
            "sks": Cache(c.list_cluster_custom_object, wake, stop, group=SKS[0], version=SKS[1], plural=SKS[2]),
            "ingresses": Cache(c.list_cluster_custom_object, wake, stop, group=KINGRESS[0], version=KINGRESS[1],
                               plural=KINGRESS[2]),
            "revisions": Cache(c.list_cluster_custom_object, wake, stop, group=REVISION[0], version=REVISION[1],
                               plural=REVISION[2]),
            "deployments": Cache(self.apps.list_deployment_for_all_namespaces, wake, stop,
                                 keep=lambda d: d["metadata"]["namespace"] in (KNATIVE_NS, KOURIER_NS)
                                 or REVISION_LABEL in (d["metadata"].get("labels") or {})),
            "pods": Cache(self.core.list_pod_for_all_namespaces, wake, stop, label_selector=REVISION_LABEL),
            "configmaps": Cache(self.core.list_namespaced_config_map, wake, stop, namespace=KNATIVE_NS),
            # for the load-balancer controller
            "lb_services": Cache(self.core.list_service_for_all_namespaces, wake, stop,
                                 keep=lambda s: (s.get("spec") or {}).get("type") == "LoadBalancer"),
            "endpoints": Cache(self.core.list_endpoints_for_all_namespaces, wake, stop),
        }

    def snapshot(self) -> Snapshot:
        items = {k: c.items() for k, c in self.caches.items()}
        cms = {o["metadata"]["name"]: o.get("data") or {} for o in items["configmaps"]}
        deps = items["deployments"]
        return Snapshot(
            pas=items["pas"],
            sks={key(o): o for o in items["sks"]},
            ingresses=items["ingresses"],
            revisions={key(o): o for o in items["revisions"]},
            deployments={(d["metadata"]["namespace"], d["metadata"]["labels"][REVISION_LABEL]): d for d in deps
                         if REVISION_LABEL in (d["metadata"].get("labels") or {})},
            pods=items["pods"],
            system={key(d): d for d in deps if d["metadata"]["namespace"] in (KNATIVE_NS, KOURIER_NS)},
            autoscaler_config=cms.get("config-autoscaler", {}),
            network_config=cms.get("config-network", {}),
        )

    # --- writes -----------------------------------------------------------------------------------------
    def create(self, gvr: tuple[str, str, str], ns: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(gvr[0], gvr[1], ns, gvr[2], body)

    def replace_spec(self, gvr: tuple[str, str, str], obj: dict[str, Any], spec: dict[str, Any]) -> None:
        ns, name = key(obj)
        self.custom.patch_namespaced_custom_object(
            gvr[0], gvr[1], ns, gvr[2], name,
            {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "spec": spec},
            _content_type="application/merge-patch+json")

    def patch_status(self, gvr: tuple[str, str, str], obj: dict[str, Any], status: dict[str, Any]) -> None:
        ns, name = key(obj)
        self.custom.patch_namespaced_custom_object_status(
            gvr[0], gvr[1], ns, gvr[2], name, {"status": status}, _content_type="application/merge-patch+json")

    def set_finalizers(self, gvr: tuple[str, str, str], obj: dict[str, Any], finalizers: list[str]) -> None:
        ns, name = key(obj)
        self.custom.patch_namespaced_custom_object(
            gvr[0], gvr[1], ns, gvr[2], name,
            {"metadata": {"finalizers": finalizers, "resourceVersion": obj["metadata"]["resourceVersion"]}},
            _content_type="application/merge-patch+json")

    def service_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        self.core.patch_namespaced_service_status(name, ns, {"status": status})

    def scale(self, ns: str, name: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": replicas}})

    def deployment(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self._raw(self.apps.read_namespaced_deployment(name, ns, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return None
            raise
