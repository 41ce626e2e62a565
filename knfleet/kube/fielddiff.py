"""Which fields of an object a run would change, and who wrote each of them last. Pure: no cluster.

The input is the live object and the result of a server-side dry-run apply of the desired one (what the API server
would store: admission webhooks' defaults are in both), as knfleet.kube.diff fetches them. The output is one
Change per field:

    spec.template.spec.containers[name=vllm].env[name=MAX_MODEL_LEN].value: (changed)  kubectl-edit 2026-12-01T09:12Z
    data.stable-window: "90s" -> "60s"                                                  kubectl-patch 2026-12-01T09:14Z

1. **Normalise** both objects: what a dry run changes on every write, or what is not desired state, goes
   (metadata.managedFields, resourceVersion, generation, uid, creationTimestamp, status, and Knative's
   serving.knative.dev/creator and lastModifier annotations, which its webhook rewrites on every update).
2. **Lists by key**: a list whose items have a key (containers and env by `name`, ports by `containerPort`, volume
   mounts by `mountPath`, ... see KEYS) becomes a mapping `[name=vllm] -> item`, so that items are matched by key,
   not by position; tolerations are a set (an item is its whole content). Other lists are atomic, as server-side
   apply treats `args` or `command`: a change anywhere replaces the list.
3. **Diff** the two trees with DeepDiff: each difference is a path (field names and list keys), an old value (live)
   and a new one (what the apply would write).
4. **Last writer**: the live object's managedFields entry whose fieldsV1 (a trie of `f:<field>`, `k:{key}`,
   `v:<value>`, `i:<index>`) holds the path, or an atomic field above it; the newest `time` wins. A field missing from
   the live object has no writer (someone removed it, or it was never there).
5. **Secrets**: Secret data and every `env` value are shown as `(changed)`, never in clear (valueFrom references
   are shown); so is kubectl's last-applied-configuration annotation, a copy of a whole object.

`patch()` gives the same changes as RFC 6902 operations on the live object (JSON pointers with list indices),
each with its manager and time, for the JSON report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from deepdiff import DeepDiff
from deepdiff.helper import notpresent

HIDDEN = "(changed)"
IGNORED_META = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink",
                "deletionTimestamp", "deletionGracePeriodSeconds")
IGNORED_ANNOTATIONS = ("serving.knative.dev/creator", "serving.knative.dev/lastModifier")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SET = "set"  # an item is identified by its whole content (tolerations)
# A list field's key candidates, tried in order: the first whose fields every item of both sides has, with values
# unique on each side, keys it. None of them fits (or no entry, and items without a unique `name`): atomic.
KEYS: dict[str, tuple[tuple[str, ...], ...] | str] = {
    "ports": (("containerPort",), ("port",), ("name",), ("containerPort", "protocol"), ("port", "protocol")),
    "volumeMounts": (("mountPath",),),
    "volumeDevices": (("devicePath",),),
    "conditions": (("type",),),
    "hostAliases": (("ip",),),
    "ownerReferences": (("uid",),),
    "topologySpreadConstraints": (("topologyKey", "whenUnsatisfiable"),),
    "traffic": (("tag",), ("revisionName",)),
    "tolerations": SET,
}
DEFAULT_KEYS: tuple[tuple[str, ...], ...] = (("name",),)
PLAIN = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Item:
    """A keyed list item in a path: its key fields (or, for a set, its whole content) and where it sits in the live
    and the desired list (None: not there)."""

    key: tuple[tuple[str, Any], ...]
    live_index: int | None
    desired_index: int | None
    is_set: bool = False

    @property
    def label(self) -> str:
        return "[" + ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}"
                              for k, v in self.key) + "]"


Step = str | Item  # a field name, or a keyed list item


@dataclass(frozen=True)
class Change:
    """One changed field: old (live) -> new (what the apply writes); MISSING-free: `op` says which exist."""

    path: tuple[Step, ...]
    op: str  # replace | add (not on the live object) | remove (the apply would remove it)
    old: Any = None
    new: Any = None
    hidden: bool = False
    manager: str | None = None
    time: str | None = None

    @property
    def field(self) -> str:
        return path_text(self.path)


def short_time(t: str) -> str:
    """2026-12-01T09:12:33Z -> 2026-12-01T09:12Z."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d)", t or "")
    return f"{m.group(1)}Z" if m else t


