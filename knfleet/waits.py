"""Waits for real readiness. On giving up they raise NotReadyError saying why, never only "timed out"."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from knfleet import kubectl, readiness
from knfleet.errors import NotReadyError
from knfleet.kubectl import KubectlError, Target

# Errors the Knative webhook gives while it is starting (NOTES §2, race 2).
WEBHOOK_TRANSIENT = ("failed calling webhook", "connection refused", "EOF", "deadline exceeded", "no endpoints",
                     "i/o timeout", "ServiceUnavailable", "Service Unavailable")


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


KNATIVE_WEBHOOKS = (
    ("mutatingwebhookconfigurations", "webhook.serving.knative.dev"),
    ("validatingwebhookconfigurations", "validation.webhook.serving.knative.dev"),
    ("validatingwebhookconfigurations", "config.webhook.serving.knative.dev"),
)
# A throwaway Knative Service, created only as a server-side dry run: its admission needs Knative's webhook.
PROBE_SERVICE = {
    "apiVersion": "serving.knative.dev/v1", "kind": "Service",
    "metadata": {"name": "knfleet-webhook-probe", "namespace": "knative-serving"},
    "spec": {"template": {"spec": {"containers": [
        {"image": "registry.invalid/knfleet/webhook-probe@sha256:" + "0" * 64}]}}},
}


def webhook_configurations_problem(target: Target) -> str | None:
    """Why Knative's webhook configurations do not prove a running webhook yet: each needs its CA bundle, and
    the resource webhooks their rules (both written by Knative's webhook when it starts)."""
    problems = []
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        found = {o["metadata"]["name"]: o for o in kubectl.get_json(target, kind)["items"]}
        for k, name in KNATIVE_WEBHOOKS:
            if k != kind:
                continue
            obj = found.get(name)
            if obj is None:
                problems.append(f"{kind} {name} is missing")
                continue
            for hook in obj.get("webhooks") or []:
                if not (hook.get("clientConfig") or {}).get("caBundle"):
                    problems.append(f"{name}: no caBundle yet (Knative's webhook writes it when it starts)")
                if name != "config.webhook.serving.knative.dev" and not any(
                        "services" in (r.get("resources") or []) for r in hook.get("rules") or []):
                    problems.append(f"{name}: no rules for Knative Services yet (Knative's webhook writes them)")
    return "; ".join(problems) or None


def webhook_answers(target: Target, timeout: float) -> None:
    """Knative's webhook really answers: its configurations carry the CA bundle and rules it writes itself, and a
    server-side dry-run create of a Knative Service (which must pass its defaulting and validation) succeeds."""
    def check() -> tuple[bool, str]:
        problem = webhook_configurations_problem(target)
        if problem:
            return False, f"Knative's webhook is not serving yet: {problem}"
        proc = kubectl.run(target, "create", "-f", "-", "--dry-run=server", "-o", "name",
                           stdin=json.dumps(PROBE_SERVICE), check=False)
        if proc.returncode == 0:
            return True, ""
        err = (proc.stderr or proc.stdout).strip()
        if any(t in err for t in WEBHOOK_TRANSIENT):
            return False, f"Knative's webhook does not answer yet: {err}"
        raise NotReadyError(f"the Knative webhook check failed: {err}")
    poll(check, timeout, interval=1.0)


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
