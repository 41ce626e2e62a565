"""Smoke tests: the runbook's chat request through the entry point the host data names."""

from __future__ import annotations

from pyinfra.api import deploy

from knfleet import operations as kn
from knfleet.kubectl import Target
from knfleet.models import Model


@deploy("Smoke tests")
def smoke(target: Target, models: list[Model], domain: str | None, internal_url: str | None,
          public_url: str | None, deadline: int) -> None:
    services = []
    for m in models:
        if not m.smoke:
            continue
        host = f"{m.name}.{m.namespace}.svc.cluster.local" if m.cluster_local or not domain \
            else f"{m.name}.{m.namespace}.{domain}"
        services.append((m.ref, m.served_model_name, host, m.cluster_local))
    kn.smoke_test(name="Smoke test: POST /v1/chat/completions", target=target, services=tuple(services),
                  internal_url=internal_url, public_url=public_url, deadline=deadline)
