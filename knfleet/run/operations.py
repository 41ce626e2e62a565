"""knfleet's pyinfra operations, one per kind of plan step, each against one cluster (one host). The operations live
in rooms of their own, in the order of a run:

    preflight   Preflight, Capacity (the one GPU gate), Lock
    upgrading   Version, Obsolete, PostInstall
    applying    Apply, Gate
    services    Own, Prune, Smoke
    prepull     Prepulled, PrunePrepull (the pre-pull DaemonSets are applied by Apply; waited for; pruned)
    progressive Rollout, Rollback (a new model version, step by step; back to the previous one)
    uninstall   Guard, DeleteServices, Delete, Removed

Each looks first (read-only) and yields a command only when the cluster must change (knfleet.run.context).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from knfleet.desired import plan as p
from knfleet.run import applying, preflight, prepull, progressive, services, uninstall, upgrading

OPERATIONS: dict[type, Callable[..., Any]] = {
    p.Preflight: preflight.preflight, p.Capacity: preflight.gpu_capacity, p.Lock: preflight.take_lock,
    p.Version: upgrading.version_check, p.Obsolete: upgrading.obsolete, p.PostInstall: upgrading.post_install,
    p.Apply: applying.apply, p.Gate: applying.gate,
    p.Prune: services.prune, p.Own: services.own, p.Smoke: services.smoke_test,
    p.Rollout: progressive.rollout, p.Rollback: progressive.roll_back,
    p.Guard: uninstall.guard, p.DeleteServices: uninstall.delete_services, p.Delete: uninstall.delete,
    p.Removed: uninstall.removed,
    p.Prepulled: prepull.prepulled, p.PrunePrepull: prepull.prune_prepull,
}


def step(s: p.Step) -> Any:
    """The pyinfra operation for one plan step, named by its title."""
    return OPERATIONS[type(s)](s, name=s.title)
