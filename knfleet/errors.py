"""Errors knfleet raises: one root, so a caller can catch everything knfleet means to say. Each message says
what, where, why and what to do; each error carries a typed reason (`Reason`, as its `code`), which the JSON
report keeps beside the message, as Flux's conditions do, so that scripts and tests read the reason, not the
text."""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    """Why a cluster's run failed, in one word (the JSON report's `failures[].reason`)."""

    BAD_INPUT = "BadInput"  # group/host data, inventory, bundle or models refused before any change
    PREFLIGHT_FAILED = "PreflightFailed"  # API version, rights
    UNREACHABLE = "Unreachable"  # no answer from the API server
    LOCKED = "Locked"  # another run holds the cluster's lock
    LOCK_LOST = "LockLost"  # this run lost the lock while it ran
    CAPACITY_SHORTFALL = "CapacityShortfall"  # not enough GPUs for what the run would start
    UPGRADE_REFUSED = "UpgradeRefused"  # a downgrade or a skipped minor version
    API_ERROR = "ApiError"  # the API server refused a request
    WEBHOOK_NOT_READY = "WebhookNotReady"  # an admission webhook could not be called
    NOT_READY = "NotReady"  # a wait gave up
    JOB_FAILED = "JobFailed"  # a post-install Job failed
    PREPULL_FAILED = "PrepullFailed"  # a model's (or queue-proxy's) image did not reach every eligible node in time
    SMOKE_FAILED = "SmokeFailed"  # a model service did not answer the chat request as it should
    ROLLOUT_CHECK_FAILED = "RolloutCheckFailed"  # a new model version failed its checks and was rolled back
    ROLLOUT_FAILED = "RolloutFailed"  # a rollout could not go on (not a check: a revision, a conflict)
    GUARD_REFUSED = "GuardRefused"  # an uninstall would destroy objects knfleet did not make
    OWNERSHIP_REFUSED = "OwnershipRefused"  # a model service exists that knfleet did not create (no adopt: true)
    STUCK = "Stuck"  # objects left behind by finalizers
    STOPPED = "Stopped"  # the run was asked to stop (SIGTERM) and stopped before its next write or wait
    FAILED = "Failed"  # anything else


class KnfleetError(Exception):
    """Anything knfleet reports as a failure with a message a user can act on."""

    code: Reason = Reason.FAILED  # (`reason` is Kubernetes' own word in a KubeError)

    def __init__(self, *args: object, code: Reason | None = None) -> None:
        super().__init__(*args)
        if code is not None:
            self.code = code


class InputError(KnfleetError, ValueError):
    """Bad input (group/host data, inventory, bundle, models): nothing was changed on any cluster. Exit code 2."""

    code = Reason.BAD_INPUT


class ClusterError(KnfleetError):
    """Something on one cluster failed (it is reported for that cluster; the others go on)."""


class NotReadyError(ClusterError):
    """A wait gave up; the message names each object that is not ready and why."""

    code = Reason.NOT_READY


class StuckError(ClusterError):
    """Uninstall left objects behind (finalizers); the message names them."""

    code = Reason.STUCK


class LockedError(ClusterError):
    """Another run holds the cluster's lock."""

    code = Reason.LOCKED


def shown(value: object, limit: int = 120) -> str:
    """A value as an error message quotes it (repr), cut short: a 20,000-item list must not flood the output."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({type(value).__name__} of {len(text)} characters)"