def _short(value: Any, most: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= most else text[:most - 1] + "…"


def path_text(path: tuple[Step, ...]) -> str:
    """spec.template.spec.containers[name=vllm].env[name=X].value; odd keys quoted: metadata.annotations["a.b/c"]."""
    out = ""
    for s in path:
        if isinstance(s, Item):
            out += s.label
        elif PLAIN.match(s):
            out += f".{s}" if out else s
        else:
            out += f"[{json.dumps(s)}]"
    return out


def pointer(path: tuple[Step, ...], append: bool = False) -> str:
    """RFC 6901 pointer into the live object; list items by their live index (`-`: appended, for an add)."""
    parts = []
    for i, s in enumerate(path):
        if isinstance(s, Item):
            last = i == len(path) - 1
            parts.append("-" if (append and last) or s.live_index is None else str(s.live_index))
        else:
            parts.append(s.replace("~", "~0").replace("/", "~1"))
    return "".join(f"/{p}" for p in parts)


# --- 1. normalise ----------------------------------------------------------------------------------------------
def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what is not desired state (see the module doc)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in IGNORED_META}
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in IGNORED_ANNOTATIONS}
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    if "metadata" in obj:
        out["metadata"] = meta
    return out


# --- 2. lists by key -----------------------------------------------------------------------------------------------
class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _key_of(fieldname: str, a: Any, b: Any) -> tuple[str, ...] | str | None:
    """The key fields of list field `fieldname` given both sides' lists (MISSING allowed), SET, or None (atomic)."""
    sides = [x for x in (a, b) if x is not MISSING]
    if not all(isinstance(x, list) for x in sides):
        return None
    items = [i for x in sides for i in x]
    if not all(isinstance(i, dict) for i in items):
        return None
    spec = KEYS.get(fieldname, DEFAULT_KEYS)
    if spec == SET:
        return SET if all(len({json.dumps(i, sort_keys=True) for i in x}) == len(x) for x in sides) else None
    for fields in spec:
        if all(f in i for i in items for f in fields) and \
                all(len({tuple(json.dumps(i[f]) for f in fields) for i in x}) == len(x) for x in sides):
            return fields
    return None


def _item_key(item: dict[str, Any], key: tuple[str, ...] | str) -> tuple[tuple[str, Any], ...]:
    if key == SET:
        return tuple(sorted(item.items()))
    return tuple((f, item[f]) for f in key)


def _ident(k: tuple[tuple[str, Any], ...]) -> str:
    return json.dumps(k, sort_keys=True)


