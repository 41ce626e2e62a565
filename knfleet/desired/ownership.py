"""What knfleet may change or delete on a cluster it shares with others: its own model services (by owner label and
field manager), never a namespace of Kubernetes or Knative, nothing it did not create. Pure: no cluster.

- Every model service carries `knfleet.dev/owner=<owner>` (group or host data `owner`, default `default`): each
  inventory (or group) sharing a cluster gives itself its own, and prunes only its own services.
- A service is knfleet's when knfleet's field manager applied it (its `managedFields`); a service that merely
  carries the labels (copied, hand-made) is not deleted, and one knfleet did not create is not taken over by the
  forced apply unless its model says `adopt: true`.
- Model namespaces of Kubernetes and Knative are refused; an existing namespace is used as it is (knfleet creates a
  missing one, and never applies its labels onto one that exists).
- Uninstall removes the release namespaces: what else lives there (made by someone, not by the release or the
  cluster's controllers) is listed, and the uninstall stops unless told `uninstall_foreign=delete`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

FIELD_MANAGER = "knfleet"  # knfleet.kube.client applies everything under this field manager
MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER = "knfleet.dev/owner"
DEFAULT_OWNER = "default"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Namespaces a model may not use: Kubernetes' own (kube-*), the default namespace, and the release namespaces
# (an uninstall deletes those).
RESERVED_NAMESPACES = ("default", "knative-serving", "kourier-system", "knative-nginx")
RESERVED_PREFIX = "kube-"
UNINSTALL_FOREIGN = ("refuse", "delete")


def reserved_namespace(namespace: str) -> bool:
    return namespace.startswith(RESERVED_PREFIX) or namespace in RESERVED_NAMESPACES


def reserved_text() -> str:
    return f"{RESERVED_PREFIX}*, {', '.join(RESERVED_NAMESPACES)}"


def name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def managers(obj: dict[str, Any]) -> list[str]:
    """The field managers of an object's own fields (its managedFields, each once, in order), leaving out those
    that only wrote a subresource (a controller writing `status`)."""
    return list(dict.fromkeys(str(m.get("manager") or "?") for m in (obj.get("metadata") or {}).get("managedFields")
                              or [] if isinstance(m, dict) and not m.get("subresource")))


def applied_by_knfleet(obj: dict[str, Any]) -> bool:
    """knfleet's field manager applied it (server-side apply, its managedFields entry): knfleet made it, or adopted
    it on purpose."""
    return any(isinstance(m, dict) and m.get("manager") == FIELD_MANAGER and m.get("operation") == "Apply"
               for m in (obj.get("metadata") or {}).get("managedFields") or [])


def owner_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(OWNER)


def _managed_by(obj: dict[str, Any]) -> str:
    found = [m for m in managers(obj) if m != FIELD_MANAGER]
    return ", ".join(found) if found else "no field manager"


def takeover_problems(wanted: Iterable[str], live: dict[str, dict[str, Any]], owner: str,
                      adopt: Iterable[str] = ()) -> list[str]:
    """Why the apply must not take over these services ("ns/name" of the models; `live`: the Knative Services on the
    cluster by "ns/name"): one knfleet did not create, or one another owner's knfleet manages. A model with
    `adopt: true` takes its service over."""
    out = []
    adopting = set(adopt)
    for ref in wanted:
        obj = live.get(ref)
        if obj is None or ref in adopting:
            continue
        if not applied_by_knfleet(obj):
            out.append(f"Knative Service {ref} exists and knfleet did not create it (managed by {_managed_by(obj)}); "
                       "knfleet does not take it over: rename the model, remove the service, or set adopt: true on "
                       "the model to take it over")
        elif owner_of(obj) not in (None, owner):
            out.append(f"Knative Service {ref} belongs to knfleet owner {owner_of(obj)!r} (another inventory or "
                       f"group), not {owner!r}; set adopt: true on the model to take it over")
    return out


def prunable(live: Iterable[dict[str, Any]], keep: Iterable[str], owner: str
             ) -> tuple[list[dict[str, Any]], list[str]]:
    """Of the Knative Services carrying this owner's labels, those to delete (applied by knfleet, not among `keep`)
    and, named, those left alone because knfleet's field manager does not manage them (labels copied or
    hand-made)."""
    kept = set(keep)
    delete, left = [], []
    for obj in live:
        ref = name_of(obj)
        if ref in kept or owner_of(obj) != owner or (obj.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if applied_by_knfleet(obj):
            delete.append(obj)
        else:
            left.append(f"{ref} (carries owner {owner!r} but is managed by {_managed_by(obj)}, not knfleet)")
    return sorted(delete, key=name_of), sorted(left)


# --- uninstall: what else lives in the release namespaces ---------------------------------------------------------
# Kinds the cluster and Knative make there by themselves, without an owner reference (events, leader-election
# leases, the endpoints of Services); pods, replica sets … carry one and are told apart by it
MADE_BY_THE_CLUSTER = frozenset({
    ("", "Event"), ("events.k8s.io", "Event"), ("coordination.k8s.io", "Lease"), ("", "Endpoints"),
    ("discovery.k8s.io", "EndpointSlice"), ("authorization.k8s.io", "LocalSubjectAccessReview"),
    ("metrics.k8s.io", "PodMetrics"),
})
# Objects every namespace gets from Kubernetes' controllers
MADE_IN_EVERY_NAMESPACE = frozenset({("", "ConfigMap", "kube-root-ca.crt"), ("", "ServiceAccount", "default")})
# The field managers of the cluster's and Knative's controllers: an object only they wrote was made for the release
CONTROLLER_MANAGERS = frozenset({
    "kube-controller-manager", "kube-apiserver", "kube-scheduler", "kubelet", "controller", "webhook", "autoscaler",
    "activator", "autoscaler-hpa", "net-kourier-controller", "kourier", "knative-operator",
})


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def foreign_objects(found: Iterable[dict[str, Any]], release: Iterable[dict[str, Any]]) -> list[str]:
    """Objects in the release namespaces the uninstall did not create and the cluster did not make for the release:
    not in the release (or knfleet's proxy), not owned by another object, not of a kind the cluster makes by itself,
    not written only by the cluster's or Knative's controllers (or knfleet). `Kind ns/name (managed by …)` each."""
    ours = {(_group(o.get("apiVersion", "")), o.get("kind"), (o.get("metadata") or {}).get("namespace"),
             (o.get("metadata") or {}).get("name")) for o in release}
    out = []
    for o in found:
        meta = o.get("metadata") or {}
        group, kind = _group(o.get("apiVersion", "")), o.get("kind")
        if (group, kind, meta.get("namespace"), meta.get("name")) in ours or (group, kind) in MADE_BY_THE_CLUSTER:
            continue
        if (group, kind, meta.get("name")) in MADE_IN_EVERY_NAMESPACE or meta.get("ownerReferences"):
            continue
        who = set(managers(o))
        if who and who <= CONTROLLER_MANAGERS | {FIELD_MANAGER}:
            continue  # written only by knfleet (its post-install Jobs too) and the controllers
        if kind == "Secret" and (o.get("type") or "").startswith("kubernetes.io/service-account-token"):
            continue
        out.append(f"{kind} {meta.get('namespace')}/{meta.get('name')} (managed by {_managed_by(o)})")
    return sorted(out)
