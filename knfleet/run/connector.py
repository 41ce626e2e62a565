"""The @kube connector: each inventory host is one Kubernetes cluster.

    hosts = [("@kube/prod-eu-1", {"kubeconfig": "~/.kube/prod-eu-1", "kube_context": "admin"})]

Nothing runs on the cluster's machines: operations talk to the cluster through the connector's client (one
per cluster, in process: knfleet.kube.client). The connector also holds the run's state for that cluster
(`run`: knfleet.run.context.ClusterState, with its record of what each step did), and in `disconnect`, which
pyinfra calls at the end of every run in a `finally`, it releases the cluster's lock.
"""

from __future__ import annotations

import os
from typing import Any

from pyinfra.api.exceptions import InventoryError
from pyinfra.connectors.local import LocalConnector

from knfleet.errors import InputError, shown
from knfleet.kube.client import Cluster, Target
from knfleet.report.records import ClusterRun
from knfleet.run import lock
from knfleet.run.context import ClusterState


def target_of(name: str, data: Any) -> Target:
    """The cluster a host's data names (kubeconfig, kube_context, request_timeout), checked."""
    kubeconfig = data.get("kubeconfig")
    if not kubeconfig:
        raise InputError(f"{name}: host data 'kubeconfig' is required: the path of this cluster's kubeconfig "
                         f"(got {shown(kubeconfig)})")
    if not isinstance(kubeconfig, str):
        raise InputError(f"{name}: host data 'kubeconfig' = {shown(kubeconfig)} is not allowed; use the path of this "
                         "cluster's kubeconfig")
    context = data.get("kube_context")
    if context is not None and not isinstance(context, str):
        raise InputError(f"{name}: host data 'kube_context' = {shown(context)} is not allowed; use a context name")
    timeout = data.get("request_timeout") or 30
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InputError(f"{name}: host data 'request_timeout' = {shown(timeout)} is not allowed; use seconds > 0")
    return Target(name, os.path.expanduser(kubeconfig), context or None, float(timeout))


class KubeConnector(LocalConnector):
    handles_execution = True

    def __init__(self, state: Any, host: Any) -> None:
        super().__init__(state, host)
        self.run = ClusterState(ClusterRun(cluster=host.name.split("/", 1)[-1], host=host.name))

    @staticmethod
    def make_names_data(name=None):  # noqa: ANN001,ANN205 - pyinfra's connector interface
        if not name:
            raise InventoryError("@kube needs a cluster name: @kube/<cluster>")
        yield f"@kube/{name}", {"cluster_name": name}, ["@kube"]

    def connect(self) -> None:
        """Nothing is sent to the cluster yet; a host data or kubeconfig problem is kept in `input_error`, which
        deploy.prepare reports as bad input (exit 2) before any cluster of the run is touched."""
        name = self.host.name.split("/", 1)[-1]
        try:
            target = target_of(name, self.host.data)
        except InputError as err:
            self.run.input_error = str(err)
            return
        if not os.path.isfile(target.kubeconfig):
            self.run.input_error = (f"{name}: kubeconfig {target.kubeconfig} does not exist (host data "
                                    "'kubeconfig'); copy it there or fix the path")
            return
        self.run.cluster = Cluster(target)

    def disconnect(self) -> None:
        """End of the run (pyinfra's `finally`): release the lock if this run holds it, close the connection."""
        run, cluster = self.run, self.run.cluster
        if cluster is None:
            return
        from pyinfra import logger

        if run.renewer is not None:
            run.renewer.stop()
            run.renewer = None
        if run.lock_holder:
            try:
                lock.release(cluster, run.lock_holder)
            except Exception:  # noqa: BLE001 - the lease expires by itself
                pass
            run.lock_holder = None
        run.record.api_requests = cluster.requests
        logger.debug(f"{self.host.print_prefix}{cluster.requests} API request(s) to {cluster.name}")
        cluster.close()
