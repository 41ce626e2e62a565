"""What deploy.py needs for one cluster: the checked plan, and (once per run) the closing report.

Bad input of any cluster stops the whole run before anything is changed anywhere: exit code 2 with the
error, never a traceback. After the run (pyinfra's `finally`, when the last cluster disconnects) the closing
lines are printed, one per cluster, and the report is written where `KNFLEET_REPORT` (JSON), `KNFLEET_REPORT_HTML`
(the HTML page) and `KNFLEET_METRICS_FILE` (Prometheus metrics; not for a dry run) name files.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pyinfra.api.state import BaseStateCallback, StateStage

from knfleet.desired import plan
from knfleet.errors import InputError
from knfleet.kube.client import CredentialError
from knfleet.report import outcome, outputs


def prepare(host: Any) -> tuple[plan.Desired, list[plan.Step]]:
    """The cluster's desired state and plan, checked; on bad input: say so and stop the run (exit 2)."""
    try:
        check_target(host)
        d = plan.desired(host.name, host.data)
    except InputError as err:
        host.state.knfleet_bad_input = True  # the closing report has nothing to say
        print(f"knfleet: error: {err}\nknfleet: nothing was changed on any cluster.", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    record = getattr(host.connector, "record", None)
    for w in d.warnings:
        print(f"knfleet: {w}", file=sys.stderr, flush=True)
        if record is not None and w not in record.warnings:
            record.warnings.append(w)
    register_report(host.state, d.action)
    return d, plan.plan(d)


def check_target(host: Any) -> None:
    """The host's kubeconfig exists and loads (context, credentials), and sends no credential over plain http://:
    bad input otherwise, found before any cluster is changed. A failing credential plugin fails that cluster only
    (its preflight names the plugin). Nothing is sent to the cluster here; what is unsafe but allowed
    (insecure-skip-tls-verify) is a warning."""
    conn = host.connector
    if getattr(conn, "input_error", None):
        raise InputError(conn.input_error)
    cluster = getattr(conn, "cluster", None)
    if cluster is None:
        return
    try:
        cluster.connect()
    except CredentialError:
        return  # that cluster's preflight fails with it; the others go on
    record = getattr(conn, "record", None)
    for w in cluster.warnings:
        print(f"knfleet: warning: {w}", file=sys.stderr, flush=True)
        if record is not None and w not in record.warnings:
            record.warnings.append(w)


def by_task(steps: list[plan.Step]) -> list[tuple[str, list[plan.Step]]]:
    """Consecutive steps of the same task, in plan order (a task is one @deploy function in tasks/)."""
    out: list[tuple[str, list[plan.Step]]] = []
    for s in steps:
        if out and out[-1][0] == s.task:
            out[-1][1].append(s)
        else:
            out.append((s.task, [s]))
    return out


class _Report(BaseStateCallback):
    """Prints the closing lines and writes the JSON report once every cluster of the run has disconnected."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.done: set[str] = set()

    def host_disconnect(self, state: Any, host: Any) -> None:  # type: ignore[override]
        self.done.add(host.name)
        if {h.name for h in state.activated_hosts} - self.done:
            return
        if state.current_stage is None or not state.ops or getattr(state, "knfleet_bad_input", False):
            return
        dry = state.current_stage in (StateStage.Setup, StateStage.Connect, StateStage.Prepare)
        results = outcome.outcomes(state, dry=dry)
        text = outcome.lines(results, self.action)
        if text:
            print("\n".join(text), file=sys.stderr, flush=True)
        if getattr(state, "knfleet_rollout", False):
            return  # a rollout's wave: the rollout writes its own report, metrics and page once, at the end
        written = outputs.write_all(
            outcome.report("run", results, action=self.action, dry_run=dry), json_file=os.environ.get("KNFLEET_REPORT"),
            html_file=os.environ.get("KNFLEET_REPORT_HTML"),
            metrics_file=None if dry else os.environ.get("KNFLEET_METRICS_FILE"))
        for what, path in written:
            print(f"knfleet: {what} report: {path}", file=sys.stderr, flush=True)


def register_report(state: Any, action: str) -> None:
    if not any(isinstance(h, _Report) for h in state.callback_handlers):
        state.add_callback_handler(_Report(action))
