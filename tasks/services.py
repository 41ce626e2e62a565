"""Model services from group data: one server-side apply, prune what was removed, wait for real readiness."""

from __future__ import annotations

from pyinfra.api import deploy

from knfleet import operations as kn
from knfleet.kubectl import Target
from knfleet.models import MANAGED, Model


@deploy("Model services")
def deploy_services(target: Target, path: str | None, models: list[Model], timeout: int) -> None:
    if path:
        # Knative's webhook admits every Knative Service: retry while it (re)starts.
        kn.apply_manifest(name="Model services (Knative Services)", target=target, path=path, stage="services",
                          _retries=10, _retry_delay=3)
    kn.prune_services(name="Delete model services removed from group data", target=target,
                      keep=tuple(m.ref for m in models), selector=MANAGED, timeout=timeout)
    kn.services_ready(name="Model services Ready (observedGeneration, latest revision)", target=target,
                      refs=tuple(m.ref for m in models), timeout=timeout)