def keyed(a: Any, b: Any, path: tuple[str, ...] = (), items: dict[tuple[str, ...], Item] | None = None,
          fieldname: str = "") -> tuple[Any, Any, dict[tuple[str, ...], Item]]:
    """Both trees with keyed lists turned into mappings `label -> item` (labels agreeing between the two sides), and
    every keyed item by its path of labels. Either side may be MISSING."""
    items = {} if items is None else items
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) or a is MISSING) or not (isinstance(b, dict) or b is MISSING):
            return a, b, items  # a type change: compared whole
        da, db = ({} if a is MISSING else a), ({} if b is MISSING else b)
        na: dict[str, Any] = {}
        nb: dict[str, Any] = {}
        for k in list(da) + [k for k in db if k not in da]:
            x, y, _ = keyed(da.get(k, MISSING), db.get(k, MISSING), (*path, k), items, k)
            if x is not MISSING:
                na[k] = x
            if y is not MISSING:
                nb[k] = y
        return (MISSING if a is MISSING else na), (MISSING if b is MISSING else nb), items
    if isinstance(a, list) or isinstance(b, list):
        key = _key_of(fieldname, a, b)
        if key is None:
            return a, b, items
        la, lb = ([] if a is MISSING else a), ([] if b is MISSING else b)
        ia = {_ident(_item_key(i, key)): n for n, i in enumerate(la)}
        ib = {_ident(_item_key(i, key)): n for n, i in enumerate(lb)}
        na, nb = {}, {}
        for ident in list(ia) + [i for i in ib if i not in ia]:
            src = la[ia[ident]] if ident in ia else lb[ib[ident]]
            item = Item(_item_key(src, key), ia.get(ident), ib.get(ident), key == SET)
            label = item.label
            items[(*path, label)] = item
            x, y, _ = keyed(la[ia[ident]] if ident in ia else MISSING, lb[ib[ident]] if ident in ib else MISSING,
                            (*path, label), items, "")
            if x is not MISSING:
                na[label] = x
            if y is not MISSING:
                nb[label] = y
        return (MISSING if a is MISSING else na), (MISSING if b is MISSING else nb), items
    return a, b, items


# --- 4. last writer ------------------------------------------------------------------------------------------------
def _child(node: dict[str, Any], step: Step, live_at: Any) -> dict[str, Any] | None:
    if isinstance(step, str):
        return node.get(f"f:{step}")
    for k, sub in node.items():
        if k.startswith("k:") or k.startswith("v:"):
            try:
                fields = json.loads(k[2:])
            except ValueError:
                continue
            if k.startswith("v:") and step.is_set and isinstance(live_at, dict) and fields == live_at:
                return sub
            if k.startswith("k:") and isinstance(fields, dict) and isinstance(live_at, dict) and \
                    all(live_at.get(f) == v for f, v in fields.items()):
                return sub
        elif k.startswith("i:") and step.live_index is not None and k[2:] == str(step.live_index):
            return sub
    return None


def holds(trie: dict[str, Any], path: tuple[Step, ...], live: Any) -> bool:
    """The fieldsV1 trie holds the path: every step is in it, or an atomic field (a leaf) above it is."""
    node, here = trie, live
    for step in path:
        if not node:
            return node is not trie  # a leaf above the path: an atomic value holding it
        here_next = _at(here, step)
        child = _child(node, step, here_next)
        if child is None:
            return False
        node, here = child, here_next
    return True


def _at(value: Any, step: Step) -> Any:
    if isinstance(step, Item):
        return value[step.live_index] if isinstance(value, list) and step.live_index is not None \
            and step.live_index < len(value) else None
    return value.get(step) if isinstance(value, dict) else None


def last_writer(managed: list[dict[str, Any]], path: tuple[Step, ...], live: dict[str, Any]) \
        -> tuple[str | None, str | None]:
    """(manager, time) of the managedFields entry holding the path, the newest when several do."""
    best: tuple[str, str | None] | None = None
    for m in managed or []:
        trie = m.get("fieldsV1") or {}
        if trie and holds(trie, path, live):
            t = m.get("time")
            if best is None or (t or "") > (best[1] or ""):
                best = (m.get("manager") or "?", t)
    return best if best else (None, None)


# --- 5. what is never shown in clear ---------------------------------------------------------------------------
def _mask_env(value: Any) -> Any:
    """An env list or item with every `value` hidden."""
    if isinstance(value, list):
        return [_mask_env(v) for v in value]
    if isinstance(value, dict):
        return {k: (HIDDEN if k == "value" else v) for k, v in value.items()}
    return value


def _mask_tree(value: Any) -> Any:
    """Every env list inside a value (a container, a pod spec) with its values hidden."""
    if isinstance(value, list):
        return [_mask_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: (_mask_env(v) if k == "env" else _mask_tree(v)) for k, v in value.items()}
    return value


