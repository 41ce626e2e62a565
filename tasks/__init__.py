"""The tasks of a run, each a thin @deploy function over its steps of the plan (knfleet.desired.plan), so the
output reads "Knative Serving | Knative CRDs (serving-crds.yaml)" and each task groups its operations."""

from collections.abc import Callable

from pyinfra.api import deploy

from knfleet.run import operations

NAMES = {
    "run": "Cluster",  # preflight, lock, cluster-wide gates
    "knative": "Knative Serving",  # CRDs, configuration, core, with readiness gates
    "kourier": "Kourier",  # net-kourier as Knative's ingress
    "proxy": "Public proxy",  # the knative-nginx proxy in front of Kourier's external Service
    "services": "Model services",  # from group data: GPU capacity, one server-side apply, prune, readiness
    "smoke": "Smoke tests",  # the runbook's chat request to every model service
    "uninstall": "Uninstall",  # the runbook's reverse order, made safe
}


def _task(title: str) -> Callable:
    @deploy(title)
    def steps(steps: list) -> None:
        for step in steps:
            operations.step(step)
    return steps


TASKS: dict[str, Callable] = {key: _task(title) for key, title in NAMES.items()}
