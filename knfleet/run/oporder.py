"""A cheaper way for pyinfra to find where an operation was called, the same answer.

For every operation on every host pyinfra orders operations by the line numbers of the deploy code that called it
(`pyinfra.api.util.get_operation_order_from_stack`). It gets them with `inspect.stack()`, which reads the source lines
and resolves the module of every frame of the call stack: at 100 clusters a quarter of the run's CPU went there
(docs/fleet-scale.md). `operation_order` walks the same frames (`sys._getframe`) and takes only what pyinfra uses,
the file name and the line number, so it returns the same list. `install` puts it in pyinfra's operation module
(once, before the first operation).
"""

from __future__ import annotations

import importlib
import sys
from types import FrameType
from typing import Any

import pyinfra
from pyinfra.api import util as pyinfra_util

pyinfra_operation = importlib.import_module("pyinfra.api.operation")  # `pyinfra.api.operation` is also a function


def _frames(start: FrameType | None) -> list[FrameType]:
    """The frames from the outermost to `start`."""
    out = []
    while start is not None:
        out.append(start)
        start = start.f_back
    out.reverse()
    return out


def operation_order(state: Any, _start: FrameType | None = None) -> list[int]:
    """pyinfra's operation order (get_operation_order_from_stack's list) for the current call stack."""
    frames = _frames(_start or sys._getframe(1))
    install_dir = pyinfra_util.PYINFRA_INSTALL_DIR
    i = 0
    if state.current_deploy_filename:
        for i, frame in enumerate(frames):  # noqa: B007
            if frame.f_code.co_filename == state.current_deploy_filename:
                break
        else:  # pyinfra's loop then stops on its own frame (skipped): no caller's line number
            i = len(frames)
    line_numbers = []
    if pyinfra.is_cli:
        line_numbers.append(state.current_op_file_number)
    for frame in frames[i:]:
        if frame.f_code.co_filename.startswith(install_dir):
            continue
        line_numbers.append(frame.f_lineno)
    return line_numbers


def install() -> None:
    """Make pyinfra's operations use operation_order (idempotent)."""
    if getattr(pyinfra_operation, "get_operation_order_from_stack", None) is not operation_order:
        pyinfra_operation.get_operation_order_from_stack = operation_order
