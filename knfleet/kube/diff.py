"""Does a cluster match a stage's desired objects? Cheaper than `kubectl diff`, and as exact.

The fast path needs no dry run: server-side apply records, per object, the fields each manager owns. When
knfleet applies an object it notes three things in the ConfigMap `kube-system/knfleet-state`: the object's
uid, a hash of the desired object, and a hash of the fields knfleet then owned (its `managedFields` entry).
Anyone who changes a field knfleet owns (kubectl edit, patch, client-side apply, a forced apply) takes that
field over, so knfleet's field set changes; anyone who deletes the object changes its uid. So an object whose
uid, desired hash and field hash all match the note is exactly as knfleet left it, and one list per kind and
namespace tells that for every object. Everything else (no note, a changed desired state, someone else's
change) is checked the exact way: a server-side dry-run apply compared with the live object, concurrently, field
by field (knfleet.kube.fielddiff: what differs, and which field manager wrote it last). Objects that exist but were
never applied by knfleet are dry-run too, to show what the first apply would change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from knfleet.kube import fielddiff
from knfleet.kube.client import FIELD_MANAGER, Cluster, KubeError, NotFound, WebhookUnavailable, ref

STATE_NS, STATE_NAME, STATE_KEY = "kube-system", "knfleet-state", "applied.json"


def desired_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def fields_hash(live: dict[str, Any]) -> str | None:
    """Hash of the fields knfleet owns on the object (its server-side apply entry), None when it owns none."""
    for m in (live.get("metadata") or {}).get("managedFields") or []:
        if m.get("manager") == FIELD_MANAGER and m.get("operation") == "Apply" and not m.get("subresource"):
            return hashlib.sha256(json.dumps(m.get("fieldsV1") or {}, sort_keys=True).encode()).hexdigest()[:20]
    return None


def owns_nothing(obj: dict[str, Any]) -> bool:
    """An object that sets nothing but its identity (a bare Namespace): the API keeps no field-manager entry for
    it, so existing is all there is to match."""
    meta = obj.get("metadata") or {}
    return set(obj) <= {"apiVersion", "kind", "metadata"} and set(meta) <= {"name", "namespace"}


def note(obj: dict[str, Any], live: dict[str, Any]) -> str | None:
    fh = fields_hash(live)
    return f"{live['metadata']['uid']} {desired_hash(obj)} {fh}" if fh else None


class Records:
    """knfleet's notes of what it applied (see the module doc), kept in one ConfigMap per cluster."""

    def __init__(self, entries: dict[str, str] | None = None, resource_version: str | None = None) -> None:
        self.entries = dict(entries or {})
        self.resource_version = resource_version
        self.dirty = False

    @classmethod
    def load(cls, cluster: Cluster) -> Records:
        try:
            cm = cluster.get("v1", "ConfigMap", STATE_NAME, STATE_NS)
        except KubeError:
            return cls()
        if not cm:
            return cls()
        try:
            entries = json.loads((cm.get("data") or {}).get(STATE_KEY) or "{}")
        except ValueError:
            entries = {}
        return cls(entries if isinstance(entries, dict) else {}, cm["metadata"].get("resourceVersion"))

    def matches(self, obj: dict[str, Any], live: dict[str, Any]) -> bool:
        want = note(obj, live)
        return want is not None and self.entries.get(ref(obj)) == want

    def remember(self, obj: dict[str, Any], live: dict[str, Any]) -> None:
        n = note(obj, live)
        if n and self.entries.get(ref(obj)) != n:
            self.entries[ref(obj)] = n
            self.dirty = True

    def forget(self, obj: dict[str, Any]) -> None:
        if self.entries.pop(ref(obj), None) is not None:
            self.dirty = True

    def save(self, cluster: Cluster) -> None:
        """Write the notes if they changed (bookkeeping: not a change of the cluster's desired state)."""
        if not self.dirty:
            return
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": STATE_NAME, "namespace": STATE_NS,
                             "labels": {"app.kubernetes.io/managed-by": "knfleet"}},
                "data": {STATE_KEY: json.dumps(self.entries, sort_keys=True, separators=(",", ":"))}}
        cluster.apply(body, invalidate=False)  # the notes are read once per run, never listed
        self.dirty = False


@dataclass(frozen=True)
class Drift:
    ref: str
    why: str  # "missing" | "differs" | "not applied by knfleet yet" | "not compared: …"
    changes: tuple[fielddiff.Change, ...] = ()  # field by field (from the dry run), when compared
    error: bool = False  # the object could not be compared (keep_going)

    def __str__(self) -> str:
        return self.ref if self.why == "differs" else f"{self.ref} ({self.why})"

    def of_stage(self, stage: str) -> fielddiff.ObjectDiff:
        return fielddiff.ObjectDiff(self.ref, stage, self.why, list(self.changes))


def describe(stage: str, drifted: list[Drift]) -> tuple[list[str], list[dict[str, Any]]]:
    """A stage's drift for people (each object, then each changed field with its last writer) and for the report
    (each object with its changes as RFC 6902 operations)."""
    objects = [d.of_stage(stage) for d in drifted]
    return fielddiff.lines(objects), [o.as_dict() for o in objects]


def list_keys(cluster: Cluster, objects: tuple[dict[str, Any], ...]) -> list[tuple[str, str, str | None, None]]:
    keys = []
    for o in objects:
        res = cluster.resource(o["apiVersion"], o["kind"])
        keys.append((o["apiVersion"], o["kind"], o["metadata"].get("namespace") if res.namespaced else None, None))
    return keys


def drift(cluster: Cluster, objects: tuple[dict[str, Any], ...], records: Records,
          learn: bool = True, keep_going: bool = False) -> list[Drift]:
    """The objects of a stage that differ from the cluster (empty: in sync). With `learn`, objects found equal by a
    dry run are noted, so the next run takes the fast path. A dry run the API server refuses raises, or with
    `keep_going` is that object's drift (`error`), and the others are still compared."""
    missing_kinds = [o for o in objects if not cluster.has(o["apiVersion"], o["kind"])]
    found: list[Drift] = [Drift(ref(o), "missing") for o in missing_kinds]
    objects = tuple(o for o in objects if o not in missing_kinds)
    cluster.list_many(list_keys(cluster, objects))
    slow: list[tuple[dict[str, Any], dict[str, Any], str]] = []
    for o in objects:
        live = cluster.find(o)
        if live is None:
            found.append(Drift(ref(o), "missing"))
        elif owns_nothing(o):
            continue
        elif fields_hash(live) is None:
            slow.append((o, live, "not applied by knfleet yet"))
        elif not records.matches(o, live):
            slow.append((o, live, "differs"))
    if slow:
        results = cluster.parallel([lambda o=o: cluster.apply(o, dry_run=True) for o, _, _ in slow])
        for (o, live, why), dry in zip(slow, results, strict=True):
            if isinstance(dry, NotFound):
                found.append(Drift(ref(o), "missing"))
            elif isinstance(dry, WebhookUnavailable):  # cannot tell: the apply (which waits or repairs) will
                found.append(Drift(ref(o), "not compared: an admission webhook does not answer"))
            elif isinstance(dry, KubeError) and keep_going:
                found.append(Drift(ref(o), f"cannot be compared: {dry}", error=True))
            elif isinstance(dry, KubeError):
                raise dry
            elif (changes := fielddiff.changes(live, dry)) or why != "differs":
                found.append(Drift(ref(o), why, tuple(changes)))
            elif learn:
                records.remember(o, live)
    return found
