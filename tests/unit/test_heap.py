"""knfleet.run.heap: between pyinfra operations what is alive is frozen out of later collections, once per state."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from pyinfra.api import Config, Inventory, State

from knfleet.run import heap


@pytest.fixture
def clean_gc() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.enable()


def test_an_operation_start_freezes_what_is_alive(clean_gc: None) -> None:
    kept = [{"item": i} for i in range(1000)]
    assert gc.get_freeze_count() == 0
    heap.FreezeBetweenOperations().operation_start(None, "op")
    assert gc.get_freeze_count() >= len(kept)


def test_install_registers_once_and_leaves_collections_to_operation_starts(clean_gc: None) -> None:
    state = State(Inventory((["@local"], {})), Config())
    heap.install(state)
    heap.install(state)
    assert sum(isinstance(h, heap.FreezeBetweenOperations) for h in state.callback_handlers) == 1
    assert not gc.isenabled()


def test_cyclic_garbage_goes_at_the_next_operation_start(clean_gc: None) -> None:
    import weakref

    class Node:
        pass

    gc.disable()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None
    heap.FreezeBetweenOperations().operation_start(None, "op")
    assert gone() is None


def test_a_cycle_frozen_while_alive_is_freed_after_release(clean_gc: None) -> None:
    """Review finding: a wave's pyinfra state (full of cycles) was frozen while alive and never freed, so every
    wave of `knfleet rollout` (and its bake re-run) kept the previous ones' state: gigabytes at fleet scale."""
    import weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    heap.FreezeBetweenOperations().operation_start(None, "op")  # alive then: frozen
    del a, b
    heap.FreezeBetweenOperations().operation_start(None, "op2")
    assert gone() is not None  # frozen cycles are not looked at by later collections
    heap.release()
    assert gone() is None and gc.isenabled() and gc.get_freeze_count() == 0
