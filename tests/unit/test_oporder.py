"""knfleet.run.oporder: pyinfra's operation order from a cheaper stack walk, the same list as pyinfra's own."""

from __future__ import annotations

from types import SimpleNamespace

import pyinfra
import pytest
from pyinfra.api import util as pyinfra_util

from knfleet.run import oporder

pyinfra_operation = oporder.pyinfra_operation

ORIGINAL = pyinfra_util.get_operation_order_from_stack


def _inner(state: SimpleNamespace) -> tuple[list[int], list[int]]:
    return ORIGINAL(state), oporder.operation_order(state)  # both on one line: the same line number for this frame


def _outer(state: SimpleNamespace) -> tuple[list[int], list[int]]:
    return _inner(state)


@pytest.mark.parametrize("cli", [True, False])
@pytest.mark.parametrize("deploy_file", [__file__, "/nowhere/deploy.py", None])
def test_same_order_as_pyinfra(monkeypatch: pytest.MonkeyPatch, cli: bool, deploy_file: str | None) -> None:
    monkeypatch.setattr(pyinfra, "is_cli", cli)
    state = SimpleNamespace(current_deploy_filename=deploy_file, current_op_file_number=7)
    theirs, ours = _outer(state)
    assert ours == theirs
    if deploy_file == __file__:
        assert len(ours) >= 2 + cli  # this file's frames (and the op file's number under the CLI)
    elif deploy_file is None:  # no deploy file: every caller's frame
        assert len(ours) > 3
    else:
        assert ours == ([7] if cli else [])  # the deploy file is not on the stack: nothing of the callers


def test_install_replaces_pyinfras_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pyinfra_operation, "get_operation_order_from_stack", ORIGINAL)
    oporder.install()
    assert pyinfra_operation.get_operation_order_from_stack is oporder.operation_order
    oporder.install()  # twice: still ours
    assert pyinfra_operation.get_operation_order_from_stack is oporder.operation_order
