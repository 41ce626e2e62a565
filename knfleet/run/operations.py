"""knfleet's pyinfra operations: one per kind of plan step, each against one cluster (one host).

Like pyinfra's own operations, each first looks (read-only, through the cluster's client) and yields a
command only when the cluster must change; otherwise it reports no change (`host.noop`). `--dry` therefore
names every object that differs and changes nothing. Gates look first too: they only wait, and count as a
change, when something is not ready yet. What each step did is kept in the cluster's record (its connector),
from which the report is built after the run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation

from knfleet.desired import plan as p
from knfleet.desired import releases
from knfleet.errors import KnfleetError, LockedError, NotReadyError, StuckError
from knfleet.kube import diff, readiness, webhook
from knfleet.kube.client import Cluster, KubeError, WebhookUnavailable, poll, ref
from knfleet.report.outcome import ClusterRun
from knfleet.run import lock, smoke

KSVC = ("serving.knative.dev/v1", "Service")


# --- context --------------------------------------------------------------------------------------------------
def _cluster() -> Cluster:
    return host.connector.cluster


def _record() -> ClusterRun:
    return host.connector.record


def _records(cluster: Cluster) -> diff.Records:
    """knfleet's notes of what it applied on this cluster, read once per run (kept on the connector)."""
    conn = host.connector
    if getattr(conn, "records", None) is None:
        conn.records = diff.Records.load(cluster)
    return conn.records


def _executing() -> bool:
    return bool(host.state.is_executing)


def command(title: str, fn: Callable[..., Any], *args: Any) -> FunctionCommand:
    """A command running fn(*args) on this machine. What it returns (the objects it changed) and how long it took
    go into the cluster's record; a knfleet error fails the cluster with its message."""
    def run(state: Any, host: Any) -> bool:  # noqa: ARG001 - pyinfra passes its State and Host
        record: ClusterRun = host.connector.record
        t0 = time.monotonic()
        renewer = getattr(host.connector, "renewer", None)
        try:
            if renewer is not None and renewer.lost:
                raise LockedError(f"this run lost the cluster's lock ({renewer.lost}); stopped before {title}")
            changed = fn(*args)
        except KnfleetError as err:
            record.error(title, str(err))
            record.step(title, "failed", t0, note=str(err).splitlines()[0][:300])
            host.log_styled(f"{title} failed: {err}", fg="red", log_func=logger.error)
            return False
        record.step(title, "changed", t0, objects=list(changed or []))
        return True
    run.__name__ = title.replace(" ", "_")
    return FunctionCommand(run, (), {})


def fail(title: str, message: str) -> FunctionCommand:
    def raise_it() -> None:
        raise KnfleetError(message)
    return command(title, raise_it)


def unchanged(title: str, why: str, t0: float) -> None:
    """No change: say why (pyinfra's noop), and keep the step's time in the record when executing."""
    host.noop(why)
    if _executing():
        _record().step(title, "ok", t0, note=why)


# --- the run ------------------------------------------------------------------------------------------------------
def parse_version(text: str) -> tuple[int, int]:
    core = text.lstrip("v").split("-")[0].split("+")[0].split(".")
    return int(core[0]), int("".join(ch for ch in core[1] if ch.isdigit()) or 0)


def missing_rights(cluster: Cluster, rights: tuple[p.Right, ...]) -> list[str]:
    """Which rights the identity lacks (SelfSubjectAccessReviews, concurrently). One review of `*` on `*` first:
    an identity allowed everything (cluster-admin) costs a single request."""
    def review(r: p.Right) -> dict[str, Any]:
        attrs = {"verb": r.verb, "group": r.group, "resource": r.resource, "namespace": r.namespace,
                 "subresource": r.subresource}
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {k: v for k, v in attrs.items() if v}}}

    everything = cluster.create(review(p.Right("*", "*", "*")))
    if (everything.get("status") or {}).get("allowed"):
        return []
    bodies = [review(r) for r in rights]
    answers = cluster._parallel([lambda b=b: cluster.create(b) for b in bodies])
    denied = []
    for right, answer in zip(rights, answers, strict=True):
        if isinstance(answer, KubeError):
            denied.append(f"{right} (access review failed: {answer})")
        elif not (answer.get("status") or {}).get("allowed"):
            denied.append(str(right))
    return denied


