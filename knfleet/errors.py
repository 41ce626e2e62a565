"""Errors knfleet raises: one root, so a caller can catch everything knfleet means to say. Each message says
what, where, why and what to do."""

from __future__ import annotations


class KnfleetError(Exception):
    """Anything knfleet reports as a failure with a message a user can act on."""


class InputError(KnfleetError, ValueError):
    """Bad input (group/host data, inventory, bundle, models): nothing was changed on any cluster. Exit code 2."""


class ClusterError(KnfleetError):
    """Something on one cluster failed (it is reported for that cluster; the others go on)."""


class NotReadyError(ClusterError):
    """A wait gave up; the message names each object that is not ready and why."""


class StuckError(ClusterError):
    """Uninstall left objects behind (finalizers); the message names them."""


class LockedError(ClusterError):
    """Another run holds the cluster's lock."""


def shown(value: object, limit: int = 120) -> str:
    """A value as an error message quotes it (repr), cut short: a 20,000-item list must not flood the output."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({type(value).__name__} of {len(text)} characters)"
