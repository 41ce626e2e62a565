"""The one Kubernetes layer: a client per cluster, in process.

Built on the `kubernetes` package for what it does well (kubeconfig files, contexts, exec credential
plugins such as `aws eks get-token`, TLS, a pooled connection) and talking plain JSON to the API: server-side
apply (field manager `knfleet`, force), dry runs, get, list, create, patch, delete. Reads are cached per run
and dropped after every write, so every check of a run shares one list per kind and namespace. Every request
has a timeout; every failure is a typed error that names the cluster, the request and Kubernetes' message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from urllib3.util.retry import Retry

from knfleet.errors import ClusterError, InputError, Reason

FIELD_MANAGER = "knfleet"
DISCOVERY_ACCEPT = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
WORKERS = 16
RETRIES = 4  # answers that say "try again" (see retry_delay): at most this many more attempts, ~8s in all
TRANSIENT = frozenset({429, 500, 502, 503, 504})


class KubeError(ClusterError):
    """A request to a cluster failed. `status` is the HTTP status (0: no answer)."""

    code = Reason.API_ERROR

    def __init__(self, cluster: str, what: str, status: int, reason: str, message: str) -> None:
        self.cluster, self.what, self.status, self.reason, self.message = cluster, what, status, reason, message
        super().__init__(f"{what}: {message}" if message else f"{what}: {reason or status}")


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Forbidden(KubeError):
    pass


class Invalid(KubeError):
    pass


class Unreachable(KubeError):
    """No answer: connection refused, TLS failure, timeout."""

    code = Reason.UNREACHABLE


class WebhookUnavailable(KubeError):
    """The apiserver could not call an admission webhook (it is not running or not reachable yet)."""

    code = Reason.WEBHOOK_NOT_READY


class CredentialError(KubeError):
    """The kubeconfig's exec credential plugin failed: nothing is sent to that cluster (anonymously or otherwise).
    The message names the plugin's command and exit code, never its output (which may hold a credential)."""

    code = Reason.PREFLIGHT_FAILED

    def __init__(self, cluster: str, message: str) -> None:
        super().__init__(cluster, "credentials", 0, "CredentialPluginFailed", message)

    def __str__(self) -> str:
        return self.message


def retry_delay(method: str, status: int, retry_after: str | None, attempt: int) -> float | None:
    """Seconds to wait before sending a request again after the answer `status`, or None: give up now.

    As client-go does, a 429 or 5xx carrying Retry-After is sent again whatever the method; beyond client-go, so
    is a 429 without it (priority and fairness shed the request unprocessed), and a read (GET) on a plain
    500/502/503/504 (an etcd timeout, an overloaded aggregated API): reading twice changes nothing.
    A write answered with a plain 5xx (e.g. an admission webhook that failed) is not: its caller decides.
    No answer at all (refused, timeout) is not retried here: a cluster that is down is reported at once, and
    the waits poll again on their own clock."""
    if status not in TRANSIENT:
        return None
    backoff = min(0.5 * 2 ** attempt, 4.0)
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), 4.0)
        except ValueError:
            return backoff
    if status == 429 or method.upper() == "GET":
        return backoff
    return None


def error_for(cluster: str, what: str, status: int, body: str) -> KubeError:
    try:
        st = json.loads(body)
        reason, message = st.get("reason", ""), st.get("message", "") or body
    except ValueError:
        reason, message = "", body.strip()
    if "failed calling webhook" in message:
        return WebhookUnavailable(cluster, what, status, reason, message)
    cls = {404: NotFound, 409: Conflict, 403: Forbidden, 422: Invalid}.get(status, KubeError)
    return cls(cluster, what, status, reason, message)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
        if sub:
            base += f"/{sub}"
        return base


def ref(obj: dict[str, Any]) -> str:
    """Kind/namespace/name (or Kind/name) of an object: how knfleet names objects in its output."""
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{ns}{meta.get('name') or meta.get('generateName', '?')}"


@dataclass(frozen=True)
class Target:
    """How to reach one cluster: its kubeconfig and optionally a context. `allow_insecure` (host data): a plain
    http:// API server may be sent the kubeconfig's credential."""

    name: str
    kubeconfig: str
    context: str | None = None
    request_timeout: float = 30.0
    allow_insecure: bool = False