@operation()
def preflight(step: p.Preflight):
    """Before anything changes: the API answers, Kubernetes >= the target release's minimum (the plan's step says
    which), and the identity has the rights the install needs (one access review each, concurrently)."""
    t0 = time.monotonic()
    cluster = _cluster()
    try:
        version = cluster.version()
    except KubeError as err:
        yield fail("preflight", f"API server not reachable with {cluster.target.kubeconfig}: {err}")
        return
    too_old = releases.kubernetes_too_old(version, step.min_kubernetes, step.release)  # the release's minimum
    if too_old:
        yield fail("preflight", too_old)
        return
    if step.rights:
        try:
            denied = missing_rights(cluster, step.rights)
        except KubeError as err:
            yield fail("preflight", f"cannot check the identity's rights: {err}")
            return
        if denied:
            yield fail("preflight", f"the identity in {cluster.target.kubeconfig} lacks {len(denied)} right(s) this "
                                    f"run needs: {'; '.join(denied)}. Grant them (cluster-admin has them all); "
                                    "nothing was changed")
            return
    unchanged(step.title, f"cluster reachable, Kubernetes {version}" + (", rights ok" if step.rights else ""), t0)


@operation()
def take_lock(step: p.Lock):
    """Take the cluster's lock (Lease kube-system/knfleet-lock) before anything changes it; released when the run
    ends (the connector's disconnect). Bookkeeping, not a change of the cluster's desired state."""
    t0 = time.monotonic()
    if not _executing():
        host.noop("the lock is taken when the run executes")
        return
    conn = host.connector
    holder = conn.lock_holder or lock.new_holder()
    try:
        how = lock.acquire(conn.cluster, holder, ttl=step.ttl, wait=step.wait,
                           log=lambda m: logger.warning(f"{host.print_prefix}{m}"))
    except LockedError as err:
        conn.record.locked_by = str(err)
        yield fail("lock", str(err))
        return
    except KubeError as err:
        yield fail("lock", f"cannot take the lock: {err}")
        return
    conn.lock_holder = holder
    if getattr(conn, "renewer", None) is None:
        conn.renewer = lock.Renewer(conn.cluster, holder, step.ttl).start()
    unchanged(step.title, how, t0)


# --- apply ----------------------------------------------------------------------------------------------------------
def _apply_objects(cluster: Cluster, records: diff.Records, step: p.Apply, objects: list[dict[str, Any]]) -> list[str]:
    log = lambda m: logger.warning(f"{host.print_prefix}{m}")  # noqa: E731
    if step.repair_config:
        results = webhook.apply_config_repairing(cluster, objects, log, step.webhook_retry)
    else:
        deadline = time.monotonic() + step.webhook_retry
        while True:
            results = cluster.apply_many(objects)
            waiting = [r for r in results if isinstance(r, WebhookUnavailable)]
            if not waiting or time.monotonic() >= deadline:
                break
            log(f"{step.stage}: Knative's webhook does not answer yet ({waiting[0].message[-160:]}); retrying")
            time.sleep(2)
        errors = [r for r in results if isinstance(r, KubeError)]
        if errors:
            raise errors[0] if len(errors) == 1 else KnfleetError(
                f"{len(errors)} object(s) not applied:\n  " + "\n  ".join(str(e) for e in errors))
    for obj, live in zip(objects, results, strict=True):
        records.remember(obj, live)
    records.save(cluster)
    return [ref(o) for o in objects]


@operation()
def apply(step: p.Apply):
    """Server-side apply (field manager knfleet, force) of the stage's objects that differ from the cluster; none
    when all match (knfleet.kube.diff: its notes first, a dry run where they do not settle it)."""
    t0 = time.monotonic()
    cluster = _cluster()
    records = _records(cluster)
    try:
        if step.prefetch:
            cluster.list_many([(v, k, ns if ns and cluster.resource(v, k).namespaced else None, None)
                               for v, k, ns in step.prefetch if cluster.has(v, k)])
        drifted = diff.drift(cluster, step.objects, records, learn=_executing())
    except KubeError as err:
        yield fail(step.title, f"cannot compare {step.stage} with the cluster: {err}")
        return
    if _executing():
        try:
            records.save(cluster)
        except KubeError:
            pass  # bookkeeping only: the next run compares by dry run again
    if not drifted:
        unchanged(step.title, f"{step.stage}: in sync ({len(step.objects)} objects)", t0)
        return
    shown = [str(d) for d in drifted]
    logger.info(f"{host.print_prefix}{step.stage}: {len(shown)} object(s) differ: " + ", ".join(shown[:8])
                + (" …" if len(shown) > 8 else ""))
    wanted = {d.ref for d in drifted}
    yield command(step.title, _apply_objects, cluster, records, step,
                  [o for o in step.objects if ref(o) in wanted])


