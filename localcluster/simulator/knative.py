"""Knative Serving's controllers as the simulator plays them: revisions, status, routes, autoscaling."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import yaml

from knfleet import goduration
from localcluster.simulator import autoscale, openai
from localcluster.simulator.kubeapi import Kube

KOURIER = "kourier.ingress.networking.knative.dev"
VISIBILITY = "networking.knative.dev/visibility"
SIM = "simulator.knfleet.local/"
DEFAULT_DOMAIN = "svc.cluster.local"
# Container waiting reasons Knative surfaces as a failed revision.
FAILING_WAIT_REASONS = {
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
}


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def ingress_class(network: dict[str, str]) -> str:
    """`ingress-class` is parsed after the legacy `ingress.class` and wins; istio is the default."""
    return network.get("ingress-class") or network.get("ingress.class") or "istio.ingress.networking.knative.dev"


def domain_for(labels: dict[str, str], domains: dict[str, str]) -> str:
    """The route domain from config-domain: a domain whose selector matches the labels, else the default."""
    best = None
    for dom, selector in domains.items():
        if dom.startswith("_"):
            continue
        sel = (selector or "").strip()
        if not sel:
            best = best or dom
            continue
        if sel.startswith("selector:"):
            wanted = (yaml.safe_load(sel) or {}).get("selector") or {}
            if wanted and all(labels.get(k) == v for k, v in wanted.items()):
                return dom
    return best or DEFAULT_DOMAIN


def is_cluster_local(ksvc: dict[str, Any]) -> bool:
    return (ksvc["metadata"].get("labels") or {}).get(VISIBILITY) == "cluster-local"


def service_urls(ksvc: dict[str, Any], domains: dict[str, str]) -> tuple[str, str]:
    meta = ksvc["metadata"]
    name, ns = meta["name"], meta["namespace"]
    local = f"{name}.{ns}.svc.cluster.local"
    domain = DEFAULT_DOMAIN if is_cluster_local(ksvc) else domain_for(meta.get("labels") or {}, domains)
    return f"http://{name}.{ns}.{domain}", f"http://{local}"


@dataclass
class Route:
    """What the gateway needs to answer for one Knative Service."""
    namespace: str
    service: str
    ready: bool
    public: bool
    reason: str
    revision: str | None
    deployment: str | None
    model: str
    model_root: str
    settings: autoscale.Settings | None
    timeout: float


@dataclass
class Traffic:
    inflight: int = 0
    peak: int = 0
    last_request: float = field(default_factory=time.monotonic)


@dataclass
class Revision:
    name: str
    number: int
    hash: str
    deployment: dict[str, Any]

    @property
    def ever_ready(self) -> bool:
        return (self.deployment["metadata"].get("annotations") or {}).get(SIM + "ever-ready") == "true"

    @property
    def ready_replicas(self) -> int:
        return int((self.deployment.get("status") or {}).get("readyReplicas") or 0)

    @property
    def replicas(self) -> int:
        return int(self.deployment["spec"].get("replicas") or 0)


def condition(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    c = {"type": kind, "status": status}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def revision_failure(rev: Revision, pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Why a revision that is not ready failed, as Knative reports it; None while it is still progressing."""
    for cond in (rev.deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "ProgressDeadlineExceeded", f"Initial scale was never achieved: {cond.get('message', '')}".strip()
    for pod in pods:
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (st.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FAILING_WAIT_REASONS:
                return waiting["reason"], waiting.get("message") or waiting["reason"]
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                    and cond.get("reason") == "Unschedulable":
                return "Unschedulable", cond.get("message", "")
    return None


def revision_deployment(ksvc: dict[str, Any], rev_name: str, number: int, thash: str, replicas: int,
                        progress_deadline: int) -> dict[str, Any]:
    meta, template = ksvc["metadata"], ksvc["spec"].get("template") or {}
    name, ns = meta["name"], meta["namespace"]
    labels = {
        **((template.get("metadata") or {}).get("labels") or {}),
        "app": rev_name,
        "serving.knative.dev/service": name,
        "serving.knative.dev/configuration": name,
        "serving.knative.dev/revision": rev_name,
    }
    pod_spec = {k: v for k, v in (template.get("spec") or {}).items()
                if k not in ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds",
                             "idleTimeoutSeconds")}
    containers = [json.loads(json.dumps(c)) for c in pod_spec.get("containers") or []]
    port = next((p.get("containerPort") for c in containers for p in c.get("ports") or []), 8080)
    for i, c in enumerate(containers):  # what Knative's defaulting webhook would have filled in
        c.setdefault("name", "user-container" if len(containers) == 1 else f"user-container-{i}")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            for handler in ("httpGet", "tcpSocket"):
                h = (c.get(probe) or {}).get(handler)
                if isinstance(h, dict):
                    h.setdefault("port", port)
    pod_spec["containers"] = containers
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{rev_name}-deployment",
            "namespace": ns,
            "labels": labels,
            "annotations": {SIM + "revision-number": str(number), SIM + "template-hash": thash},
            "ownerReferences": [{
                "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name,
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": False,
            }],
        },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline,
            "selector": {"matchLabels": {"serving.knative.dev/revision": rev_name}},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": (template.get("metadata") or {}).get("annotations") or {}},
                "spec": pod_spec,
            },
        },
    }


