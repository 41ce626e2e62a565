"""The config stage's repair when Knative's config webhook cannot be called: its rules are taken off, and the
apply is tried again until it gets through, since the API server sees the changed configuration a moment later
and a running webhook puts its rules back. (The crash-looping webhook it exists for is shown on a real cluster:
test_a_broken_stored_config_that_crash_loops_knative_is_repaired_by_the_next_run in
tests/integration/test_with_real_knative.py.)

The cluster here is a script of answers to the three calls the repair makes, not an API server."""

from __future__ import annotations

from typing import Any

import pytest

from knfleet.kube import webhook
from knfleet.kube.client import Invalid, WebhookUnavailable

HOOK = webhook.CONFIG_WEBHOOK
RULES = [{"operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}]
OBJECTS = [{"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config-domain", "namespace": "knative-serving"}}]


def blocked() -> WebhookUnavailable:
    return WebhookUnavailable("c", "apply ConfigMap/knative-serving/config-domain", 500, "InternalError",
                              f'Internal error occurred: failed calling webhook "{HOOK}": context deadline exceeded')


class Script:
    """apply_many answers from `applies` in turn, get the rules from `rules` in turn (in both, the last repeats)."""

    def __init__(self, applies: list[Any], rules: list[list[dict]]) -> None:
        self.applies, self.rules = applies, rules
        self.calls: list[str] = []

    def apply_many(self, objects: list[dict]) -> list[Any]:
        self.calls.append("apply")
        answer = self.applies.pop(0) if len(self.applies) > 1 else self.applies[0]
        return [answer] * len(objects)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        self.calls.append("get")
        rules = self.rules.pop(0) if len(self.rules) > 1 else self.rules[0]
        return {"webhooks": [{"name": name, "rules": rules}]}

    def patch(self, api_version: str, kind: str, name: str, namespace: str | None, body: Any,
              patch_type: str) -> dict:
        assert (kind, name, body) == ("ValidatingWebhookConfiguration", HOOK,
                                      [{"op": "replace", "path": "/webhooks/0/rules", "value": []}])
        self.calls.append("rules off")
        return {}


def repair(cluster: Script, retry_s: float = 5.0) -> tuple[list[Any], list[str]]:
    said: list[str] = []
    return webhook.apply_config_repairing(cluster, OBJECTS, said.append, retry_s, pause=0), said


def test_a_config_that_gets_through_touches_no_webhook_configuration():
    cluster = Script([{"kind": "ConfigMap"}], [RULES])
    results, said = repair(cluster)
    assert results == [{"kind": "ConfigMap"}] and cluster.calls == ["apply"] and not said


def test_the_rules_come_off_and_the_apply_gets_through():
    cluster = Script([blocked(), {"kind": "ConfigMap"}], [RULES])
    results, said = repair(cluster)
    assert results == [{"kind": "ConfigMap"}]
    assert cluster.calls == ["apply", "get", "rules off", "apply"]
    assert len(said) == 1 and f"taking its rules off {HOOK}" in said[0] and "context deadline exceeded" in said[0]


def test_an_api_server_that_still_calls_the_webhook_a_moment_later_is_waited_for():
    """The failure of the CI run of stop 18: the apply right after the patch was refused again, and the run
    failed, because the API server had not yet seen the rules go."""
    cluster = Script([blocked(), blocked(), blocked(), {"kind": "ConfigMap"}], [RULES, [], []])
    results, said = repair(cluster)
    assert results == [{"kind": "ConfigMap"}]
    assert cluster.calls == ["apply", "get", "rules off", "apply", "get", "apply", "get", "apply"]
    assert len(said) == 2 and "still calls" in said[1]  # said once, not per attempt


def test_rules_a_running_webhook_put_back_are_taken_off_again():
    cluster = Script([blocked(), blocked(), {"kind": "ConfigMap"}], [RULES, RULES])
    results, said = repair(cluster)
    assert cluster.calls == ["apply", "get", "rules off", "apply", "get", "rules off", "apply"]
    assert "has its rules back" in said[1]


def test_a_webhook_that_blocks_past_the_deadline_fails_the_step_naming_it():
    # blocked for good (a fixed number of answers ran out before the deadline on a fast, idle machine)
    cluster = Script([blocked()], [RULES, []])
    with pytest.raises(WebhookUnavailable, match=HOOK):
        repair(cluster, retry_s=0.05)


def test_other_refusals_are_not_retried():
    refused = Invalid("c", "apply ConfigMap/knative-serving/config-domain", 422, "Invalid", "bad")
    cluster = Script([refused], [RULES])
    with pytest.raises(Invalid):
        repair(cluster)
    assert cluster.calls == ["apply"]
