"""A list-then-watch cache of one kind of object, as raw dicts (the harness's informer).

The pod runner and the simulator read their objects from these caches instead of listing them on every
tick, so ten idle clusters on two cores stay idle. A watch that expires (410 Gone) or breaks is followed by
a fresh list.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

Keep = Callable[[dict[str, Any]], bool]


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class Cache:
    def __init__(self, list_fn: Callable[..., Any], changed: threading.Event, stop: threading.Event,
                 keep: Keep | None = None, **kwargs: Any) -> None:
        self.list_fn, self.kwargs = list_fn, kwargs
        self.changed, self.stop = changed, stop
        self.keep = keep or (lambda _: True)
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.synced = threading.Event()
        threading.Thread(target=self._run, daemon=True, name=f"cache-{getattr(list_fn, '__name__', '?')}").start()

    def items(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.objects.values())

    def _list(self) -> str:
        doc = json.loads(self.list_fn(_preload_content=False, **self.kwargs).data)
        with self.lock:
            self.objects = {_key(o): o for o in doc.get("items") or [] if self.keep(o)}
        self.synced.set()
        self.changed.set()
        return doc["metadata"]["resourceVersion"]

    def _run(self) -> None:
        rv: str | None = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    rv = self._list()
                resp = self.list_fn(watch=True, resource_version=rv, timeout_seconds=60, allow_watch_bookmarks=True,
                                    _preload_content=False, **self.kwargs)
                for line in iter_resp_lines(resp):
                    if self.stop.is_set():
                        return
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        rv = None if obj.get("code") == 410 else rv
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if event.get("type") == "BOOKMARK":
                        continue
                    key = _key(obj)
                    with self.lock:
                        if event.get("type") == "DELETED" or not self.keep(obj):
                            gone = self.objects.pop(key, None) is not None
                        else:
                            self.objects[key] = obj
                            gone = True
                    if gone:
                        self.changed.set()
            except ApiException as err:
                if err.status == 410:
                    rv = None
                self.stop.wait(1.0)
            except Exception:  # noqa: BLE001 - the apiserver may be restarting, or the kind not served yet
                rv = None
                self.stop.wait(1.0)
