"""Python's cyclic garbage collector at fleet scale.

A run keeps each cluster's lists (a megabyte of JSON a cluster: CRDs, pods, ConfigMaps, RBAC) until the next write;
on a thousand clusters that is gigabytes of live objects, and every full collection walks all of them again: at 300
clusters' worth of lists, parsing cost 4x what it costs without collections (docs/fleet-scale.md). So, between
pyinfra operations, what is alive is collected once and then frozen (gc.freeze: left out of later collections;
objects still go when their last reference does), and the youngest generation is collected less often.
"""

from __future__ import annotations

import gc
from typing import Any

from pyinfra.api.state import BaseStateCallback

GEN0_THRESHOLD = 20_000  # Python's default is 700 allocations


class FreezeBetweenOperations(BaseStateCallback):
    """Collect, then freeze, what is alive when an operation starts."""

    def operation_start(self, state: Any, op_hash: Any) -> None:  # type: ignore[override]
        gc.collect()
        gc.freeze()


def install(state: Any) -> None:
    """Register the policy with pyinfra's state (once) and raise the youngest generation's threshold."""
    if any(isinstance(h, FreezeBetweenOperations) for h in state.callback_handlers):
        return
    state.add_callback_handler(FreezeBetweenOperations())
    first, *rest = gc.get_threshold()
    gc.set_threshold(max(first, GEN0_THRESHOLD), *rest)