def _env_tail(path: tuple[Step, ...]) -> tuple[Step, ...] | None:
    """The part of the path from a container's `env` on (`env`, `env[name=X]`, `env[name=X].value`), or None."""
    for i in range(len(path) - 1, 0, -1):
        if path[i] == "env" and isinstance(path[i - 1], Item):
            return path[i:]
    return None


def mask(kind: str, path: tuple[Step, ...], value: Any) -> tuple[Any, bool]:
    """The value as it may be shown, and whether anything was hidden."""
    if value is None:
        return None, False
    names = [s for s in path if isinstance(s, str)]
    if kind == "Secret" and names and names[0] in ("data", "stringData"):
        return (HIDDEN if len(path) > 1 or not isinstance(value, dict) else {k: HIDDEN for k in value}), True
    if names and names[-1] == LAST_APPLIED:
        return HIDDEN, True
    if isinstance(value, dict) and LAST_APPLIED in value:
        return {**value, LAST_APPLIED: HIDDEN}, True
    tail = _env_tail(path)
    if tail is not None:
        if len(tail) <= 2:  # the whole env list, or one whole item
            return _mask_env(value), True
        if tail[2] == "value":
            return HIDDEN, True
        return value, False  # valueFrom and its references are shown
    masked = _mask_tree(value)
    return masked, masked != value


# --- 3. the diff ---------------------------------------------------------------------------------------------------
def changes(live: dict[str, Any], desired: dict[str, Any]) -> list[Change]:
    """What a server-side apply whose dry run returned `desired` would change on `live`, field by field, each with
    its last writer on the live object. Empty: in sync."""
    kind = str(desired.get("kind") or live.get("kind") or "")
    a, b, items = keyed(normalise(live), normalise(desired))
    found = DeepDiff(a, b, verbose_level=2, view="tree")
    out: dict[tuple[Any, ...], Change] = {}
    managed = (live.get("metadata") or {}).get("managedFields") or []
    for report_type, levels in found.items():
        for level in levels:
            raw = level.path(output_format="list")
            path, atomic = _steps(raw, items)
            if atomic:  # a change inside an atomic list: the whole list changes
                old, new = _value_at(live, path), _value_at(desired, path)
            else:
                old, new = level.t1, level.t2
            op = "add" if old is notpresent or old is MISSING else \
                "remove" if new is notpresent or new is MISSING else "replace"
            if report_type.endswith("_added") and not atomic:
                op = "add"
            elif report_type.endswith("_removed") and not atomic:
                op = "remove"
            old = None if op == "add" else _plain(old)
            new = None if op == "remove" else _plain(new)
            old, hidden_old = mask(kind, path, old)
            new, hidden_new = mask(kind, path, new)
            manager, when = last_writer(managed, path, live) if op != "add" else (None, None)
            key = tuple(s.label if isinstance(s, Item) else s for s in path)
            out[key] = Change(path, op, old, new, hidden_old or hidden_new, manager, when)
    return sorted(out.values(), key=lambda c: c.field)


def _steps(raw: list[Any], items: dict[tuple[str, ...], Item]) -> tuple[tuple[Step, ...], bool]:
    """DeepDiff's path (names, labels, list indices) as Steps; a list index ends it (the list is atomic)."""
    out: list[Step] = []
    labels: tuple[str, ...] = ()
    for r in raw:
        if isinstance(r, int):
            return tuple(out), True
        labels = (*labels, str(r))
        item = items.get(labels)
        out.append(item if item is not None else str(r))
    return tuple(out), False


def _value_at(obj: Any, path: tuple[Step, ...]) -> Any:
    here = obj
    for s in path:
        if isinstance(s, Item):
            if not isinstance(here, list):
                return MISSING
            match = [i for i in here if isinstance(i, dict) and _item_key(i, SET if s.is_set else
                                                                         tuple(k for k, _ in s.key)) == s.key]
            if not match:
                return MISSING
            here = match[0]
        elif isinstance(here, dict) and s in here:
            here = here[s]
        else:
            return MISSING
    return here


