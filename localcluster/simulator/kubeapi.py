"""Thin access to the cluster for the simulator: raw JSON through the kubernetes client, plus watches."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

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

    def _list_custom(self, gvr: tuple[str, str, str]) -> list[dict[str, Any]]:
        try:
            return self._raw(self.custom.list_cluster_custom_object(*gvr, _preload_content=False))["items"]
        except ApiException as err:
            if err.status == 404:  # the CRD is not installed (yet, or any more)
                return []
            raise

    def _configmap(self, ns: str, name: str) -> dict[str, str]:
        try:
            cm = self._raw(self.core.read_namespaced_config_map(name, ns, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return {}
            raise
        return cm.get("data") or {}

    def snapshot(self) -> Snapshot:
        system = {}
        for ns in (KNATIVE_NS, KOURIER_NS):
            for d in self._raw(self.apps.list_namespaced_deployment(ns, _preload_content=False))["items"]:
                system[key(d)] = d
        deps = self._raw(self.apps.list_deployment_for_all_namespaces(
            label_selector=REVISION_LABEL, _preload_content=False))["items"]
        pods = self._raw(self.core.list_pod_for_all_namespaces(
            label_selector=REVISION_LABEL, _preload_content=False))["items"]
        return Snapshot(
            pas=self._list_custom(PA),
            sks={key(o): o for o in self._list_custom(SKS)},
            ingresses=self._list_custom(KINGRESS),
            revisions={key(o): o for o in self._list_custom(REVISION)},
            deployments={(d["metadata"]["namespace"], d["metadata"]["labels"][REVISION_LABEL]): d for d in deps},
            pods=pods,
            system=system,
            autoscaler_config=self._configmap(KNATIVE_NS, "config-autoscaler"),
            network_config=self._configmap(KNATIVE_NS, "config-network"),
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

    def scale(self, ns: str, name: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": replicas}})

    def deployment(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return self._raw(self.apps.read_namespaced_deployment(name, ns, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return None
            raise


def watch_forever(fn, wake: threading.Event, stop: threading.Event, **kwargs: Any) -> None:
    """Wake the reconcile loop on every change of a watched list; re-watch after errors."""
    while not stop.is_set():
        w = watch.Watch()
        try:
            for _ in w.stream(fn, timeout_seconds=30, **kwargs):
                wake.set()
                if stop.is_set():
                    break
        except Exception:  # noqa: BLE001 - the resource may not exist yet (CRD missing); retry later
            stop.wait(1.0)
        finally:
            w.stop()
