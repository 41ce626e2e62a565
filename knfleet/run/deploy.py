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
from knfleet.run import heap, oporder


def prepare(host: Any) -> tuple[plan.Desired, list[plan.Step]]:
    """The cluster's desired state and plan, checked; on bad input: say so and stop the run (exit 2)."""
    oporder.install()  # pyinfra's per-operation stack walk, without reading every frame's source (fleet scale)
    heap.install(host.state)  # fewer garbage collections over a fleet's cached lists
    closing = report_of(host.state)
    try:
        check_target(host)
        d = plan.desired(host.name, host.data)
    except InputError as err:
        closing.bad_input = True  # the closing report has nothing to say
        print(f"knfleet: error: {err}\nknfleet: nothing was changed on any cluster.", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    run = getattr(host.connector, "run", None)
    for w in d.warnings:
        print(f"knfleet: {w}", file=sys.stderr, flush=True)
        if run is not None:
            run.record.warn(w)
    closing.action = d.action
    return d, plan.plan(d)


def check_target(host: Any) -> None:
    """The host's kubeconfig exists and loads (context, credentials), and sends no credential over plain http://:
    bad input otherwise, found before any cluster is changed. A failing credential plugin fails that cluster only
    (its preflight names the plugin). Nothing is sent to the cluster here; what is unsafe but allowed
    (insecure-skip-tls-verify) is a warning."""
    run = getattr(host.connector, "run", None)
    if run is None:
        return
    if run.input_error:
        raise InputError(run.input_error)
    if run.cluster is None:
        return
    try:
        run.cluster.connect()
    except CredentialError:
        return  # that cluster's preflight fails with it; the others go on
    for w in run.cluster.warnings:
        print(f"knfleet: warning: {w}", file=sys.stderr, flush=True)
        run.record.warn(w)


def by_task(steps: list[plan.Step]) -> list[tuple[str, list[plan.Step]]]:
    """Consecutive steps of the same task, in plan order (a task is one @deploy function in tasks/)."""
    out: list[tuple[str, list[plan.Step]]] = []
    for s in steps:
        if out and out[-1][0] == s.task:
            out[-1][1].append(s)
        else:
            out.append((s.task, [s]))
    return out


class ClosingReport(BaseStateCallback):
    """Prints the closing lines and writes the JSON report once every cluster of the run has disconnected. A
    rollout's wave (`write_files=False`) only prints: the rollout writes its report, metrics and page once."""

    def __init__(self, write_files: bool = True) -> None:
        self.action = "install"
        self.write_files = write_files
        self.bad_input = False
        self.done: set[str] = set()

    def host_disconnect(self, state: Any, host: Any) -> None:  # type: ignore[override]
        self.done.add(host.name)
        if {h.name for h in state.activated_hosts} - self.done:
            return
        if state.current_stage is None or not state.ops or self.bad_input:
            return
        dry = state.current_stage in (StateStage.Setup, StateStage.Connect, StateStage.Prepare)
        results = outcome.outcomes(state, dry=dry)
        text = outcome.lines(results, self.action)
        if text:
            print("\n".join(text), file=sys.stderr, flush=True)
        if not self.write_files:
            return
        written = outputs.write_all(
            outcome.report("run", results, action=self.action, dry_run=dry), json_file=os.environ.get("KNFLEET_REPORT"),
            html_file=os.environ.get("KNFLEET_REPORT_HTML"),
            metrics_file=None if dry else os.environ.get("KNFLEET_METRICS_FILE"))
        for what, path in written:
            print(f"knfleet: {what} report: {path}", file=sys.stderr, flush=True)


def report_of(state: Any, write_files: bool = True) -> ClosingReport:
    """The run's closing report (registered with pyinfra's state on first use)."""
    for h in state.callback_handlers:
        if isinstance(h, ClosingReport):
            return h
    closing = ClosingReport(write_files)
    state.add_callback_handler(closing)
    return closing