# --- gates ----------------------------------------------------------------------------------------------------------
def _wait(cluster: Cluster, check: Any, timeout: int) -> list[str]:
    # Short polls on the pooled connection: a look costs a list or two, and `kubectl wait` answers as fast.
    try:
        poll(lambda: readiness.evaluate(cluster, check), timeout, interval=0.25, cluster=cluster)
    except NotReadyError as err:
        raise NotReadyError(_with_nodes(cluster, str(err))) from None
    return []


def _with_nodes(cluster: Cluster, message: str) -> str:
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


@operation()
def gate(step: p.Gate):
    """Look once; wait (polling the same connection) only when something is not ready. On giving up, the error
    names each object and why."""
    t0 = time.monotonic()
    cluster = _cluster()
    cluster.expire(5.0)  # what this run read in the last seconds (writes clear it) is fresh enough to look at
    try:
        ready, why = readiness.evaluate(cluster, step.check)
    except KubeError as err:
        ready, why = False, str(err)
    if ready:
        if why.startswith("warning: "):
            logger.warning(f"{host.print_prefix}{why}")
            _record().warnings.append(why[len("warning: "):])
        unchanged(step.title, why, t0)
        return
    yield command(step.title, _wait, cluster, step.check, step.timeout)


# --- model services ------------------------------------------------------------------------------------------------
def _delete_and_wait(cluster: Cluster, refs: list[str], timeout: int) -> list[str]:
    for r in refs:
        ns, name = r.split("/", 1)
        cluster.delete(*KSVC, name, ns)

    def gone() -> tuple[bool, str]:
        left = [r for r in refs if cluster.get(*KSVC, r.split("/", 1)[1], r.split("/", 1)[0]) is not None]
        return not left, "still present: " + ", ".join(left)
    poll(gone, timeout, interval=0.5, cluster=cluster)
    return [f"Service/{r} (deleted)" for r in refs]


@operation()
def prune(step: p.Prune):
    """Delete the Knative Services knfleet deployed (its label) that group data no longer has. Services knfleet
    does not manage are never touched."""
    t0 = time.monotonic()
    cluster = _cluster()
    if not cluster.has(*KSVC):
        unchanged(step.title, "no Knative Service CRD", t0)
        return
    managed = cluster.list(*KSVC, selector=step.selector)
    gone = sorted(readiness.name_of(o) for o in managed if readiness.name_of(o) not in step.keep)
    if not gone:
        unchanged(step.title, "no removed model service to delete", t0)
        return
    logger.info(f"{host.print_prefix}removed from group data: {', '.join(gone)}")
    yield command(step.title, _delete_and_wait, cluster, gone, step.timeout)


def _revision_at_zero(cluster: Cluster, ns: str, revision: str | None) -> bool:
    if not revision:
        return False
    dep = cluster.get("apps/v1", "Deployment", f"{revision}-deployment", ns)
    return dep is not None and int((dep.get("status") or {}).get("readyReplicas") or 0) == 0


KOURIER_INTERNAL = ("kourier-system", "kourier-internal")
PROXY_POD_NS = p.PROXY_NS  # files/knative-nginx.yaml: namespace, Deployment and Service all named knative-nginx
PROXY_SELECTOR = "app.kubernetes.io/name=knative-nginx"
PROXY_CONTAINER = "nginx"


def kourier_internal_pod(cluster: Cluster) -> tuple[str, int]:
    """A Ready pod behind the Service kourier-internal, and the container port its port 80 leads to."""
    ns, name = KOURIER_INTERNAL
    svc = cluster.get("v1", "Service", name, ns)
    if svc is None:
        raise KnfleetError(f"no Service {ns}/{name} (is Kourier installed?)")
    spec = svc.get("spec") or {}
    sport = next((p for p in spec.get("ports") or [] if p.get("port") == 80), (spec.get("ports") or [{}])[0])
    target = sport.get("targetPort", sport.get("port"))
    selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items())
    pods = [p for p in cluster.list("v1", "Pod", ns, selector) if readiness.pod_ready(p)]
    if not pods:
        raise KnfleetError(f"no Ready pod behind Service {ns}/{name} (selector {selector})")
    pod = pods[0]
    if isinstance(target, str):
        ports = {p.get("name"): p.get("containerPort") for c in pod["spec"].get("containers") or []
                 for p in c.get("ports") or []}
        if target not in ports:
            raise KnfleetError(f"pod {ns}/{pod['metadata']['name']} has no port named {target!r}")
        target = ports[target]
    return pod["metadata"]["name"], int(target)


