"""The part of Knative's autoscaler (KPA) that needs a network to pods, simulated by its observable contract.

The real autoscaler scrapes each revision's queue-proxies for concurrency; here the simulated gateway
reports the requests it holds and serves. For every PodAutoscaler of the KPA class this module does what
knative.dev/serving's kpa reconciler does: create the ServerlessService (Proxy mode until the revision can
take traffic directly), scale the revision's Deployment through its scale subresource (initial scale first,
then by concurrency, to zero after the idle window when min-scale allows), and write the PA's status
(desiredScale, actualScale, serviceName, the Active / ScaleTargetInitialized / SKSReady conditions and
Ready). Knative's real controller turns that status into the Revision's and Service's readiness.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kubernetes.client.rest import ApiException

from localcluster.simulator import autoscale
from localcluster.simulator.kubeapi import KNATIVE_NS, PA, REVISION_LABEL, SKS, Kube, Snapshot, key

KPA_CLASS = "kpa.autoscaling.knative.dev"
HPA_CLASS = "hpa.autoscaling.knative.dev"
CLASS_ANNOTATION = "autoscaling.knative.dev/class"
# Which Deployment in knative-serving must run for a class to be served (as in a real cluster).
CLASS_OWNER = {KPA_CLASS: "autoscaler", HPA_CLASS: "autoscaler-hpa"}
MIN_ACTIVATORS = 2
PA_CONDITIONS = ("Active", "ScaleTargetInitialized", "SKSReady")
NO_TRAFFIC = "NoTraffic"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Traffic:
    inflight: int = 0
    peak: int = 0
    last_request: float = field(default_factory=time.monotonic)


def condition_of(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def is_true(obj: dict[str, Any], kind: str) -> bool:
    return condition_of(obj, kind).get("status") == "True"


def living_ready(conds: dict[str, dict[str, str]], order: tuple[str, ...]) -> dict[str, str]:
    """knative.dev/pkg's living condition set: Ready is False if a dependent is, Unknown if one is, else True."""
    for status in ("False", "Unknown"):
        bad = next((conds.get(k, {}) for k in order if conds.get(k, {}).get("status", "Unknown") == status), None)
        if bad is not None:
            out = {"type": "Ready", "status": status}
            for f in ("reason", "message"):
                if bad.get(f):
                    out[f] = bad[f]
            return out
    return {"type": "Ready", "status": "True"}


def pod_counts(pods: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """ready, notReady, pending, terminating: as knative's PodAccessor counts them."""
    ready = not_ready = pending = terminating = 0
    for p in pods:
        st = p.get("status") or {}
        if p["metadata"].get("deletionTimestamp"):
            terminating += 1
        elif st.get("phase") == "Pending":
            pending += 1
        elif st.get("phase") == "Running" and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                   for c in st.get("conditions") or []):
            ready += 1
        else:
            not_ready += 1
    return ready, not_ready, pending, terminating


