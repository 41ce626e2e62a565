"""Install Kourier (net-kourier) as Knative's ingress."""

from __future__ import annotations

from pyinfra.api import deploy

from knfleet import operations as kn
from knfleet.kubectl import Target


@deploy("Kourier")
def install(target: Target, paths: dict[str, str], timeout: int) -> None:
    kn.apply_manifest(name="Kourier (kourier.yaml)", target=target, path=paths["kourier"], stage="kourier",
                      _retries=3, _retry_delay=3)
    kn.deployments_available(name="kourier-system Deployments Available", target=target,
                             namespace="kourier-system", timeout=timeout)