class Controller:
    def __init__(self, kube: Kube, time_factor: float = 1.0, log=print) -> None:
        self.kube = kube
        self.time_factor = time_factor
        self.log = log
        self.lock = threading.Lock()
        self.routes: dict[str, Route] = {}
        self.traffic: dict[str, Traffic] = {}
        self.wake = threading.Event()

    # --- installed? --------------------------------------------------------------------------------
    @staticmethod
    def _available(dep: dict[str, Any] | None) -> bool:
        conds = ((dep or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in conds)

    def knative_running(self) -> bool:
        return self.kube.crd_exists("services.serving.knative.dev") and \
            self._available(self.kube.deployment("knative-serving", "controller"))

    def ingress_problem(self, network: dict[str, str]) -> str | None:
        cls = ingress_class(network)
        if cls != KOURIER:
            return (f"Ingress class {cls!r} is not served: no ingress controller for it is installed "
                    f"(Kourier is {KOURIER!r}).")
        if not self._available(self.kube.deployment("knative-serving", "net-kourier-controller")):
            return "Ingress has not yet been reconciled: net-kourier-controller is not available."
        return None

    # --- traffic, from the gateway -----------------------------------------------------------------
    def begin(self, revision: str) -> None:
        with self.lock:
            t = self.traffic.setdefault(revision, Traffic())
            t.inflight += 1
            t.peak = max(t.peak, t.inflight)
            t.last_request = time.monotonic()

    def end(self, revision: str) -> None:
        with self.lock:
            t = self.traffic.setdefault(revision, Traffic())
            t.inflight = max(0, t.inflight - 1)
            t.last_request = time.monotonic()
        self.wake.set()

    # --- reconcile ---------------------------------------------------------------------------------
    def reconcile(self) -> None:
        if not self.knative_running():
            with self.lock:
                self.routes = {}
            return
        ks = "knative-serving"
        network = self.kube.configmap_data(ks, "config-network")
        domains = self.kube.configmap_data(ks, "config-domain")
        autoscaler = self.kube.configmap_data(ks, "config-autoscaler")
        deployment_cfg = self.kube.configmap_data(ks, "config-deployment")
        defaults = self.kube.configmap_data(ks, "config-defaults")
        ingress = self.ingress_problem(network)
        deps = self.kube.revision_deployments()
        pods = self.kube.revision_pods()
        routes: dict[str, Route] = {}
        seen: set[tuple[str, str]] = set()
        for ksvc in self.kube.ksvcs():
            meta = ksvc["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            key = (meta["namespace"], meta["name"])
            seen.add(key)
            mine = [d for d in deps if (d["metadata"]["namespace"], d["metadata"]["labels"].get(
                "serving.knative.dev/service")) == key]
            try:
                route = self._service(ksvc, mine, pods, ingress, domains, autoscaler, deployment_cfg, defaults)
            except Exception as err:  # noqa: BLE001 - one bad service must not stop the others
                self.log(f"reconcile {key[0]}/{key[1]}: {err}")
                continue
            if route:
                url, address = service_urls(ksvc, domains)
                for host in _hosts(url, address):
                    routes[host] = route
        for d in deps:
            m = d["metadata"]
            if (m["namespace"], m["labels"].get("serving.knative.dev/service")) not in seen:
                self.kube.delete_deployment(m["namespace"], m["name"])
        with self.lock:
            self.routes = routes

    def _service(self, ksvc, deps, pods, ingress, domains, autoscaler, deployment_cfg, defaults) -> Route | None:
        meta, spec = ksvc["metadata"], ksvc.get("spec") or {}
        name, ns, gen = meta["name"], meta["namespace"], meta.get("generation", 1)
        template = spec.get("template") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        thash = template_hash(template)
        revs = sorted(
            (Revision(d["metadata"]["labels"]["serving.knative.dev/revision"],
                      int(d["metadata"]["annotations"].get(SIM + "revision-number", "0")),
                      d["metadata"]["annotations"].get(SIM + "template-hash", ""), d) for d in deps),
            key=lambda r: r.number,
        )
        settings = autoscale.settings(annotations, autoscaler)
        if not revs or revs[-1].hash != thash:
            number = (revs[-1].number + 1) if revs else 1
            rev_name = (template.get("metadata") or {}).get("name") or f"{name}-{number:05d}"
            deadline = _progress_deadline(annotations, deployment_cfg)
            body = revision_deployment(ksvc, rev_name, number, thash, autoscale.initial_replicas(settings), deadline)
            try:
                self.kube.create_deployment(ns, body)
            except Exception as err:  # noqa: BLE001 - surface it as Knative would: a failed revision
                msg = str(err).splitlines()[0][:300]
                self._write_status(ksvc, {
                    "observedGeneration": gen, "latestCreatedRevisionName": rev_name,
                    "conditions": [condition("Ready", "False", "RevisionFailed", msg),
                                   condition("ConfigurationsReady", "False", "RevisionFailed", msg),
                                   condition("RoutesReady", "Unknown", "RevisionMissing", msg)]})
                raise
            self.log(f"{ns}/{name}: created revision {rev_name}")
            revs.append(Revision(rev_name, number, thash, body))
        latest = revs[-1]
        rev_pods = [p for p in pods if p["metadata"]["namespace"] == ns
                    and p["metadata"]["labels"].get("serving.knative.dev/revision") == latest.name]
        latest_ready = latest.ever_ready or latest.ready_replicas >= max(1, min(latest.replicas, 1))
        if latest_ready and not latest.ever_ready:
            self.kube.apps.patch_namespaced_deployment(
                latest.deployment["metadata"]["name"], ns, {"metadata": {"annotations": {SIM + "ever-ready": "true"}}})
            self.log(f"{ns}/{name}: revision {latest.name} is ready")
        if latest_ready:
            for old in revs[:-1]:
                self.kube.delete_deployment(ns, old.deployment["metadata"]["name"])
            ready_rev: Revision | None = latest
        else:
            ready_rev = next((r for r in reversed(revs[:-1]) if r.ever_ready), None)
        failure = None if latest_ready else revision_failure(latest, rev_pods)
        if ready_rev is not None:
            self._autoscale(ns, ready_rev, autoscale.settings(
                ((ready_rev.deployment["spec"]["template"]["metadata"] or {}).get("annotations") or {}), autoscaler))

        url, address = service_urls(ksvc, domains)
        waiting = f'Configuration "{name}" is waiting for a Revision to become ready.'
        if latest_ready:
            cfg_cond = condition("ConfigurationsReady", "True")
        elif failure:
            cfg_cond = condition("ConfigurationsReady", "False", failure[0],
                                 f'Revision "{latest.name}" failed with message: {failure[1]}')
        else:
            cfg_cond = condition("ConfigurationsReady", "Unknown", "RevisionMissing", waiting)
        if ingress:
            route_cond = condition("RoutesReady", "False", "IngressNotConfigured", ingress)
        elif ready_rev is None:
            route_cond = condition("RoutesReady", "Unknown", "RevisionMissing", waiting)
        else:
            route_cond = condition("RoutesReady", "True")
        if cfg_cond["status"] == "True" and route_cond["status"] == "True":
            ready = condition("Ready", "True")
        else:
            bad = next((c for c in (cfg_cond, route_cond) if c["status"] == "False"), None) \
                or next(c for c in (cfg_cond, route_cond) if c["status"] != "True")
            ready = condition("Ready", bad["status"], bad.get("reason", ""), bad.get("message", ""))
        status: dict[str, Any] = {
            "observedGeneration": gen,
            "latestCreatedRevisionName": latest.name,
            "url": url,
            "address": {"url": address},
            "conditions": [ready, cfg_cond, route_cond],
        }
        if ready_rev is not None:
            status["latestReadyRevisionName"] = ready_rev.name
            status["traffic"] = [{"revisionName": ready_rev.name, "latestRevision": True, "percent": 100}]
        self._write_status(ksvc, status)

        containers = (template.get("spec") or {}).get("containers") or []
        model = openai.served_model_name(containers)
        root = openai._flag([*(containers[0].get("args") or [])], "--model") if containers else None
        return Route(
            namespace=ns, service=name, ready=ready["status"] == "True" and ready_rev is not None,
            public=not is_cluster_local(ksvc) and not url.endswith("." + DEFAULT_DOMAIN),
            reason=ready.get("reason", ""), revision=ready_rev.name if ready_rev else None,
            deployment=ready_rev.deployment["metadata"]["name"] if ready_rev else None,
            model=model, model_root=root or model, settings=settings,
            timeout=float((template.get("spec") or {}).get("timeoutSeconds")
                          or defaults.get("revision-timeout-seconds") or 300),
        )

    def _write_status(self, ksvc: dict[str, Any], status: dict[str, Any]) -> None:
        old = ksvc.get("status") or {}
        old_conds = {c["type"]: c for c in old.get("conditions") or []}
        same = all(
            {k: v for k, v in old_conds.get(c["type"], {}).items() if k != "lastTransitionTime"} == c
            for c in status["conditions"]
        ) and all(old.get(k) == v for k, v in status.items() if k != "conditions") \
            and ("latestReadyRevisionName" in status or "latestReadyRevisionName" not in old)
        if same:
            return
        for c in status["conditions"]:
            prev = old_conds.get(c["type"])
            c["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == c["status"] \
                and prev.get("lastTransitionTime") else now_iso()
        if "latestReadyRevisionName" not in status:
            status["latestReadyRevisionName"] = None
            status["traffic"] = None
        meta = ksvc["metadata"]
        self.kube.patch_ksvc_status(meta["namespace"], meta["name"], status)

    def _autoscale(self, ns: str, rev: Revision, settings: autoscale.Settings) -> None:
        with self.lock:
            t = self.traffic.setdefault(rev.name, Traffic())
            idle_for = time.monotonic() - t.last_request if t.inflight == 0 else 0.0
            peak = max(t.peak, t.inflight)
            t.peak = t.inflight  # the peak is per tick of the stable window
        want = autoscale.desired_replicas(settings, rev.replicas, peak, idle_for, self.time_factor, True)
        if want != rev.replicas:
            self.kube.scale(ns, rev.deployment["metadata"]["name"], want)
            self.log(f"{ns}/{rev.name}: scaled {rev.replicas} -> {want}")

    # --- the activator -----------------------------------------------------------------------------
    def activate(self, route: Route, timeout: float) -> float:
        """Hold a request for a revision at zero until a pod is Ready; returns the seconds waited."""
        assert route.deployment and route.settings
        t0 = time.monotonic()
        dep = self.kube.deployment(route.namespace, route.deployment)
        if dep and int((dep.get("status") or {}).get("readyReplicas") or 0) > 0:
            return 0.0
        if dep and int(dep["spec"].get("replicas") or 0) == 0:
            self.kube.scale(route.namespace, route.deployment, autoscale.clamp(1, route.settings))
            self.log(f"{route.namespace}/{route.revision}: activator scaled 0 -> 1")
        while time.monotonic() - t0 < timeout:
            dep = self.kube.deployment(route.namespace, route.deployment)
            if dep is None:
                raise TimeoutError(f"revision {route.revision} disappeared")
            if int((dep.get("status") or {}).get("readyReplicas") or 0) > 0:
                return time.monotonic() - t0
            time.sleep(0.05)
        raise TimeoutError(f"no pod of {route.revision} became ready within {timeout:.0f}s")

    def route_for(self, host: str) -> Route | None:
        with self.lock:
            return self.routes.get(host)


def _progress_deadline(annotations: dict[str, str], deployment_cfg: dict[str, str]) -> int:
    raw = annotations.get("serving.knative.dev/progress-deadline") or deployment_cfg.get("progress-deadline") or "600s"
    return max(1, int(goduration.parse(raw)))


def _hosts(url: str, address: str) -> list[str]:
    host = url.split("://", 1)[1]
    local = address.split("://", 1)[1]  # name.ns.svc.cluster.local
    name_ns = local.removesuffix(".svc.cluster.local")
    return list(dict.fromkeys([host, local, f"{name_ns}.svc", name_ns]))
