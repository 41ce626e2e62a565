"""Run knfleet operations against pyinfra's @fake connector with recorded kubectl output."""

from __future__ import annotations

from typing import Any

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops

from knfleet.kubectl import Target

TARGET = Target(kubeconfig="/clusters/c1/kubeconfig")


def run_op(op: Any, responses: dict[Any, Any], **kwargs: Any) -> tuple[list[str], bool, bool]:
    """Run one operation on a fake host; returns (executed commands, changed, succeeded)."""
    inventory = Inventory((["@fake/c1"], {"fake_responses": responses, "fake_delay": 0, "fake_delay_jitter": 0}))
    state = State(inventory, Config())
    connect_all(state)
    meta = add_op(state, op, **kwargs)
    host = inventory.get_host("@fake/c1")
    try:
        run_ops(state)
    except PyinfraError:  # "No hosts remaining!": the only host failed
        assert host in state.failed_hosts
    ran = list(host.connector.executed_commands)
    result = meta[host]
    return ran, result.did_change(), result.did_succeed()
