"""Install Knative Serving: CRDs, configuration, core, with readiness gates between the steps."""

from __future__ import annotations

from pyinfra.api import deploy

from knfleet import operations as kn
from knfleet.kubectl import Target


@deploy("Knative Serving")
def install(target: Target, paths: dict[str, str], timeout: int) -> None:
    kn.apply_manifest(name="Knative CRDs (serving-crds.yaml)", target=target, path=paths["crds"], stage="crds")
    kn.crds_established(name="Knative CRDs Established", target=target, timeout=timeout)
    kn.apply_config(name="Knative configuration (config-* ConfigMaps)", target=target, path=paths["config"])
    # serving-core may still race a CRD that is not served yet ("no matches for kind"): retry.
    kn.apply_manifest(name="Knative Serving core (serving-core.yaml)", target=target, path=paths["core"],
                      stage="core", _retries=5, _retry_delay=3)
    kn.deployments_available(name="knative-serving Deployments Available", target=target,
                             namespace="knative-serving", timeout=timeout)
    kn.webhook_answers(name="Knative webhook answers (CA bundle, rules, dry-run create of a Service)",
                       target=target, timeout=timeout)