class Autoscaler:
    def __init__(self, kube: Kube, time_factor: float = 1.0, log: Callable[[str], None] = print) -> None:
        self.kube = kube
        self.time_factor = time_factor
        self.log = log
        self.lock = threading.Lock()
        self.traffic: dict[tuple[str, str], Traffic] = {}
        self.wake = threading.Event()

    # --- traffic, reported by the gateway (the activator and queue-proxies in a real cluster) ---------------
    def begin(self, ns: str, revision: str) -> None:
        with self.lock:
            t = self.traffic.setdefault((ns, revision), Traffic())
            t.inflight += 1
            t.peak = max(t.peak, t.inflight)
            t.last_request = time.monotonic()
        self.wake.set()

    def end(self, ns: str, revision: str) -> None:
        with self.lock:
            t = self.traffic.setdefault((ns, revision), Traffic())
            t.inflight = max(0, t.inflight - 1)
            t.last_request = time.monotonic()
        self.wake.set()

    # --- reconcile ------------------------------------------------------------------------------------------
    def reconcile(self, snap: Snapshot) -> None:
        live = set()
        for pa in snap.pas:
            cls = (pa["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION, KPA_CLASS)
            owner = CLASS_OWNER.get(cls)
            if owner is None or not snap.available(KNATIVE_NS, owner) or pa["metadata"].get("deletionTimestamp"):
                continue
            live.add(key(pa))
            try:
                self._pa(pa, snap)
            except Exception as err:  # noqa: BLE001 - one PA must not stop the others
                self.log(f"pa {key(pa)[0]}/{key(pa)[1]}: {err}")
        with self.lock:
            for k in [k for k in self.traffic if k not in live and k not in {key(p) for p in snap.pas}]:
                self.traffic.pop(k, None)

    def _want(self, pa: dict[str, Any], settings: autoscale.Settings, current: int, initialized: bool) -> int:
        if not initialized:
            return autoscale.initial_replicas(settings)
        with self.lock:
            t = self.traffic.setdefault(key(pa), Traffic())
            idle_for = time.monotonic() - t.last_request if t.inflight == 0 else 0.0
            peak = max(t.peak, t.inflight)
            t.peak = t.inflight  # the peak is per tick of the stable window
        return autoscale.desired_replicas(settings, current, peak, idle_for, self.time_factor, True)

    def _pa(self, pa: dict[str, Any], snap: Snapshot) -> None:
        ns, name = key(pa)
        meta, spec = pa["metadata"], pa.get("spec") or {}
        status = pa.get("status") or {}
        settings = autoscale.settings(meta.get("annotations") or {}, snap.autoscaler_config)
        if spec.get("reachability") == "Unreachable":  # not routed: min-scale no longer holds it up
            settings = dataclasses.replace(settings, min=0)
        initialized = is_true(pa, "ScaleTargetInitialized")
        sks = snap.sks.get((ns, name))
        conds: dict[str, dict[str, str]] = {c["type"]: c for c in status.get("conditions") or []}
        new = dict(status)
        target = (spec.get("scaleTargetRef") or {}).get("name", "")
        if sks is None or not (sks.get("status") or {}).get("privateServiceName"):
            if sks is None:
                try:
                    self.kube.create(SKS, ns, self._sks(pa, "Proxy"))
                    self.log(f"{ns}/{name}: created ServerlessService (Proxy)")
                except ApiException as err:
                    if err.status != 409:  # already there: the cache has not seen it yet
                        raise
            conds["SKSReady"] = {"type": "SKSReady", "status": "Unknown", "reason": "NotReady",
                                 "message": "No Private Service Name"}
            want, ready = -1, 0
        else:
            new["metricsServiceName"] = sks["status"]["privateServiceName"]
            dep = snap.deployments.get((ns, (meta.get("labels") or {}).get(REVISION_LABEL, "")))
            current = int(((dep or {}).get("spec") or {}).get("replicas") or 0)
            want = self._want(pa, settings, current, initialized)
            if dep is not None and current != want and target:
                self.kube.scale(ns, target, want)
                self.log(f"{ns}/{name}: scaled {current} -> {want}")
            pods = [p for p in snap.pods if p["metadata"]["namespace"] == ns
                    and (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == (meta.get("labels") or {}).get(
                        REVISION_LABEL)]
            ready = pod_counts(pods)[0]
            tbc = float(autoscale.annotation(meta.get("annotations") or {}, "target-burst-capacity")
                        or snap.autoscaler_config.get("target-burst-capacity") or 211)
            capacity = ready * settings.target * settings.utilization / 100.0
            mode = "Serve" if want > 0 and tbc != -1 and capacity - tbc >= 0 else "Proxy"
            if (sks.get("spec") or {}).get("mode") != mode:
                self.kube.replace_spec(SKS, sks, self._sks(pa, mode)["spec"])
            new["serviceName"] = sks["status"].get("serviceName", "")
            if is_true(sks, "Ready"):
                conds["SKSReady"] = {"type": "SKSReady", "status": "True"}
            else:
                conds["SKSReady"] = {"type": "SKSReady", "status": "Unknown", "reason": "NotReady",
                                     "message": condition_of(sks, "Ready").get("message", "")}
        new["actualScale"] = ready
        if not (want == -1 and status.get("desiredScale") is not None and status["desiredScale"] >= 0):
            new["desiredScale"] = want
        self._active(conds, settings, initialized, want, ready, bool(new.get("serviceName")))
        self._write(pa, new, conds)

    @staticmethod
    def _sks(pa: dict[str, Any], mode: str) -> dict[str, Any]:
        meta = pa["metadata"]
        ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k == "autoscaling.knative.dev/metric"}
        return {
            "apiVersion": "networking.internal.knative.dev/v1alpha1", "kind": "ServerlessService",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": dict(meta.get("labels") or {}),
                         "annotations": ann,
                         "ownerReferences": [{"apiVersion": "autoscaling.internal.knative.dev/v1alpha1",
                                              "kind": "PodAutoscaler", "name": meta["name"], "uid": meta["uid"],
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"mode": mode, "objectRef": (pa.get("spec") or {}).get("scaleTargetRef"),
                     "protocolType": (pa.get("spec") or {}).get("protocolType", "http1"),
                     "numActivators": MIN_ACTIVATORS},
        }

    @staticmethod
    def _active(conds: dict[str, dict[str, str]], s: autoscale.Settings, initialized: bool, want: int,
                ready: int, has_service: bool) -> None:
        """computeActiveCondition of knative's kpa reconciler (the table in its comment)."""
        min_ready = max(s.min, s.initial) if not initialized else max(s.min, 1)
        if ready >= min_ready and has_service:
            conds["ScaleTargetInitialized"] = {"type": "ScaleTargetInitialized", "status": "True"}
        active = conds.get("Active", {})
        inactive = active.get("status") == "False"
        activating = active.get("status") == "Unknown" and active.get("reason") == "Queued"
        if want == 0 or min_ready == 0:
            if activating and min_ready > 0:
                conds["Active"] = {"type": "Active", "status": "False", "reason": "TimedOut",
                                   "message": "The target could not be activated."}
            else:
                conds["Active"] = {"type": "Active", "status": "False", "reason": NO_TRAFFIC,
                                   "message": "The target is not receiving traffic."}
        elif ready < min_ready:
            if want > 0 or not inactive:
                conds["Active"] = {"type": "Active", "status": "Unknown", "reason": "Queued",
                                   "message": "Requests to the target are being buffered as resources are provisioned."}
            else:
                conds["Active"] = {"type": "Active", "status": "False", "reason": NO_TRAFFIC,
                                   "message": "The target is not receiving traffic."}
        elif want > 0 or not inactive:
            conds["Active"] = {"type": "Active", "status": "True"}
        for k in PA_CONDITIONS:
            conds.setdefault(k, {"type": k, "status": "Unknown"})

    def _write(self, pa: dict[str, Any], new: dict[str, Any], conds: dict[str, dict[str, str]]) -> None:
        old = pa.get("status") or {}
        old_conds = {c["type"]: c for c in old.get("conditions") or []}
        conds["Ready"] = living_ready(conds, PA_CONDITIONS)
        out = []
        for kind in ("Active", "Ready", "SKSReady", "ScaleTargetInitialized"):
            c = {k: v for k, v in conds[kind].items() if k != "lastTransitionTime"}
            prev = old_conds.get(kind) or {}
            c["lastTransitionTime"] = prev["lastTransitionTime"] if prev.get("status") == c["status"] \
                and prev.get("lastTransitionTime") else now_iso()
            out.append(c)
        new = {**new, "conditions": out, "observedGeneration": pa["metadata"].get("generation", 1)}

        def strip(st: dict[str, Any]) -> Any:
            return {**st, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                         for c in st.get("conditions") or []]}
        if strip(new) != strip(old):
            self.kube.patch_status(PA, pa, new)

    # --- the activator's hold --------------------------------------------------------------------------------
    def ready_replicas(self, ns: str, revision: str) -> int:
        dep = self.kube.deployment(ns, f"{revision}-deployment")
        return int(((dep or {}).get("status") or {}).get("readyReplicas") or 0)

    def activate(self, ns: str, revision: str, timeout: float) -> float:
        """Hold a request (already counted by begin()) until the revision has a ready pod; the seconds waited."""
        t0 = time.monotonic()
        while True:
            if self.ready_replicas(ns, revision) > 0:
                return time.monotonic() - t0
            if time.monotonic() - t0 >= timeout:
                raise TimeoutError(f"no pod of revision {revision} became ready within {timeout:.0f}s")
            self.wake.set()
            time.sleep(0.05)
