"""The model services' own steps: prune those removed from group data, and the smoke test (the runbook's chat
request to every model service through kourier-internal, the proxy, or host data URLs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pyinfra import host
from pyinfra.api import operation

from knfleet.desired import models, ownership
from knfleet.desired import plan as p
from knfleet.errors import KnfleetError, Reason
from knfleet.kube import readiness, wait
from knfleet.kube.client import Cluster, Conflict, KubeError
from knfleet.run import coldstart, smoke, upgrading
from knfleet.run.context import cluster as current_cluster
from knfleet.run.context import command, executing, fail, record, say, unchanged, warn

KSVC = ("serving.knative.dev/v1", "Service")


def delete_services(cluster: Cluster, services: list[dict[str, Any]], timeout: int) -> list[str]:
    """Delete these Knative Services, each with its uid as a precondition (the object that was checked, not one
    made again under its name meanwhile), and wait until each is gone."""
    for o in services:
        cluster.delete(*KSVC, o["metadata"]["name"], o["metadata"]["namespace"], uid=o["metadata"].get("uid"))
    wait.until_gone(cluster, services, timeout)
    return [f"Service/{readiness.name_of(o)} (deleted)" for o in services]


@operation()
def prune(step: p.Prune):
    """Delete this owner's Knative Services (its labels) that group data no longer has, each only when knfleet's
    field manager applied it. Services of other owners (inventories), or that merely carry knfleet's labels, are
    never touched. Planned only when group data has `models`; an empty list removes every service of the owner,
    and the closing lines say so."""
    t0 = time.monotonic()
    cluster = current_cluster()
    if not cluster.has(*KSVC):
        unchanged(step.title, "no Knative Service CRD", t0)
        return
    gone, left = ownership.prunable(cluster.list(*KSVC, selector=step.selector), step.keep, step.owner)
    for why in left:
        warn(f"warning: not deleted: {why}")
    if not gone:
        unchanged(step.title, "no removed model service to delete", t0)
        return
    names = ", ".join(readiness.name_of(o) for o in gone)
    if step.remove_all:
        note = (f"models is an empty list: removing every model service of owner {step.owner!r} "
                f"({len(gone)}): {names}")
        say(note)
        if executing():
            record().notes.append(note)
    else:
        say(f"removed from group data (models, model_manifests): {names}")
    yield command(step.title, delete_services, cluster, gone, step.timeout)


def create_namespaces(cluster: Cluster, names: list[str]) -> list[str]:
    """Create the missing model namespaces (one made meanwhile by someone else is left as it is)."""
    made = []
    for name in names:
        try:
            cluster.create(models.namespace_object(name))
            made.append(f"Namespace/{name} (created)")
        except Conflict:
            pass
    return made


@operation()
def own(step: p.Own):
    """Before the model services' forced apply: a Knative Service of a model's name that knfleet did not create
    (or another owner's) is refused, naming it and its field managers, unless the model says `adopt: true`; the
    missing model namespaces are created (an existing one is used as it is: no label of knfleet's is applied
    onto it)."""
    t0 = time.monotonic()
    cluster = current_cluster()
    try:
        live = {readiness.name_of(o): o for o in cluster.list(*KSVC)} if cluster.has(*KSVC) else {}
        missing = [ns for ns in step.namespaces if cluster.get("v1", "Namespace", ns) is None]
    except KubeError as err:
        yield fail(step.title, f"cannot read the model services and namespaces: {err}", err.code)
        return
    refused = ownership.takeover_problems(step.services, live, step.owner, step.adopt)
    if refused:
        yield fail(step.title, "; ".join(refused) + "; nothing was changed", Reason.OWNERSHIP_REFUSED)
        return
    adopted = [r for r in step.adopt if r in live and not ownership.applied_by_knfleet(live[r])]
    for r in adopted:
        warn(f"warning: adopting Knative Service {r} (adopt: true): knfleet's apply takes it over")
    if not missing:
        unchanged(step.title, f"{len(step.services)} service(s) knfleet's to apply; namespaces present", t0)
        return
    yield command(step.title, create_namespaces, cluster, missing)


def revision_at_zero(cluster: Cluster, ns: str, revision: str | None) -> bool:
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


def smoke_host(svc: dict[str, Any], fallback: str) -> str:
    """The Host Knative routes the service by: from its status.url, else the one derived from group data."""
    url = (svc.get("status") or {}).get("url") or ""
    return url.split("://", 1)[-1].split("/", 1)[0] or fallback


def smoke_hosts(cluster: Cluster, svc: dict[str, Any], ns: str, name: str, fallback: str) -> Callable[[], str]:
    """The Host for each smoke attempt: the first from `svc` as read; a retry reads status.url again, since Knative
    may move the service to another host meanwhile (a changed domain: the old host then answers 404 for good)."""
    first = [True]

    def host() -> str:
        if first[0]:
            first[0] = False
            return smoke_host(svc, fallback)
        return smoke_host(cluster.get(*KSVC, name, ns) or svc, fallback)

    return host


class EntryPoints:
    """The ways one smoke step reaches the services, each opened when first needed and closed at the end:
    host data URLs (overrides), kourier-internal (port-forward through the API server, or curl from inside the
    proxy's pod: `smoke_via: exec`), and the public proxy's external address (load balancer or NodePort)."""

    def __init__(self, cluster: Cluster, step: p.Smoke) -> None:
        self.cluster, self.step = cluster, step
        self.forward: Any = None
        self.exec_pod: str | None = None
        self._proxy: tuple[str | None] | None = None

    def paths(self, target: p.SmokeTarget, hosts: Callable[[], smoke.Host]) -> list[tuple[str, smoke.Send]]:
        """One (via, send) per way; `hosts()` gives each way its own Host header (see `smoke_hosts`)."""
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

    def probe(self, cluster_local: bool) -> tuple[str, smoke.Probe]:
        """The first of the ways `paths` takes, as a probe for any chat request (the rollout's checks)."""
        step = self.step
        url = step.internal_url if cluster_local or not step.public_url else step.public_url
        if url:
            return ("smoke_internal_url" if url == step.internal_url else "smoke_url"), smoke.probe_http(url)
        if step.via == "exec":
            return (f"kourier-internal (exec in {PROXY_POD_NS}/{self._exec_pod()})",
                    smoke.probe_exec(self._run_in_proxy, self._internal_dns()))
        return "kourier-internal (port-forward)", smoke.probe_http(self._forward().url)

    def proxy_url(self) -> str | None:
        if self._proxy is None:
            svc = self.cluster.get("v1", "Service", PROXY_POD_NS, PROXY_POD_NS) or {}
            self._proxy = (smoke.proxy_url(svc, self.step.proxy_node_address),)
            if self._proxy[0]:
                say(f"smoke through the public proxy too: {self._proxy[0]}")
        return self._proxy[0]

    def _forward(self) -> Any:
        if self.forward is None:
            pod, port = kourier_internal_pod(self.cluster)
            self.forward = self.cluster.port_forward(KOURIER_INTERNAL[0], pod, port)
            say(f"smoke through kourier-internal: port-forward to pod "
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
    if not executing():
        host.noop("smoke tests run with the deploy (not in --dry)")
        return
    cluster, rec = current_cluster(), record()
    services = step.services
    if step.before_upgrade is not None:  # only while upgrading, and only the services that exist already
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
    entry = EntryPoints(cluster, step)
    try:
        for s in services:
            ns, name = s.ref.split("/", 1)
            svc = cluster.get(*KSVC, name, ns) or {}
            at_zero = revision_at_zero(cluster, ns, (svc.get("status") or {}).get("latestReadyRevisionName"))
            if at_zero and s.policy == "when-warm" and not step.cold:
                results = [smoke.skipped(s.ref, "at zero, not woken: smoke when-warm; --smoke-cold wakes it")]
                skipped += 1
            else:
                results = []
                hosts = partial(smoke_hosts, cluster, svc, ns, name, s.host)
                for via, send in entry.paths(s, hosts):
                    deadline = max(step.deadline, s.cold_deadline) if at_zero else step.deadline
                    woke = time.time()
                    result = smoke.chat(s.ref, send, s.model, deadline, at_zero)
                    result.via = via
                    if at_zero and result.ok and step.before_upgrade is None:  # the pod it woke, phase by phase
                        rec.cold_starts += coldstart.observe(cluster, s.ref, (svc.get("status") or {}).get(
                            "latestReadyRevisionName") or "", "wake", woke, answered=time.time())
                    if not result.ok and via.endswith("(port-forward)") and entry.errors():
                        result.error = f"{result.error}; {entry.errors()[-1]}"
                    at_zero = False  # the first path woke it
                    results.append(result)
                answered += 1
            for result in results:
                if step.before_upgrade is None:
                    rec.smoke.append(result)
                lines.append(result.line())
                say(f"smoke {result.line()}")
                if not result.ok:
                    failures.append(result.line())
    except (KnfleetError, KubeError) as err:
        failures.append(f"no way to the services: {err}")
    finally:
        entry.close()
    if failures:
        yield fail(step.title if step.before_upgrade else "smoke test", "; ".join(failures)
                   + ("; not upgrading: nothing was changed" if step.before_upgrade else ""), Reason.SMOKE_FAILED)
        return
    unchanged(step.title, f"{answered} service(s) answered"
              + (f", {skipped} at zero not woken" if skipped else "")
              + (": " + "; ".join(lines) if step.before_upgrade else ""), t0)
