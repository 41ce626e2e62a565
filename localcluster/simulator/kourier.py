"""net-kourier's part, simulated by its observable contract: the status of Knative Ingresses of the Kourier
class, its finalizer, and the routing table the gateway serves (what Envoy would be configured with).

net-kourier (knative-extensions/net-kourier 1.17) marks an Ingress of class
`kourier.ingress.networking.knative.dev` ready once Envoy serves it, with `kourier` (external) and
`kourier-internal` as its load balancers, and keeps the finalizer `ingresses.networking.internal.knative.dev`
on it until it has cleaned up. The internal gateway serves every host of every rule; the external one
only the rules of ExternalIP visibility.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from localcluster.simulator.autoscaler import is_true
from localcluster.simulator.kubeapi import KINGRESS, KNATIVE_NS, KOURIER_NS, Kube, Snapshot

KOURIER_CLASS = "kourier.ingress.networking.knative.dev"
CLASS_ANNOTATION = "networking.knative.dev/ingress.class"
FINALIZER = "ingresses.networking.internal.knative.dev"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Split:
    namespace: str
    revision: str
    percent: int
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Path:
    prefix: str
    match_headers: tuple[tuple[str, str], ...]
    splits: tuple[Split, ...]

    def pick(self, draw: float | None = None) -> Split | None:
        """A split chosen by its percent (Envoy's weighted clusters): a split at 0 % never gets a request."""
        weighted = [s for s in self.splits if s.percent > 0]
        if not weighted:
            return self.splits[0] if self.splits else None
        total = sum(s.percent for s in weighted)
        r = (random.random() if draw is None else draw) * total  # noqa: S311 - traffic splitting, not security
        for s in weighted:
            if r < s.percent:
                return s
            r -= s.percent
        return weighted[-1]


@dataclass(frozen=True)
class Rule:
    hosts: tuple[str, ...]
    external: bool
    paths: tuple[Path, ...]

    def path_for(self, path: str, headers: dict[str, str]) -> Path | None:
        for p in self.paths:
            if path.startswith(p.prefix or "/") and all(headers.get(k.lower()) == v for k, v in p.match_headers):
                return p
        return None


def is_kourier(ing: dict[str, Any]) -> bool:
    return (ing["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION) == KOURIER_CLASS


def serving(snap: Snapshot) -> bool:
    """net-kourier reconciles only while its controller and the gateway it configures run."""
    return snap.available(KNATIVE_NS, "net-kourier-controller") and snap.available(KOURIER_NS, "3scale-kourier-gateway")


def load_balancers(cluster_domain: str = "cluster.local") -> dict[str, Any]:
    return {
        "publicLoadBalancer": {"ingress": [{"domainInternal": f"kourier.{KOURIER_NS}.svc.{cluster_domain}"}]},
        "privateLoadBalancer": {"ingress": [{"domainInternal": f"kourier-internal.{KOURIER_NS}.svc.{cluster_domain}"}]},
    }


class Kourier:
    def __init__(self, kube: Kube, log: Callable[[str], None] = print) -> None:
        self.kube = kube
        self.log = log

    def reconcile(self, snap: Snapshot) -> None:
        if not serving(snap):
            return
        for ing in snap.ingresses:
            if not is_kourier(ing):
                continue
            meta = ing["metadata"]
            fins = list(meta.get("finalizers") or [])
            try:
                if meta.get("deletionTimestamp"):
                    if FINALIZER in fins:
                        self.kube.set_finalizers(KINGRESS, ing, [f for f in fins if f != FINALIZER])
                        self.log(f"ingress {meta['namespace']}/{meta['name']}: finalized")
                    continue
                if FINALIZER not in fins:
                    self.kube.set_finalizers(KINGRESS, ing, [*fins, FINALIZER])
                    continue  # the next tick sees the new resourceVersion
                self._status(ing)
            except Exception as err:  # noqa: BLE001 - one Ingress must not stop the others
                self.log(f"ingress {meta['namespace']}/{meta['name']}: {err}")

    def _status(self, ing: dict[str, Any]) -> None:
        gen = ing["metadata"].get("generation", 1)
        st = ing.get("status") or {}
        conds = {c["type"]: c for c in st.get("conditions") or []}
        if st.get("observedGeneration") == gen and all(
                conds.get(k, {}).get("status") == "True" for k in ("Ready", "LoadBalancerReady", "NetworkConfigured")):
            return
        now = now_iso()
        status = {
            "observedGeneration": gen,
            "conditions": [{"type": k, "status": "True", "lastTransitionTime": now}
                           for k in ("LoadBalancerReady", "NetworkConfigured", "Ready")],
            **load_balancers(),
        }
        self.kube.patch_status(KINGRESS, ing, status)
        self.log(f"ingress {ing['metadata']['namespace']}/{ing['metadata']['name']}: ready (generation {gen})")


def routing_table(snap: Snapshot) -> dict[str, list[Rule]]:
    """Host -> the rules that serve it (what Envoy would be configured with): the Kourier Ingresses that are Ready
    or that net-kourier has taken (its finalizer) and marks Ready in this pass. Like net-kourier, which configures
    Envoy first and marks an Ingress Ready after, the caller installs this table before `Kourier.reconcile` writes
    the status: once an Ingress says Ready (and Knative's Route and Service follow), its hosts answer."""
    table: dict[str, list[Rule]] = {}
    if not serving(snap):
        return table
    for ing in snap.ingresses:
        if not is_kourier(ing) or ing["metadata"].get("deletionTimestamp"):
            continue
        if FINALIZER not in (ing["metadata"].get("finalizers") or []) and not is_true(ing, "Ready"):
            continue
        for raw in (ing.get("spec") or {}).get("rules") or []:
            paths = []
            for p in ((raw.get("http") or {}).get("paths") or []):
                splits = tuple(Split(s.get("serviceNamespace") or ing["metadata"]["namespace"], s["serviceName"],
                                     int(s.get("percent", 100)), tuple((s.get("appendHeaders") or {}).items()))
                               for s in p.get("splits") or [])
                match = tuple((k, v["exact"]) for k, v in (p.get("headers") or {}).items()
                              if isinstance(v, dict) and v.get("exact"))
                paths.append(Path(p.get("path") or "/", match, splits))
            rule = Rule(tuple(h.lower() for h in raw.get("hosts") or []), raw.get("visibility") == "ExternalIP",
                        tuple(paths))
            for h in rule.hosts:
                table.setdefault(h, []).append(rule)
    return table
