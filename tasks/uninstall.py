"""Uninstall in the runbook's reverse order, made safe (NOTES §6)."""

from __future__ import annotations

from pyinfra.api import deploy

from knfleet import operations as kn
from knfleet.kubectl import Target

MANAGED = "app.kubernetes.io/managed-by=knfleet"


@deploy("Uninstall")
def uninstall(target: Target, paths: dict[str, str], timeout: int, force: bool = False) -> None:
    kn.no_foreign_services(name="No Knative object knfleet did not make would be lost", target=target,
                           selector=MANAGED, force=force)
    kn.delete_services(name="Delete knfleet's Knative Services (controllers still running)" if not force
                       else "Delete every Knative Service, DomainMapping, Route, Configuration (force_uninstall)",
                       target=target, selector=MANAGED, timeout=timeout, force=force)
    for stage in paths:
        kn.delete_manifest(name=f"Delete {stage}", target=target, path=paths[stage], stage=stage, timeout=timeout)
    kn.verify_removed(name="Nothing of Knative remains", target=target, timeout=timeout)