def _smoke_host(svc: dict[str, Any], fallback: str) -> str:
    """The Host Knative routes the service by: from its status.url, else the one derived from group data."""
    url = (svc.get("status") or {}).get("url") or ""
    return url.split("://", 1)[-1].split("/", 1)[0] or fallback


def _smoke_hosts(cluster: Cluster, svc: dict[str, Any], ns: str, name: str, fallback: str) -> Callable[[], str]:
    """The Host for each smoke attempt: the first from `svc` as read; a retry reads status.url again, since Knative
    may move the service to another host meanwhile (a changed domain: the old host then answers 404 for good)."""
    first = [True]

    def host() -> str:
        if first[0]:
            first[0] = False
            return _smoke_host(svc, fallback)
        return _smoke_host(cluster.get(*KSVC, name, ns) or svc, fallback)

    return host


class _EntryPoints:
    """The ways one smoke step reaches the services, each opened when first needed and closed at the end:
    host data URLs (overrides), kourier-internal (port-forward through the API server, or curl from inside the
    proxy's pod: `smoke_via: exec`), and the public proxy's external address (load balancer or NodePort)."""

    def __init__(self, cluster: Cluster, step: p.Smoke) -> None:
        self.cluster, self.step = cluster, step
        self.forward: Any = None
        self.exec_pod: str | None = None
        self._proxy: tuple[str | None] | None = None

    def paths(self, target: p.SmokeTarget, hosts: Callable[[], smoke.Host]) -> list[tuple[str, smoke.Send]]:
        """One (via, send) per way; `hosts()` gives each way its own Host header (see `_smoke_hosts`)."""
        step, ways = self.step, []
        url = step.internal_url if target.cluster_local or not step.public_url else step.public_url
        if url:
            ways.append(("smoke_internal_url" if url == step.internal_url else "smoke_url",
                         smoke.over_http(url, hosts(), target.model)))
        elif step.via == "exec":
            ways.append((f"kourier-internal (exec in {PROXY_POD_NS}/{self._exec_pod()})",
                         smoke.over_exec(self._run_in_proxy, self._internal_dns(), hosts(), target.model)))
        else:
            ways.append(("kourier-internal (port-forward)",
                         smoke.over_http(self._forward().url, hosts(), target.model)))
        if step.proxy and not step.public_url and not target.cluster_local:
            proxy = self.proxy_url()
            if proxy:
                ways.append((f"proxy {proxy}", smoke.over_http(proxy, hosts(), target.model)))
        return ways

    def proxy_url(self) -> str | None:
        if self._proxy is None:
            svc = self.cluster.get("v1", "Service", PROXY_POD_NS, PROXY_POD_NS) or {}
            self._proxy = (smoke.proxy_url(svc, self.step.proxy_node_address),)
            if self._proxy[0]:
                logger.info(f"{host.print_prefix}smoke through the public proxy too: {self._proxy[0]}")
        return self._proxy[0]

    def _forward(self) -> Any:
        if self.forward is None:
            pod, port = kourier_internal_pod(self.cluster)
            self.forward = self.cluster.port_forward(KOURIER_INTERNAL[0], pod, port)
            logger.info(f"{host.print_prefix}smoke through kourier-internal: port-forward to pod "
                        f"{KOURIER_INTERNAL[0]}/{pod}:{port} on {self.forward.url}")
        return self.forward

    def _internal_dns(self) -> str:
        return f"http://{KOURIER_INTERNAL[1]}.{KOURIER_INTERNAL[0]}.svc.{self.step.cluster_domain}"

    def _exec_pod(self) -> str:
        if self.exec_pod is None:
            pods = [q for q in self.cluster.list("v1", "Pod", PROXY_POD_NS, PROXY_SELECTOR) if readiness.pod_ready(q)]
            if not pods:
                raise KnfleetError(f"no Ready pod in {PROXY_POD_NS} ({PROXY_SELECTOR}) to run the smoke request "
                                   "from (smoke_via: exec)")
            self.exec_pod = pods[0]["metadata"]["name"]
        return self.exec_pod

    def _run_in_proxy(self, command: list[str], timeout: float) -> Any:
        return self.cluster.exec(PROXY_POD_NS, self._exec_pod(), PROXY_CONTAINER, command, timeout)

    def errors(self) -> list[str]:
        return list(self.forward.errors) if self.forward is not None else []

    def close(self) -> None:
        if self.forward is not None:
            self.forward.close()