# --- the exec credential plugin's failures, as the kubernetes package reports them ----------------------------------
# The kubernetes package runs a kubeconfig's `exec` plugin while loading it; when the plugin fails it only logs
# `exec: process returned <code>. <the plugin's stderr>` (through the root logger) and goes on without a credential,
# so requests went out anonymous and the plugin's stderr (which may hold a token) reached the log. knfleet's filter
# takes those records: while a cluster connects, the failure is kept for `connect` to raise as a CredentialError;
# at any other time (a token refreshed mid-run) the record is logged without the plugin's output.
_EXEC_SOURCE = os.path.join("kubernetes", "config", "kube_config.py")
_EXEC_CODE = re.compile(r"exec: process returned (-?\d+)")
_capture = threading.local()


def _exec_failure_text(message: str) -> str:
    m = _EXEC_CODE.match(message)
    if m:
        return f"exit code {m[1]}"
    if message.startswith("exec:"):
        return message.split(".", 1)[0][:200]  # the library's own words up to the first detail
    return message.split(":", 1)[0][:200]  # e.g. "[Errno 2] No such file or directory"


class _ExecLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not record.pathname.endswith(_EXEC_SOURCE) or record.levelno < logging.ERROR:
            return True
        text = _exec_failure_text(record.getMessage())
        if getattr(_capture, "failures", None) is not None:
            _capture.failures.append(text)
            return False
        record.msg, record.args = (f"kubeconfig exec credential plugin failed ({text}); its output is not shown: "
                                   "it may hold a credential"), ()
        return True


_FILTER = _ExecLogFilter()


def _exec_plugin(kubeconfig: str, context: str | None) -> tuple[str, str] | None:
    """(user, command) of the exec credential plugin the kubeconfig's context uses, if any."""
    import yaml

    try:
        with open(kubeconfig, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or []}
        user = contexts[context or doc.get("current-context")].get("user")
        found = {u.get("name"): u.get("user") or {} for u in doc.get("users") or []}.get(user) or {}
        command = (found.get("exec") or {}).get("command")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return None
    return (str(user), str(command)) if command else None


