"""Install the public nginx proxy (knative-nginx) in front of Kourier's external Service."""

from __future__ import annotations

from pyinfra.api import deploy

from knfleet import operations as kn
from knfleet.kubectl import Target


@deploy("Public proxy")
def install(target: Target, paths: dict[str, str], timeout: int) -> None:
    kn.apply_manifest(name="knative-nginx proxy", target=target, path=paths["proxy"], stage="proxy")
    kn.deployments_available(name="knative-nginx Deployments Available", target=target,
                             namespace="knative-nginx", timeout=timeout)
