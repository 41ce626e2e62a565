"""Objects a run writes (the lock's Lease), kept per simulated cluster with real resourceVersion semantics:
create of an existing name -> 409 AlreadyExists; update or delete with a stale resourceVersion or another uid ->
409 Conflict; get returns the current object; 404 for what is not there."""

from __future__ import annotations

import copy
import itertools
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

# /apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>]  or  /api/v1/namespaces/<ns>/<plural>[/<name>]
OBJECT_PATH = re.compile(r"^(?P<base>/apis?/(?:[^/]+/)?v[0-9a-z]+/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+))"
                         r"(?:/(?P<name>[^/]+))?$")
STATEFUL_PLURALS = frozenset({"leases"})

_rv = itertools.count(100000)  # resourceVersions are unique across the server, as an etcd revision is per cluster


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure" if code >= 300 else "Success",
            "reason": reason, "message": message, "code": code}


def stateful(path: str) -> bool:
    m = OBJECT_PATH.match(path)
    return bool(m) and m["plural"] in STATEFUL_PLURALS


class Store:
    """One simulated cluster's stateful objects, by item path."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        m = OBJECT_PATH.match(path)
        if not m:
            return 404, status(404, "NotFound", f"{path} is not an object path")
        method = method.upper()
        if m["name"] is None:
            if method == "POST":
                return self.create(m["base"], m["ns"], m["plural"], json.loads(body or b"{}"))
            return 405, status(405, "MethodNotAllowed", f"{method} {path}")
        cur = self.objects.get(path)
        what = f'{m["plural"]} "{m["name"]}"'
        if method == "GET":
            return (200, copy.deepcopy(cur)) if cur else (404, status(404, "NotFound", f"{what} not found"))
        if cur is None:
            return 404, status(404, "NotFound", f"{what} not found")
        doc = json.loads(body or b"{}")
        if method == "PUT":
            meta = doc.get("metadata") or {}
            conflict = self._precondition(cur, meta.get("uid"), meta.get("resourceVersion"), what)
            if conflict:
                return conflict
            new = copy.deepcopy(doc)
            new["metadata"] = {**cur["metadata"], **{k: v for k, v in meta.items() if k not in ("uid",)}}
            return self._store(path, new)
        if method == "DELETE":
            pre = doc.get("preconditions") or {}
            conflict = self._precondition(cur, pre.get("uid"), pre.get("resourceVersion"), what)
            if conflict:
                return conflict
            del self.objects[path]
            return 200, status(200, "", "")
        return 405, status(405, "MethodNotAllowed", f"{method} {path}")

    def create(self, base: str, ns: str, plural: str, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = (doc.get("metadata") or {}).get("name")
        if not name:
            return 422, status(422, "Invalid", "metadata.name: Required value")
        path = f"{base}/{name}"
        if path in self.objects:
            return 409, status(409, "AlreadyExists", f'{plural} "{name}" already exists')
        new = copy.deepcopy(doc)
        new["metadata"] = {**(doc.get("metadata") or {}), "namespace": ns, "uid": str(uuid.uuid4()),
                           "creationTimestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        code, obj = self._store(path, new)
        return 201, obj

    def _store(self, path: str, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        obj["metadata"]["resourceVersion"] = str(next(_rv))
        self.objects[path] = obj
        return 200, copy.deepcopy(obj)

    @staticmethod
    def _precondition(cur: dict[str, Any], uid: str | None, rv: str | None,
                      what: str) -> tuple[int, dict[str, Any]] | None:
        meta = cur["metadata"]
        if uid and uid != meta["uid"]:
            return 409, status(409, "Conflict", f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                                                f"{meta['uid']} ({what})")
        if rv and rv != meta["resourceVersion"]:
            return 409, status(409, "Conflict", f"Operation cannot be fulfilled on {what}: the object has been "
                                                "modified; please apply your changes to the latest version and try "
                                                "again")
        return None
