"""Knative's admission webhook: is it really serving, and the one repair knfleet makes around it."""

from __future__ import annotations

import time
from collections.abc import Callable

from knfleet.kube.client import Cluster, KubeError, Unreachable, WebhookUnavailable

KNATIVE_WEBHOOKS = (
    ("MutatingWebhookConfiguration", "webhook.serving.knative.dev"),
    ("ValidatingWebhookConfiguration", "validation.webhook.serving.knative.dev"),
    ("ValidatingWebhookConfiguration", "config.webhook.serving.knative.dev"),
)
CONFIG_WEBHOOK = "config.webhook.serving.knative.dev"
ADMISSION = "admissionregistration.k8s.io/v1"
# A throwaway Knative Service, created only as a server-side dry run: its admission needs Knative's webhook.
PROBE_SERVICE = {
    "apiVersion": "serving.knative.dev/v1", "kind": "Service",
    "metadata": {"name": "knfleet-webhook-probe", "namespace": "knative-serving"},
    "spec": {"template": {"spec": {"containers": [
        {"image": "registry.invalid/knfleet/webhook-probe@sha256:" + "0" * 64}]}}},
}


def configurations_problem(cluster: Cluster) -> str | None:
    """Why Knative's webhook configurations do not prove a running webhook yet: each needs its CA bundle, and the
    resource webhooks their rules (both written by Knative's webhook when it starts). None when they do."""
    problems = []
    for kind, name in KNATIVE_WEBHOOKS:
        obj = next((o for o in cluster.list(ADMISSION, kind) if o["metadata"]["name"] == name), None)
        if obj is None:
            problems.append(f"{kind} {name} is missing")
            continue
        for hook in obj.get("webhooks") or []:
            if not (hook.get("clientConfig") or {}).get("caBundle"):
                problems.append(f"{name}: no caBundle yet (Knative's webhook writes it when it starts)")
            if name != CONFIG_WEBHOOK and not any("services" in (r.get("resources") or [])
                                                  for r in hook.get("rules") or []):
                problems.append(f"{name}: no rules for Knative Services yet (Knative's webhook writes them)")
    return "; ".join(problems) or None


def serving(cluster: Cluster) -> tuple[bool, str]:
    """(serving?, why): the configurations carry what Knative's webhook writes, and a server-side dry-run create of
    a Knative Service passes its defaulting and validation. (A dry run through the config webhook, which ships
    without rules, would pass with no webhook running.)"""
    problem = configurations_problem(cluster)
    if problem:
        return False, f"Knative's webhook is not serving yet: {problem}"
    try:
        cluster.create(PROBE_SERVICE, dry_run=True)
    except (WebhookUnavailable, Unreachable) as err:
        return False, f"Knative's webhook does not answer yet: {err}"
    return True, "Knative's webhook answers"


def apply_config_repairing(cluster: Cluster, objects: list[dict], log: Callable[[str], None],
                           retry_s: float = 60.0, pause: float = 1.0) -> list[dict]:
    """Apply the config ConfigMaps. When Knative's config webhook cannot be called (its pods crash-loop, for
    example on a value stored before that webhook existed, or it does not answer within its timeout), take the
    rules that route ConfigMaps to it off: they are Knative's (its webhook writes them at start-up and puts them
    back once it runs again), and without this no corrected ConfigMap could ever be stored. The values themselves
    were checked as Knative parses them. The API server sees the changed configuration a moment later (an
    informer), and a webhook that runs puts its rules back at once: so the apply is tried again, the rules taken
    off again whenever they are back, until it gets through or `retry_s` has passed."""
    deadline = time.monotonic() + retry_s
    results = cluster.apply_many(objects)
    said: set[str] = set()
    while True:
        blocked = [r for r in results if isinstance(r, WebhookUnavailable) and CONFIG_WEBHOOK in r.message]
        if not blocked or time.monotonic() >= deadline:
            break
        if _rules(cluster):
            what = f"{CONFIG_WEBHOOK} has its rules back; taking them off again" if "off" in said else (
                f"Knative's config webhook does not answer ({blocked[0].message[-200:]}); taking its rules off "
                f"{CONFIG_WEBHOOK} so the corrected ConfigMaps can be stored (Knative's webhook restores them when "
                "it runs)")
            said.add("off")
            cluster.patch(ADMISSION, "ValidatingWebhookConfiguration", CONFIG_WEBHOOK, None,
                          [{"op": "replace", "path": "/webhooks/0/rules", "value": []}], patch_type="json")
        elif "stale" not in said:
            said.add("stale")
            what = f"the API server still calls {CONFIG_WEBHOOK} (it sees its rules gone a moment later); retrying"
        else:
            what = ""
        if what:
            log(what)
        time.sleep(pause)
        results = cluster.apply_many(objects)
    errors = [r for r in results if isinstance(r, KubeError)]
    if errors:
        raise errors[0]
    return results


def _rules(cluster: Cluster) -> list[dict]:
    """The config webhook's rules as stored now (none when the configuration is gone)."""
    obj = cluster.get(ADMISSION, "ValidatingWebhookConfiguration", CONFIG_WEBHOOK)
    hooks = (obj or {}).get("webhooks") or [{}]
    return hooks[0].get("rules") or []
