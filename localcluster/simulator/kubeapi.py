"""Thin access to the cluster for the simulator: raw JSON through the kubernetes client, plus watches."""

from __future__ import annotations

import json
import threading
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

KSVC = ("serving.knative.dev", "v1", "services")


class Kube:
    def __init__(self, kubeconfig: str) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.ext = client.ApiextensionsV1Api(self.api)

    @staticmethod
    def _raw(resp: Any) -> Any:
        return json.loads(resp.data)

    def get_or_none(self, fn, *args: Any) -> dict[str, Any] | None:
        try:
            return self._raw(fn(*args, _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def crd_exists(self, name: str) -> bool:
        return self.get_or_none(self.ext.read_custom_resource_definition, name) is not None

    def deployment(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.get_or_none(self.apps.read_namespaced_deployment, name, ns)

    def configmap_data(self, ns: str, name: str) -> dict[str, str]:
        cm = self.get_or_none(self.core.read_namespaced_config_map, name, ns)
        return (cm or {}).get("data") or {}

    def ksvcs(self) -> list[dict[str, Any]]:
        return self._raw(self.custom.list_cluster_custom_object(*KSVC, _preload_content=False))["items"]

    def revision_deployments(self) -> list[dict[str, Any]]:
        return self._raw(self.apps.list_deployment_for_all_namespaces(
            label_selector="serving.knative.dev/revision", _preload_content=False))["items"]

    def revision_pods(self) -> list[dict[str, Any]]:
        return self._raw(self.core.list_pod_for_all_namespaces(
            label_selector="serving.knative.dev/revision", _preload_content=False))["items"]

    def patch_ksvc_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(*KSVC[:2], ns, KSVC[2], name, {"status": status})

    def create_deployment(self, ns: str, body: dict[str, Any]) -> None:
        self.apps.create_namespaced_deployment(ns, body)

    def scale(self, ns: str, name: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": replicas}})

    def delete_deployment(self, ns: str, name: str) -> None:
        try:
            self.apps.delete_namespaced_deployment(name, ns, propagation_policy="Background")
        except ApiException as err:
            if err.status != 404:
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