def _plain(value: Any) -> Any:
    """Back from the keyed form: a mapping of labels is shown as the list it stands for."""
    if value is MISSING or value is notpresent:
        return None
    if isinstance(value, dict):
        if value and all(isinstance(k, str) and k.startswith("[") and k.endswith("]") for k in value):
            return [_plain(v) for v in value.values()]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- the JSON report -----------------------------------------------------------------------------------------------
def patch(found: list[Change]) -> list[dict[str, Any]]:
    """RFC 6902 operations turning the live object into the desired one (indices of the live object: replaces and
    map changes first, then list items removed from the last, then items appended), each with its last writer, the
    readable path (`field`) and, for a replace or remove, the old value (`old`). Hidden values read `(changed)`."""
    def order(c: Change) -> tuple[int, list[int]]:
        last = c.path[-1] if c.path else None
        if isinstance(last, Item) and c.op == "remove":
            return 1, [-(last.live_index or 0)]
        if isinstance(last, Item) and c.op == "add":
            return 2, [last.desired_index or 0]
        return 0, []

    ops = []
    for c in sorted(found, key=order):
        last = c.path[-1] if c.path else None
        op: dict[str, Any] = {"op": c.op, "path": pointer(c.path, append=c.op == "add" and isinstance(last, Item))}
        if c.op != "remove":
            op["value"] = c.new
        if c.op != "add":
            op["old"] = c.old
        op.update({"field": c.field, "manager": c.manager, "time": c.time})
        ops.append(op)
    return ops


@dataclass
class ObjectDiff:
    """One object's drift with its field changes, as the report holds it."""

    ref: str
    stage: str
    why: str
    changes: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"object": self.ref, "stage": self.stage, "why": self.why, "patch": patch(self.changes)}


COLUMN = 96  # the last-writer column starts after the longest field text, at most this far in


def _show(value: Any) -> str:
    return HIDDEN if value == HIDDEN else _short(value)


def op_text(op: dict[str, Any]) -> str:
    """One operation of the report as `field: old -> new` (a hidden value: `field: (changed)`)."""
    name = op.get("field") or op.get("path", "")
    if op["op"] == "replace" and op.get("value") == HIDDEN:
        return f"{name}: {HIDDEN}"
    old = "(none)" if op["op"] == "add" else _show(op.get("old"))
    new = "(none)" if op["op"] == "remove" else _show(op.get("value"))
    return f"{name}: {old} -> {new}"


def writer_text(manager: str | None, time: str | None) -> str:
    """The last writer as `manager time` (to the minute), or `-` when no manager holds the field."""
    if not manager:
        return "-"
    return f"{manager} {short_time(time)}" if time else manager


def object_lines(obj: dict[str, Any]) -> list[str]:
    """One object of the report (its operations) as readable lines: the object, then each field with its last
    writer in a column."""
    head = f"{obj['object']} ({obj['stage']})"
    rows = [(op_text(op), writer_text(op.get("manager"), op.get("time"))) for op in obj.get("patch") or []]
    col = min(max((len(r[0]) for r in rows), default=0), COLUMN)
    return [head if obj["why"] == "differs" else f"{head}: {obj['why']}"] + \
        [f"    {text.ljust(col)}  {who}" for text, who in rows]


MOST_MISSING = 6  # a stage with more objects than this, all missing, is one line ("not installed")


def stage_lines(stage: str, objects: list[dict[str, Any]]) -> list[str]:
    """A stage's objects of the report as readable lines; a stage missing entirely is one line."""
    if len(objects) > MOST_MISSING and all(o["why"] == "missing" for o in objects):
        return [f"{stage}: not installed ({len(objects)} objects missing)"]
    return [line for o in objects for line in object_lines(o)]


def lines(diffs: list[ObjectDiff]) -> list[str]:
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for d in diffs:
        by_stage.setdefault(d.stage, []).append(d.as_dict())
    return [line for stage, objects in by_stage.items() for line in stage_lines(stage, objects)]
