"""Waits for real readiness. On giving up they raise NotReadyError saying why, never only "timed out"."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from knfleet import kubectl, readiness
from knfleet.errors import NotReadyError
from knfleet.kubectl import KubectlError, Target

# Errors the Knative webhook gives while it is starting (NOTES §2, race 2).
WEBHOOK_TRANSIENT = ("failed calling webhook", "connection refused", "EOF", "deadline exceeded", "no endpoints",
                     "i/o timeout", "ServiceUnavailable")


def poll(check: Callable[[], tuple[bool, str]], timeout: float, interval: float = 1.0) -> str:
    """Call check() until it returns (True, _); raise NotReadyError with its last explanation."""
    deadline = time.monotonic() + timeout
    why = "not checked"
    while True:
        try:
            ok, why = check()
        except KubectlError as err:
            ok, why = False, str(err)
        if ok:
            return why
        if time.monotonic() >= deadline:
            raise NotReadyError(f"not ready after {timeout:.0f}s:\n{why}")
        time.sleep(interval)


def _items(target: Target, *args: str) -> list[dict[str, Any]]:
    return kubectl.get_json(target, *args)["items"]


def crds_established(target: Target, selector: str, timeout: float) -> None:
    def check() -> tuple[bool, str]:
        crds = _items(target, "crd", "-l", selector)
        bad = [readiness.crd_problem(c) for c in crds if not readiness.is_true(c, "Established")]
        if not crds:
            return False, f"no CRD with label {selector}"
        return not bad, "\n".join(bad)
    poll(check, timeout)


def deployments_available(target: Target, namespace: str, timeout: float) -> None:
    def check() -> tuple[bool, str]:
        deps = _items(target, "deployments", "-n", namespace)
        bad = [d for d in deps if not readiness.deployment_available(d)]
        if not bad:
            return bool(deps), f"no deployments in {namespace}"
        pods = _items(target, "pods", "-n", namespace)
        events = _items(target, "events", "-n", namespace)
        return False, "\n".join(readiness.deployment_problem(d, pods, events) for d in bad)
    poll(check, timeout, interval=1.0)


def pods_ready(target: Target, namespaces: tuple[str, ...], timeout: float) -> None:
    """Every pod (Job pods left out: they complete, they are never Ready) of the namespaces is Ready."""
    def check() -> tuple[bool, str]:
        problems: list[str] = []
        for ns in namespaces:
            pods = [p for p in _items(target, "pods", "-n", ns) if not readiness.is_job_pod(p)
                    and not (p.get("metadata") or {}).get("deletionTimestamp")]
            bad = [p for p in pods if not readiness.pod_ready(p)]
            if bad:
                events = _items(target, "events", "-n", ns)
                problems += [readiness.pod_problem(p, events) for p in bad]
            elif not pods:
                problems.append(f"no pods in {ns}")
        return not problems, "\n".join(problems)
    poll(check, timeout)


def webhook_answers(target: Target, timeout: float) -> None:
    """The Knative webhook really answers: a server-side dry-run patch of config-network succeeds."""
    def check() -> tuple[bool, str]:
        proc = kubectl.run(target, "patch", "configmap", "config-network", "-n", "knative-serving",
                           "--type=merge", "-p", '{"data":{}}', "--dry-run=server", check=False)
        if proc.returncode == 0:
            return True, ""
        err = (proc.stderr or proc.stdout).strip()
        if any(t in err for t in WEBHOOK_TRANSIENT):
            return False, f"webhook not answering yet: {err}"
        raise NotReadyError(f"the Knative webhook check failed: {err}")
    poll(check, timeout, interval=2.0)


def gone(target: Target, kinds: str, selector: str | None, timeout: float) -> None:
    """No object of `kinds` (comma-separated) remains (optionally matching a label selector)."""
    def check() -> tuple[bool, str]:
        args = ["get", kinds, "-A", "-o", "name", "--ignore-not-found"]
        if selector:
            args += ["-l", selector]
        left = kubectl.run(target, *args).stdout.split()
        return not left, "still present: " + ", ".join(left)
    poll(check, timeout)


def services_ready(target: Target, refs: tuple[str, ...], timeout: float) -> None:
    """Every Knative Service ("ns/name") is ready for its current generation; else Knative's reasons."""
    def check() -> tuple[bool, str]:
        found = {readiness.name_of(o): o for o in _items(target, "ksvc", "-A")}
        problems = []
        for ref in refs:
            obj = found.get(ref)
            if obj is None:
                problems.append(f"ksvc {ref}: not found")
            elif not readiness.service_ready(obj):
                problems.append(readiness.service_problem(obj))
        return not problems, "\n".join(problems)
    poll(check, timeout)