@operation()
def smoke_test(step: p.Smoke):
    """The runbook's chat request to every model service, with the Host from its status.url. By default through
    `kourier-internal`, reached by a port-forward through the API server (the cluster's own auth; public and
    cluster-local services alike) or, with `smoke_via: exec`, by curl from inside the proxy's pod as the runbook
    does; public services also through the proxy's external address when its Service has one. Host data
    `smoke_url` (the public proxy) / `smoke_internal_url` override those. Checks 200, an OpenAI-shaped body and
    the model name; records latency per path and, for a service at zero, the cold start. A service whose policy
    is `when-warm` and that is at zero is reported, not woken (unless `smoke_cold`).
    A check, not a change: no change when every service answers; the cluster fails otherwise."""
    t0 = time.monotonic()
    if not _executing():
        host.noop("smoke tests run with the deploy (not in --dry)")
        return
    cluster, record = _cluster(), _record()
    services = step.services
    if step.before_upgrade is not None:  # only while upgrading, and only the services that exist already
        from knfleet.run import upgrading

        try:
            frm = upgrading.upgrading_from(cluster, step.before_upgrade)
        except KnfleetError as err:
            frm, why = None, str(err)
        else:
            why = "no upgrade in progress"
        existing = {readiness.name_of(o) for o in cluster.list(*KSVC)} if frm and cluster.has(*KSVC) else set()
        services = tuple(s for s in services if s.ref in existing)
        if not services:
            unchanged(step.title, why if frm is None else "no model service deployed yet", t0)
            return
    failures, skipped, answered, lines = [], 0, 0, []
    entry = _EntryPoints(cluster, step)
    try:
        for s in services:
            ns, name = s.ref.split("/", 1)
            svc = cluster.get(*KSVC, name, ns) or {}
            at_zero = _revision_at_zero(cluster, ns, (svc.get("status") or {}).get("latestReadyRevisionName"))
            if at_zero and s.policy == "when-warm" and not step.cold:
                results = [smoke.skipped(s.ref, "at zero, not woken: smoke when-warm; --smoke-cold wakes it")]
                skipped += 1
            else:
                results = []
                hosts = partial(_smoke_hosts, cluster, svc, ns, name, s.host)
                for via, send in entry.paths(s, hosts):
                    deadline = max(step.deadline, s.cold_deadline) if at_zero else step.deadline
                    result = smoke.chat(s.ref, send, s.model, deadline, at_zero)
                    result.via = via
                    if not result.ok and via.endswith("(port-forward)") and entry.errors():
                        result.error = f"{result.error}; {entry.errors()[-1]}"
                    at_zero = False  # the first path woke it
                    results.append(result)
                answered += 1
            for result in results:
                if step.before_upgrade is None:
                    record.smoke.append(result)
                lines.append(result.line())
                logger.info(f"{host.print_prefix}smoke {result.line()}")
                if not result.ok:
                    failures.append(result.line())
    except (KnfleetError, KubeError) as err:
        failures.append(f"no way to the services: {err}")
    finally:
        entry.close()
    if failures:
        yield fail(step.title if step.before_upgrade else "smoke test", "; ".join(failures)
                   + ("; not upgrading: nothing was changed" if step.before_upgrade else ""))
        return
    unchanged(step.title, f"{answered} service(s) answered"
              + (f", {skipped} at zero not woken" if skipped else "")
              + (": " + "; ".join(lines) if step.before_upgrade else ""), t0)


# --- uninstall ------------------------------------------------------------------------------------------------------
USER_KINDS, MADE_FOR_SERVICE, STILL_DELETING_KINDS = p.USER_KINDS, p.MADE_FOR_SERVICE, p.STILL_DELETING_KINDS


