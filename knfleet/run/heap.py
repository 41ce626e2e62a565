"""Python's cyclic garbage collector at fleet scale.

A run keeps each cluster's lists (a megabyte of JSON a cluster: CRDs, pods, ConfigMaps, RBAC) until the next write;
on a thousand clusters that is gigabytes of live objects, and every full collection walks all of them again: at 300
clusters' worth of lists, parsing cost 4x what it costs without collections, and at 1,000 clusters with the
youngest generation's threshold raised, collections inside operations still took a fifth of the CPU
(docs/fleet-scale.md). So the collector runs between pyinfra operations only: when an operation starts, what is
garbage is collected once and what is alive is frozen (gc.freeze: left out of later collections; objects still go
when their last reference does, cycles wait for the next operation's start).
"""

from __future__ import annotations

import gc
from typing import Any

from pyinfra.api.state import BaseStateCallback


class FreezeBetweenOperations(BaseStateCallback):
    """Collect, then freeze, what is alive when an operation starts."""

    def operation_start(self, state: Any, op_hash: Any) -> None:  # type: ignore[override]
        gc.collect()
        gc.freeze()


def install(state: Any) -> None:
    """Register the policy with pyinfra's state (once): no automatic collection during operations."""
    if any(isinstance(h, FreezeBetweenOperations) for h in state.callback_handlers):
        return
    state.add_callback_handler(FreezeBetweenOperations())
    gc.disable()


def release() -> None:
    """After a run in a process that goes on (`knfleet rollout`'s waves, a shard): what was frozen is looked at again
    and automatic collection is back, so one wave's run (its pyinfra state is full of cycles) is freed."""
    gc.unfreeze()
    gc.enable()
    gc.collect()
