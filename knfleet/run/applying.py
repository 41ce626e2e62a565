"""Apply a stage's objects that differ (server-side apply, field manager knfleet) and pass the gates between stages.

`--dry` therefore names every object that differs and changes nothing. Gates look first too: they only wait, and
count as a change, when something is not ready yet.
"""

from __future__ import annotations

import time
from typing import Any

from pyinfra import host, logger
from pyinfra.api import operation

from knfleet.desired import plan as p
from knfleet.errors import KnfleetError, NotReadyError, Reason
from knfleet.kube import diff, readiness, wait, webhook
from knfleet.kube.client import Cluster, KubeError, WebhookUnavailable, ref
from knfleet.report.records import ClusterRun
from knfleet.run import coldstart
from knfleet.run.context import cluster as current_cluster
from knfleet.run.context import command, executing, fail, say, state, unchanged, warn


def apply_objects(cluster: Cluster, records: diff.Records, objects: list[dict[str, Any]], what: str,
                  webhook_retry: float = 0, repair_config: bool = False) -> list[str]:
    """Server-side apply of `objects` (concurrently), retrying while Knative's webhook (re)starts; noted in
    knfleet's notes. The refs applied; a KnfleetError naming each object that was not."""
    log = lambda m: logger.warning(f"{host.print_prefix}{m}")  # noqa: E731
    if repair_config:
        results = webhook.apply_config_repairing(cluster, objects, log, webhook_retry)
    else:
        deadline = time.monotonic() + webhook_retry
        while True:
            results = cluster.apply_many(objects)
            waiting = [r for r in results if isinstance(r, WebhookUnavailable)]
            if not waiting or time.monotonic() >= deadline:
                break
            log(f"{what}: Knative's webhook does not answer yet ({waiting[0].message[-160:]}); retrying")
            time.sleep(2)
        errors = [r for r in results if isinstance(r, KubeError)]
        if errors:
            raise errors[0] if len(errors) == 1 else KnfleetError(
                f"{len(errors)} object(s) not applied:\n  " + "\n  ".join(str(e) for e in errors), code=errors[0].code)
    for obj, live in zip(objects, results, strict=True):
        records.remember(obj, live)
    records.save(cluster)
    return [ref(o) for o in objects]


@operation()
def apply(step: p.Apply):
    """Server-side apply (field manager knfleet, force) of the stage's objects that differ from the cluster; none
    when all match (knfleet.kube.diff: its notes first, a dry run where they do not settle it)."""
    t0 = time.monotonic()
    cluster = current_cluster()
    records = state().records()
    try:
        if step.prefetch:
            cluster.list_many([(v, k, ns if ns and cluster.resource(v, k).namespaced else None, None)
                               for v, k, ns in step.prefetch if cluster.has(v, k)])
        drifted = diff.drift(cluster, step.objects, records, learn=executing())
    except KubeError as err:
        yield fail(step.title, f"cannot compare {step.stage} with the cluster: {err}", err.code)
        return
    if executing():
        try:
            records.save(cluster)
        except KubeError:
            pass  # bookkeeping only: the next run compares by dry run again
    if not drifted:
        unchanged(step.title, f"{step.stage}: in sync ({len(step.objects)} objects)", t0)
        return
    shown = [str(d) for d in drifted]
    say(f"{step.stage}: {len(shown)} object(s) differ: " + ", ".join(shown[:8]) + (" …" if len(shown) > 8 else ""))
    text, objects = diff.describe(step.stage, drifted)  # each changed field and its last writer (--dry shows them)
    for line in text:
        say(f"  {line}")
    state().record.keep_changes(step.stage, objects)
    wanted = {d.ref for d in drifted}
    for what, note in step.notes:
        if what in wanted:
            say(note)
    yield command(step.title, apply_objects, cluster, records, [o for o in step.objects if ref(o) in wanted],
                  step.stage, step.webhook_retry, step.repair_config)


def wait_ready(cluster: Cluster, check: Any, timeout: int, rec: ClusterRun | None = None) -> list[str]:
    """Wait for a check (short polls on the pooled connection: a look costs a list or two, as `kubectl wait`);
    on giving up, the nodes that cannot run pods are named too."""
    try:
        wait.until_ready(cluster, check, timeout)
    except NotReadyError as err:
        code = Reason.WEBHOOK_NOT_READY if isinstance(check, p.WebhookServing) else Reason.NOT_READY
        raise NotReadyError(with_nodes(cluster, str(err)), code=code) from None
    if rec is not None:
        note_new_revisions(cluster, check, rec)
    return []


def note_new_revisions(cluster: Cluster, check: Any, rec: ClusterRun | None = None) -> None:
    """Once the model services are Ready: the cold starts of the revisions this run created (run.coldstart). A run
    that changed no model service created no revision: nothing is read (a no-op run costs no request per service)."""
    if isinstance(check, p.ServicesReady):
        rec = rec or state().record
        if not services_changed(rec):
            return
        rec.cold_starts += coldstart.new_revisions(cluster, check.refs, rec.started)


def services_changed(rec: ClusterRun) -> bool:
    """Whether this run applied (or would apply) a change to a model service."""
    return any(c.get("stage") == "services" for c in rec.changes)


def with_nodes(cluster: Cluster, message: str) -> str:
    """A wait's message with the nodes that cannot run pods named: in its first line (the closing line shows it)
    and one line each at its end. Unchanged when every node is Ready or the nodes cannot be listed."""
    try:
        cluster.invalidate()
        short, lines = readiness.nodes_note(cluster.list(*readiness.NODE))
    except KubeError:
        return message
    if not short:
        return message
    head, _, rest = message.partition("\n")
    return f"{head.rstrip(':')} ({short}):\n{rest}\n{lines}"


def look(cluster: Cluster, check: Any) -> tuple[bool, str]:
    """One look at a readiness check, before deciding whether to wait: what this run read in the last seconds (writes
    clear it) is fresh enough; an API error is a "not ready" whose reason the wait then gives."""
    cluster.expire(5.0)
    try:
        return readiness.evaluate(cluster, check)
    except KubeError as err:
        return False, str(err)


@operation()
def gate(step: p.Gate):
    """Look once; wait (polling the same connection) only when something is not ready. On giving up, the error
    names each object and why."""
    t0 = time.monotonic()
    cluster = current_cluster()
    ready, why = look(cluster, step.check)
    if ready:
        if why.startswith("warning: "):
            warn(why)
        if executing():
            note_new_revisions(cluster, step.check)
        unchanged(step.title, why, t0)
        return
    yield command(step.title, wait_ready, cluster, step.check, step.timeout, state().record)