class Cluster:
    """One cluster's client. Not thread-safe for its cache bookkeeping beyond what the lock guards."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = target.name
        self.requests = 0
        self.retried = 0  # requests sent again after a "try again" answer (retry_delay)
        self._api: Any = None
        self._lock = threading.RLock()
        self._discovery: dict[tuple[str, str], Resource] | None = None
        self._lists: dict[tuple[str, str, str | None, str | None], list[dict[str, Any]]] = {}
        self._listed_at: dict[tuple[str, str, str | None, str | None], float] = {}
        self._credential_error: CredentialError | None = None
        self.warnings: list[str] = []  # what connect() found unsafe but allowed (insecure-skip-tls-verify, ...)
        # Consulted before every write and every look of a wait (knfleet.run.lock.Renewer.check): raises when the
        # run no longer holds the cluster's lock, so a run that lost it stops before its next write.
        self.guard: Callable[[str], None] | None = None

    def check_guard(self, what: str) -> None:
        """Raise (the guard's LockLost) when this run may no longer change the cluster."""
        guard = self.guard
        if guard is not None:
            guard(what)

    # --- connection -------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Load the kubeconfig (contexts, exec plugins, TLS). Raises InputError for a kubeconfig it cannot use or
        that would send a credential over plain http:// (unless the host data allows it), CredentialError when its
        exec credential plugin fails. `warnings` says what is unsafe but allowed (insecure-skip-tls-verify)."""
        if self._api is not None:
            return
        if self._credential_error is not None:
            raise self._credential_error
        from kubernetes import config as kconfig  # the import is costly: only when a cluster is used
        from kubernetes.config.config_exception import ConfigException
        from yaml import YAMLError

        root = logging.getLogger()
        if _FILTER not in root.filters:
            root.addFilter(_FILTER)
        _capture.failures = []
        try:
            api = kconfig.new_client_from_config(config_file=self.target.kubeconfig, context=self.target.context,
                                                 persist_config=False)
        except (ConfigException, YAMLError, OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise InputError(f"{self.name}: cannot use kubeconfig {self.target.kubeconfig}"
                             + (f" (context {self.target.context})" if self.target.context else "")
                             + f": {err}") from None
        finally:
            failures, _capture.failures = _capture.failures, None
        if failures:
            user, command = _exec_plugin(self.target.kubeconfig, self.target.context) or ("?", "?")
            self._credential_error = CredentialError(
                self.name, f"the credential plugin {command!r} of user {user!r} in {self.target.kubeconfig} failed "
                           f"({failures[0]}); nothing was sent to the cluster. Its output is not shown (it may hold a "
                           f"credential): run {command!r} by hand to see why (an expired login, a profile, PATH)")
            api.close()
            raise self._credential_error
        self._check_transport(api.configuration)
        # The kubeconfig loader's refresh hook sets `host` again before every request of a token user, and each time
        # the configuration scans the whole environment for proxies (urllib's getproxies): ~0.25 ms a request, for
        # nothing, as the connection pool was built with the proxy already. Setting the proxy pins the one found.
        api.configuration.proxy = api.configuration.proxy
        api.configuration.connection_pool_maxsize = WORKERS
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = WORKERS
        # urllib3's own retries stay for connections (its default of 3) but not for answers: those are
        # retry_delay's, the same for every method and with Retry-After capped (urllib3 would sleep for as long
        # as the server says, and only for some methods).
        api.rest_client.pool_manager.connection_pool_kw["retries"] = Retry(3, respect_retry_after_header=False)
        self._api = api

    def _check_transport(self, cfg: Any) -> None:
        """Refuse to send a credential over plain http:// (unless host data `allow_insecure` says so); note a TLS
        connection whose server certificate is not checked (insecure-skip-tls-verify)."""
        host = str(cfg.host or "")
        credential = bool(cfg.api_key) or bool(cfg.cert_file) or bool(cfg.username) or bool(cfg.password)
        where = f"{self.name}: kubeconfig {self.target.kubeconfig}"
        self.warnings = []
        if host.lower().startswith("http://") and credential:
            if not self.target.allow_insecure:
                raise InputError(f"{where}: the API server {host} is plain http:// and the kubeconfig has a "
                                 "credential, which would go over the network readable by anyone on the path; "
                                 "nothing was sent. Use https://, or set host data allow_insecure: true for a "
                                 "server you trust this way")
            self.warnings.append(f"{where}: the API server {host} is plain http:// and its credential is sent in "
                                 "clear text (host data allow_insecure: true)")
        if host.lower().startswith("https://") and cfg.verify_ssl is False:
            self.warnings.append(f"{where}: insecure-skip-tls-verify is set: the API server's certificate is not "
                                 "checked, so anyone on the path can pose as it and receive the credential; set "
                                 "certificate-authority-data instead")

    def port_forward(self, namespace: str, pod: str, port: int) -> Any:
        """A local listener forwarding to a pod's port through the API server (knfleet.kube.portforward)."""
        from knfleet.kube.portforward import Forward

        self.connect()
        return Forward(self._api, namespace, pod, port, timeout=self.target.request_timeout)

    def exec(self, namespace: str, pod: str, container: str, command: list[str], timeout: float) -> Any:
        """Run `command` in a pod's container through the API server (knfleet.kube.podexec); its ExecResult."""
        from knfleet.kube import podexec

        self.connect()
        return podexec.run(self._api, namespace, pod, container, command, timeout)

    def close(self) -> None:
        if self._api is not None:
            try:
                self._api.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self._api = None

    # --- requests ---------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
                content_type: str | None = None, timeout: float | None = None, accept: str = "application/json",
                what: str | None = None, guarded: bool = True) -> Any:
        """One API request; the decoded JSON answer. Raises a KubeError naming the request. A write (any method but
        GET) first asks the guard (the lock: `guarded=False` is for the lock's own requests)."""
        label = what or f"{method} {path}"
        if guarded and method.upper() != "GET":
            self.check_guard(label)
        self.connect()
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        t = timeout or self.target.request_timeout
        with self._lock:
            self.requests += 1
        query_params = [(k, str(v).lower() if isinstance(v, bool) else str(v))
                        for k, v in (query or {}).items() if v is not None]
        for attempt in range(RETRIES + 1):
            try:
                m, url, hdrs, payload, _ = self._api.param_serialize(
                    method, path, query_params=query_params, header_params=headers, body=body,
                    auth_settings=["BearerToken"])
                resp = self._api.call_api(m, url, header_params=hdrs, body=payload,
                                          _request_timeout=(min(t, 10.0), t))
                resp.read()
            except Exception as err:  # no answer: connection refused, TLS, timeouts (urllib3 and the REST layer)
                raise Unreachable(self.name, label, 0, type(err).__name__, _short(err)) from None
            data = resp.data
            if 200 <= resp.status <= 299:
                return json.loads(data) if data else None
            delay = retry_delay(method, resp.status, resp.getheader("Retry-After"), attempt)
            if delay is None or attempt == RETRIES:
                raise error_for(self.name, label, resp.status, data.decode(errors="replace") if data else "")
            with self._lock:
                self.requests += 1
                self.retried += 1
            time.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    # --- discovery ----------------------------------------------------------------------------------------
    def discovery(self, refresh: bool = False) -> dict[tuple[str, str], Resource]:
        """(apiVersion, kind) -> Resource, from the aggregated discovery documents (two requests)."""
        with self._lock:
            if self._discovery is not None and not refresh:
                return self._discovery
        found: dict[tuple[str, str], Resource] = {}
        for path in ("/api", "/apis"):
            doc = self.request("GET", path, accept=DISCOVERY_ACCEPT, what=f"discovery {path}")
            if doc.get("kind") == "APIGroupDiscoveryList":
                for group in doc.get("items") or []:
                    gname = (group.get("metadata") or {}).get("name", "")
                    for ver in group.get("versions") or []:
                        for r in ver.get("resources") or []:
                            kind = (r.get("responseKind") or {}).get("kind")
                            if kind:
                                res = Resource(gname, ver["version"], r["resource"], kind,
                                               r.get("scope") == "Namespaced")
                                found.setdefault((res.api_version, kind), res)
            else:  # an apiserver without aggregated discovery: one request per group version
                found.update(self._legacy_discovery(path, doc))
        with self._lock:
            self._discovery = found
        return found

    def _legacy_discovery(self, path: str, doc: dict[str, Any]) -> dict[tuple[str, str], Resource]:
        versions = ([f"/api/{v}" for v in doc.get("versions") or []] if path == "/api" else
                    [f"/apis/{v['groupVersion']}" for g in doc.get("groups") or [] for v in g.get("versions") or []])
        out: dict[tuple[str, str], Resource] = {}
        for gv_path in versions:
            gv = gv_path.split("/", 2)[2]
            group, _, version = gv.rpartition("/")
            for r in self.request("GET", gv_path).get("resources") or []:
                if "/" not in r["name"]:
                    out.setdefault((gv, r["kind"]), Resource(group, version, r["name"], r["kind"], r["namespaced"]))
        return out

    def resource(self, api_version: str, kind: str) -> Resource:
        res = self.discovery().get((api_version, kind))
        if res is None:  # a CRD applied during this run: look again once
            res = self.discovery(refresh=True).get((api_version, kind))
        if res is None:
            raise NotFound(self.name, f"{kind} ({api_version})", 404, "NotFound",
                           f"the server has no resource type {kind} in {api_version} (is its CRD installed?)")
        return res

    def has(self, api_version: str, kind: str, refresh: bool = False) -> bool:
        if refresh:
            self.discovery(refresh=True)
        try:
            self.resource(api_version, kind)
            return True
        except NotFound:
            return False

    # --- reads --------------------------------------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget cached lists (after a write, and between polls of a wait)."""
        with self._lock:
            self._lists.clear()
            self._listed_at.clear()

    def expire(self, max_age: float) -> None:
        """Forget cached lists older than max_age seconds (a gate looks at state no older than that)."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, t in self._listed_at.items() if now - t > max_age]:
                self._lists.pop(key, None)
                self._listed_at.pop(key, None)

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             selector: str | None = None) -> list[dict[str, Any]]:
        """Objects of a kind (in a namespace, or everywhere), cached until the next write. Items carry
        apiVersion and kind."""
        key = (api_version, kind, namespace, selector)
        with self._lock:
            if key in self._lists:
                return self._lists[key]
        res = self.resource(api_version, kind)
        try:
            doc = self.request("GET", res.path(namespace), query={"labelSelector": selector},
                               what=f"list {res.plural}" + (f" in {namespace}" if namespace else ""))
        except NotFound:
            if self.has(api_version, kind, refresh=True):
                raise
            doc = {}  # the kind went away with its CRD: there is nothing of it
        items = doc.get("items") or []
        for o in items:
            o.setdefault("apiVersion", api_version)
            o.setdefault("kind", kind)
        with self._lock:
            self._lists[key] = items
            self._listed_at[key] = time.monotonic()
        return items

    def read_now(self, api_version: str, kind: str, namespace: str | None = None, selector: str | None = None,
                 fields: str | None = None) -> list[dict[str, Any]]:
        """Objects of a kind as they are now (never cached: pods and events change by themselves), by label and
        field selector."""
        res = self.resource(api_version, kind)
        doc = self.request("GET", res.path(namespace), query={"labelSelector": selector, "fieldSelector": fields},
                           what=f"list {res.plural}" + (f" in {namespace}" if namespace else ""))
        return list(doc.get("items") or [])

    def list_many(self, keys: Iterable[tuple[str, str, str | None, str | None]]) -> None:
        """Fill the cache for several lists at once (concurrently)."""
        todo = [k for k in dict.fromkeys(keys) if k not in self._lists]
        if len(todo) <= 1:
            for k in todo:
                self.list(*k)
            return
        self.parallel([lambda k=k: self.list(*k) for k in todo])

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        res = self.resource(api_version, kind)
        try:
            return self.request("GET", res.path(namespace, name), what=f"get {kind} {name}")
        except NotFound:
            return None

    def find(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The live object for a desired one, from the cached list of its kind and namespace."""
        meta = obj["metadata"]
        res = self.resource(obj["apiVersion"], obj["kind"])
        ns = meta.get("namespace") if res.namespaced else None
        for o in self.list(obj["apiVersion"], obj["kind"], ns):
            if o["metadata"]["name"] == meta["name"]:
                return o
        return None

    def version(self) -> str:
        return self.request("GET", "/version", what="version")["gitVersion"]

    # --- writes -------------------------------------------------------------------------------------------
    def apply(self, obj: dict[str, Any], dry_run: bool = False, invalidate: bool = True) -> dict[str, Any]:
        """Server-side apply under field manager `knfleet`, taking over conflicting fields (force). A bookkeeping
        write that changes nothing another read depends on may keep the cached lists (invalidate=False)."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        out = self.request("PATCH", res.path(meta.get("namespace") if res.namespaced else None, meta["name"]),
                           body=obj, content_type="application/apply-patch+yaml",
                           query={"fieldManager": FIELD_MANAGER, "force": True, "dryRun": "All" if dry_run else None},
                           what=f"apply {ref(obj)}" + (" (dry run)" if dry_run else ""))
        if not dry_run and invalidate:
            self.invalidate()
        return out

    def create(self, obj: dict[str, Any], dry_run: bool = False, guarded: bool = True) -> dict[str, Any]:
        res = self.resource(obj["apiVersion"], obj["kind"])
        ns = obj["metadata"].get("namespace") if res.namespaced else None
        out = self.request("POST", res.path(ns), body=obj, content_type="application/json",
                           query={"fieldManager": FIELD_MANAGER, "dryRun": "All" if dry_run else None},
                           what=f"create {ref(obj)}" + (" (dry run)" if dry_run else ""), guarded=guarded)
        if not dry_run:
            self.invalidate()
        return out

    def replace(self, obj: dict[str, Any], invalidate: bool = True, guarded: bool = True) -> dict[str, Any]:
        """Update an object (PUT). Its metadata.resourceVersion and metadata.uid, when set, are preconditions: the
        API server refuses (Conflict) when the stored object is another version or another object."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        out = self.request("PUT", res.path(meta.get("namespace") if res.namespaced else None, meta["name"]), body=obj,
                           content_type="application/json", query={"fieldManager": FIELD_MANAGER},
                           what=f"replace {ref(obj)}", guarded=guarded)
        if invalidate:
            self.invalidate()
        return out

    def patch(self, api_version: str, kind: str, name: str, namespace: str | None, body: Any,
              patch_type: str = "merge") -> dict[str, Any]:
        res = self.resource(api_version, kind)
        out = self.request("PATCH", res.path(namespace, name), body=body,
                           content_type=f"application/{patch_type}-patch+json",
                           query={"fieldManager": FIELD_MANAGER}, what=f"patch {kind} {name}")
        self.invalidate()
        return out

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               propagation: str = "Background", uid: str | None = None, resource_version: str | None = None,
               guarded: bool = True) -> bool:
        """Delete one object; False when it was already gone. `uid` / `resource_version` are preconditions: the API
        server refuses (Conflict) to delete another object of that name, or another version of it."""
        res = self.resource(api_version, kind)
        body: dict[str, Any] = {"propagationPolicy": propagation}
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            body["preconditions"] = preconditions
        try:
            self.request("DELETE", res.path(namespace if res.namespaced else None, name),
                         body=body, content_type="application/json",
                         what=f"delete {kind} {namespace + '/' if namespace else ''}{name}", guarded=guarded)
        except NotFound:
            return False
        finally:
            self.invalidate()
        return True

    # --- helpers ------------------------------------------------------------------------------------------
    def parallel(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Run calls on the shared connection pool; results (or the KubeError raised) in order."""
        def guard(fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except KubeError as err:
                return err
        if len(calls) <= 1:
            return [guard(fn) for fn in calls]
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(calls))) as pool:
            return list(pool.map(guard, calls))

    def apply_many(self, objs: list[dict[str, Any]], dry_run: bool = False) -> list[dict[str, Any] | KubeError]:
        """Apply objects concurrently: Namespaces and CRDs first (others may live in them or be of their kind)."""
        first = [o for o in objs if o["kind"] in ("Namespace", "CustomResourceDefinition")]
        rest = [o for o in objs if o["kind"] not in ("Namespace", "CustomResourceDefinition")]
        results: dict[int, dict[str, Any] | KubeError] = {}
        for group in (first, rest):
            done = self.parallel([lambda o=o: self.apply(o, dry_run) for o in group])
            for o, r in zip(group, done, strict=True):
                results[id(o)] = r
        return [results[id(o)] for o in objs]


def _short(err: Exception) -> str:
    text = str(err)
    for marker in ("Caused by ", "NewConnectionError", "Max retries"):
        if marker in text:
            text = text[text.index(marker):]
            break
    return text[:300]


def poll(check: Callable[[], tuple[bool, str]], timeout: float, interval: float = 1.0,
         cluster: Cluster | None = None) -> str:
    """Call check() until it returns (True, why); on timeout raise NotReadyError with its last explanation.
    The cluster's cached lists are dropped before each look, so each poll sees fresh state; before each look the
    cluster's guard is asked (a run that lost its lock stops waiting)."""
    from knfleet.errors import NotReadyError

    deadline = time.monotonic() + timeout
    why = "not checked"
    while True:
        if cluster is not None:
            cluster.check_guard("a wait")  # a run that lost the cluster's lock stops waiting at once
            cluster.invalidate()
        try:
            ok, why = check()
        except Unreachable as err:
            ok, why = False, str(err)
        except KubeError as err:  # an answer that says "try again" (429, 5xx) even after the request's retries
            if err.status not in TRANSIENT:
                raise
            ok, why = False, str(err)
        if ok:
            return why
        if time.monotonic() >= deadline:
            raise NotReadyError(f"not ready after {timeout:.0f}s:\n{why}")
        time.sleep(interval)
