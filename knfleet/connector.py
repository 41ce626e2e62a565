"""The @kube connector: each inventory host is one Kubernetes cluster.

    hosts = [("@kube/prod-eu-1", {"kubeconfig": "~/.kube/prod-eu-1", "kube_context": "admin"})]

Every command for such a host runs on this machine (kubectl with that cluster's kubeconfig), so
clusters run in parallel like any pyinfra hosts and `--limit` picks clusters or groups.
"""

from __future__ import annotations

import os

from pyinfra.api.exceptions import ConnectError, InventoryError
from pyinfra.connectors.local import LocalConnector


class KubeConnector(LocalConnector):
    handles_execution = True

    @staticmethod
    def make_names_data(name=None):  # noqa: ANN001,ANN205 - pyinfra's connector interface
        if not name:
            raise InventoryError("@kube needs a cluster name: @kube/<cluster>")
        yield f"@kube/{name}", {"cluster_name": name}, ["@kube"]

    def connect(self) -> None:
        kubeconfig = self.host.data.get("kubeconfig")
        if not kubeconfig:
            raise ConnectError(f"{self.host.name}: host data 'kubeconfig' is not set (the cluster's kubeconfig path)")
        if not os.path.isfile(os.path.expanduser(str(kubeconfig))):
            raise ConnectError(f"{self.host.name}: kubeconfig {kubeconfig} does not exist")
