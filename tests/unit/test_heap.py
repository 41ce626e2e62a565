"""knfleet.run.heap: between pyinfra operations what is alive is frozen out of later collections, once per state."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from pyinfra.api import Config, Inventory, State

from knfleet.run import heap


@pytest.fixture
def clean_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_an_operation_start_freezes_what_is_alive(clean_gc: None) -> None:
    kept = [{"item": i} for i in range(1000)]
    assert gc.get_freeze_count() == 0
    heap.FreezeBetweenOperations().operation_start(None, "op")
    assert gc.get_freeze_count() >= len(kept)


def test_install_registers_once_and_raises_the_first_threshold(clean_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    state = State(Inventory((["@local"], {})), Config())
    heap.install(state)
    heap.install(state)
    assert sum(isinstance(h, heap.FreezeBetweenOperations) for h in state.callback_handlers) == 1
    assert gc.get_threshold() == (heap.GEN0_THRESHOLD, 10, 10)