def foreign_objects(everything: list[dict[str, Any]], selector: str) -> list[str]:
    """Knative objects an uninstall would destroy that knfleet did not create: Services without its label,
    DomainMappings, and Routes or Configurations made directly (not by a Knative Service)."""
    key, _, value = selector.partition("=")
    out = []
    for o in everything:
        kind, meta = o.get("kind"), o["metadata"]
        owned_by_service = any(r.get("kind") == "Service" and r.get("apiVersion", "").startswith("serving.knative.dev")
                               for r in meta.get("ownerReferences") or [])
        if kind == "Service" and (meta.get("labels") or {}).get(key) != value:
            out.append(f"Knative Service {readiness.name_of(o)}")
        elif kind == "DomainMapping":
            out.append(f"DomainMapping {readiness.name_of(o)}")
        elif kind in ("Route", "Configuration") and not owned_by_service:
            out.append(f"{kind} {readiness.name_of(o)} (created directly)")
    return sorted(out)


def made_for(obj: dict[str, Any], refs: list[str]) -> bool:
    """Knative made obj for one of these services ("ns/name"): its serving.knative.dev/service label names it."""
    meta = obj["metadata"]
    return f"{meta.get('namespace')}/{(meta.get('labels') or {}).get('serving.knative.dev/service')}" in refs


def _user_objects(cluster: Cluster) -> list[dict[str, Any]]:
    kinds = [k for k in USER_KINDS if cluster.has(*k)]
    cluster.list_many([(*k, None, None) for k in kinds])
    return [o for k in kinds for o in cluster.list(*k)]


@operation()
def guard(step: p.Guard):
    """Refuse to go on when Knative objects knfleet did not make exist (Services, DomainMappings, Routes and
    Configurations made directly): deleting the CRDs would delete them too. `force_uninstall=true` overrides."""
    t0 = time.monotonic()
    cluster = _cluster()
    if not cluster.has(*KSVC):
        unchanged(step.title, "no Knative Service CRD", t0)
        return
    foreign = foreign_objects(_user_objects(cluster), step.selector)
    if not foreign or step.force:
        unchanged(step.title, "no Knative object outside knfleet's" if not foreign else
                  f"force_uninstall: {len(foreign)} Knative object(s) not made by knfleet will be deleted", t0)
        return
    yield fail("uninstall guard", f"Knative objects not made by knfleet exist ({', '.join(foreign)}); deleting "
                                  "Knative would delete them. Remove them first or run with "
                                  "--data force_uninstall=true")


def _left(items: list[dict[str, Any]], cluster: Cluster | None = None) -> list[str]:
    out = []
    for o in items:
        fins = o["metadata"].get("finalizers") or []
        text = f"{o['kind']} {readiness.name_of(o)}" + (f" (finalizers {fins})" if fins else "")
        if o["kind"] == "Namespace" and cluster is not None:
            text += "".join(f"; {h}" for h in held_in_namespace(cluster, o))
        if o["kind"] == "CustomResourceDefinition" and cluster is not None:
            text += "".join(f"; {h}" for h in held_by_crd(cluster, o))
        out.append(text)
    return out


def holding(objects: list[dict[str, Any]]) -> list[str]:
    """The objects that hold finalizers, each named with them."""
    return [f"{o['kind']} {readiness.name_of(o)} holds finalizers {o['metadata']['finalizers']}" for o in objects
            if o["metadata"].get("finalizers")]


def held_by_crd(cluster: Cluster, crd: dict[str, Any]) -> list[str]:
    """What keeps a CRD being deleted: its objects that hold finalizers (the CRD's own customresourcecleanup
    finalizer waits for every object of it to go)."""
    meta, spec = crd["metadata"], crd.get("spec") or {}
    if not meta.get("deletionTimestamp") or "customresourcecleanup.apiextensions.k8s.io" not in (
            meta.get("finalizers") or []):
        return []
    version = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), None)
    kind = (spec.get("names") or {}).get("kind")
    if not version or not kind:
        return []
    try:
        return holding(cluster.list(f"{spec['group']}/{version}", kind))
    except KubeError:
        return []


CONTENT_REMAINING = re.compile(r"(?P<plural>[a-z0-9-]+)\.(?P<group>[a-z0-9.-]*) has \d+ resource instances")


