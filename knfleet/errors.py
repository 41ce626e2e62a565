"""Errors knfleet raises; each message says what, where, why and what to do."""

from __future__ import annotations


class KnfleetError(RuntimeError):
    pass


class NotReadyError(KnfleetError):
    """A wait gave up; the message names each object that is not ready and why."""


class StuckError(KnfleetError):
    """Uninstall left objects behind (finalizers); the message names them."""