def held_in_namespace(cluster: Cluster, ns: dict[str, Any]) -> list[str]:
    """What keeps a terminating namespace: the objects in it that hold finalizers (found from the namespace
    controller's NamespaceContentRemaining condition), else the controller's own words."""
    ns_name = ns["metadata"]["name"]
    conditions = {c.get("type"): c.get("message") or "" for c in (ns.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True"}
    held: list[str] = []
    for m in CONTENT_REMAINING.finditer(conditions.get("NamespaceContentRemaining", "")):
        for res in cluster.discovery().values():
            if res.plural == m["plural"] and res.group == m["group"] and res.namespaced:
                try:
                    objs = cluster.list(res.api_version, res.kind, ns_name)
                except KubeError:
                    continue
                held += holding(objs)
                break
    if not held and conditions.get("NamespaceFinalizersRemaining"):
        held.append(conditions["NamespaceFinalizersRemaining"])
    return held


def still_deleting(cluster: Cluster) -> list[dict[str, Any]]:
    """Knative objects whose deletion has begun and not ended: marked for deletion (a controller's finalizer still
    to run) or made for a Knative owner that is gone (the garbage collector is about to delete them). Their
    controllers must still run when they go: an uninstall killed while it waited for them leaves them behind."""
    kinds = [k for k in STILL_DELETING_KINDS if cluster.has(*k)]
    cluster.list_many([(*k, None, None) for k in kinds])
    objects = [o for k in kinds for o in cluster.list(*k)]
    uids = {o["metadata"].get("uid") for o in objects}
    return [o for o in objects if o["metadata"].get("deletionTimestamp") or any(
        r.get("apiVersion", "").split("/")[0].endswith("knative.dev") and r.get("uid") not in uids
        for r in o["metadata"].get("ownerReferences") or [])]


def _delete_services(cluster: Cluster, step: p.DeleteServices, refs: list[str], foreign: list[dict[str, Any]],
                     pending: list[dict[str, Any]]) -> list[str]:
    ok, why = webhook.serving(cluster)
    if not ok:
        try:
            poll(lambda: webhook.serving(cluster), step.timeout, cluster=cluster)
        except NotReadyError as err:
            raise NotReadyError(f"Knative's webhook answers (it admits deletes of Knative objects) failed: {err}") \
                from None
    for r in refs:
        cluster.delete(*KSVC, r.split("/", 1)[1], r.split("/", 1)[0])
    for o in foreign:
        cluster.delete(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
    kinds = [k for k in MADE_FOR_SERVICE if cluster.has(*k)]

    def gone() -> tuple[bool, str]:  # one cluster-wide list per kind, shared by still_deleting and _user_objects
        left: list[str] = _left(still_deleting(cluster))
        made = [o for k in kinds for o in cluster.list(*k)]
        left += _left([o for o in made if step.force or made_for(o, refs)])
        left += _left([o for o in cluster.list(*KSVC) if readiness.name_of(o) in refs])
        if step.force:
            left += _left(_user_objects(cluster))
        return not left, "still present: " + ", ".join(sorted(set(left)))
    poll(gone, step.timeout, cluster=cluster)
    return ([f"Service/{r} (deleted)" for r in refs]
            + [f"{o['kind']}/{readiness.name_of(o)} (deleted)" for o in foreign]
            + [f"{o['kind']}/{readiness.name_of(o)} (its deletion finished)" for o in pending])


@operation()
def delete_services(step: p.DeleteServices):
    """Delete the Knative Services knfleet made (with `force`: every Knative Service, DomainMapping, Route and
    Configuration) and wait until they and everything Knative made for them are gone (found by
    serving.knative.dev/service: Revisions do not carry the Service's own labels), while the controllers still run
    so that their finalizers complete. Knative objects an earlier, interrupted run left being deleted are waited
    for too. Knative's webhook admits these deletes: it must answer first."""
    t0 = time.monotonic()
    cluster = _cluster()
    if not cluster.has(*KSVC):
        unchanged(step.title, "no Knative Service CRD: nothing to delete", t0)
        return
    refs = sorted(readiness.name_of(o) for o in cluster.list(*KSVC, selector=step.selector)
                  if not o["metadata"].get("deletionTimestamp"))
    foreign = []
    if step.force:
        key, _, value = step.selector.partition("=")
        foreign = [o for o in _user_objects(cluster)
                   if not (o["kind"] == "Service" and (o["metadata"].get("labels") or {}).get(key) == value)
                   and not any(r.get("kind") == "Service" for r in o["metadata"].get("ownerReferences") or [])
                   and not o["metadata"].get("deletionTimestamp")]
    pending = still_deleting(cluster)
    if not refs and not foreign and not pending:
        unchanged(step.title, "no Knative Services to delete", t0)
        return
    yield command(step.title, _delete_services, cluster, step, refs, foreign, pending)


def _present(cluster: Cluster, objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    present = [o for o in objects if cluster.has(o["apiVersion"], o["kind"])]
    cluster.list_many(diff.list_keys(cluster, tuple(present)))
    return [o for o in present if cluster.find(o) is not None]


def _delete_stage(cluster: Cluster, step: p.Delete, objects: list[dict[str, Any]]) -> list[str]:
    for o in reversed(objects):
        cluster.delete(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
        _records(cluster).forget(o)

    def gone() -> tuple[bool, str]:
        left = [cluster.find(o) or o for o in _present(cluster, tuple(objects))]  # live: status, finalizers
        return not left, "still present: " + ", ".join(_left(left, cluster))
    poll(gone, step.timeout, cluster=cluster)
    try:
        _records(cluster).save(cluster)
    except KubeError:
        pass
    return [f"{ref(o)} (deleted)" for o in objects]


@operation()
def delete(step: p.Delete):
    """Delete what a stage declares, only what exists, and wait until it is gone."""
    t0 = time.monotonic()
    cluster = _cluster()
    existing = _present(cluster, step.objects)
    if not existing:
        unchanged(step.title, f"{step.stage}: nothing to delete", t0)
        return
    yield command(step.title, _delete_stage, cluster, step, existing)


KNATIVE_FINALIZED = (("serving.knative.dev/v1", "Route"), ("networking.internal.knative.dev/v1alpha1", "Ingress"),
                     ("serving.knative.dev/v1beta1", "DomainMapping"),
                     ("networking.internal.knative.dev/v1alpha1", "Certificate"),
                     ("serving.knative.dev/v1", "Configuration"), ("serving.knative.dev/v1", "Service"))
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def leftovers(cluster: Cluster) -> list[str]:
    """Knative CRDs, objects holding a finalizer, webhook configurations and namespaces still present."""
    cluster.discovery(refresh=True)  # CRDs may just have gone
    left: list[str] = []
    for c in cluster.list(*CRD):
        if c["metadata"]["name"].endswith(".knative.dev"):
            fin = c["metadata"].get("finalizers") or []
            left.append(f"CRD {c['metadata']['name']}" + (f" (finalizers {fin})" if fin else ""))
    for k in KNATIVE_FINALIZED:
        if cluster.has(*k):
            left += holding(cluster.list(*k))
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        left += [f"{kind} {w['metadata']['name']}" for w in cluster.list(webhook.ADMISSION, kind)
                 if "knative" in w["metadata"]["name"]]
    for obj in cluster.list("v1", "Namespace"):
        ns = obj["metadata"]["name"]
        if ns in p.NAMESPACES:
            left.append(f"namespace {ns} ({(obj.get('status') or {}).get('phase', '?')}"
                        + (f", finalizers {obj['spec'].get('finalizers')}" if obj.get("spec") else "") + ")"
                        + "".join(f"; {h}" for h in held_in_namespace(cluster, obj)))
    return left


def _wait_clean(cluster: Cluster, timeout: int) -> list[str]:
    try:
        poll(lambda: (not (left := leftovers(cluster)), "\n".join(left)), timeout, interval=2, cluster=cluster)
    except NotReadyError as err:
        raise StuckError(f"uninstall left objects behind (remove their finalizers by hand if they stay): {err}") \
            from None
    return []


@operation()
def removed(step: p.Removed):
    """No Knative CRD, webhook configuration or namespace remains; name what is stuck if any does."""
    t0 = time.monotonic()
    cluster = _cluster()
    cluster.invalidate()
    try:
        if not leftovers(cluster):
            unchanged(step.title, "nothing of Knative remains", t0)
            return
    except KubeError:
        pass
    yield command(step.title, _wait_clean, cluster, step.timeout)


OPERATIONS: dict[type, Callable[..., Any]] = {
    p.Preflight: preflight, p.Lock: take_lock, p.Apply: apply, p.Gate: gate, p.Prune: prune, p.Smoke: smoke_test,
    p.Guard: guard, p.DeleteServices: delete_services, p.Delete: delete, p.Removed: removed,
}


def step(s: p.Step) -> Any:
    """The pyinfra operation for one plan step, named by its title."""
    if type(s) not in OPERATIONS:
        from knfleet.run import upgrading

        OPERATIONS.update(upgrading.OPERATIONS)
    return OPERATIONS[type(s)](s, name=s.title)
