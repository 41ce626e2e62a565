"""The apiserver's way into the cluster network: an HTTP CONNECT proxy on a Unix socket.

kube-apiserver sends its `cluster` egress traffic (admission webhook calls, and kubelet connections for
logs, exec and port-forward) through the proxy named in its EgressSelectorConfiguration
(`proxyProtocol: HTTPConnect`, `transport: uds`). A webhook call arrives as `CONNECT <ClusterIP>:<port>`
of the webhook's Service, as installed; the proxy resolves it the way kube-proxy would (Service ->
targetPort -> a ready endpoint) and forwards the bytes to the real process the pod runner started for
that endpoint. Targets it cannot resolve get `503` with the reason, which the apiserver reports.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Resolver = Callable[[str, int], tuple[str, int] | str]  # -> (host, port) to dial, or why not


def serve(path: Path, resolve: Resolver, stop: threading.Event, log: Callable[[str], None] = print) -> None:
    """Accept CONNECT requests on the Unix socket `path` until `stop` is set."""
    path.unlink(missing_ok=True)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    os.chmod(path, 0o600)
    srv.listen(64)
    srv.settimeout(0.5)
    log(f"egress proxy listening on {path}")
    try:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                if stop.is_set():
                    break
                raise
            threading.Thread(target=_handle, args=(conn, resolve, log), daemon=True).start()
    finally:
        srv.close()
        path.unlink(missing_ok=True)


def _read_head(conn: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > 65536:
            break
    return buf


def _handle(conn: socket.socket, resolve: Resolver, log: Callable[[str], None]) -> None:
    conn.settimeout(30)
    upstream: socket.socket | None = None
    try:
        head = _read_head(conn)
        line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        parts = line.split()
        if len(parts) < 2 or parts[0] != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = parts[1].rpartition(":")
        target = resolve(host.strip("[]"), int(port))
        if isinstance(target, str):
            body = f"egress: {parts[1]}: {target}".encode()
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            return
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError as err:
            body = f"egress: {parts[1]} -> {target[0]}:{target[1]}: {err}".encode()
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\n\r\n" + body)
            return
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        rest = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
        if rest:
            upstream.sendall(rest)
        conn.settimeout(None)
        upstream.settimeout(None)
        t = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        t.start()
        pipe(conn, upstream)
        t.join(timeout=5)
    except OSError as err:
        log(f"egress connection failed: {err}")
    finally:
        for s in (conn, upstream):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def kubelet_at(port: int) -> Callable[[str, int], tuple[str, int] | None] | None:
    """The apiserver reaches a node's kubelet (port-forward, exec, logs) at <node address>:<kubelet port>; every
    kwok node is served by the one kwok server on 127.0.0.1:<port>."""
    if not port:
        return None
    return lambda host, p: ("127.0.0.1", port) if p == port else None


class ServiceResolver:
    """ClusterIP:port (or <svc>.<ns>.svc:port) -> the local port of a ready endpoint the runner runs."""

    def __init__(self, core: Any, endpoints: Callable[[str, dict[str, str]], list[Any]],
                 kubelet: Callable[[str, int], tuple[str, int] | None] | None = None, ttl: float = 2.0) -> None:
        self.core = core
        self.endpoints = endpoints
        self.kubelet = kubelet
        self.ttl = ttl
        self._services: list[Any] = []
        self._at = 0.0
        self._lock = threading.Lock()

    def _all_services(self) -> list[Any]:
        with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._services = self.core.list_service_for_all_namespaces().items
                self._at = time.monotonic()
            return self._services

    def __call__(self, host: str, port: int) -> tuple[str, int] | str:
        if self.kubelet is not None:
            found = self.kubelet(host, port)
            if found is not None:
                return found
        try:
            services = self._all_services()
        except Exception as err:  # noqa: BLE001 - the apiserver may be restarting
            return f"cannot list services: {err}"
        svc = None
        for s in services:
            if s.spec.cluster_ip == host:
                svc = s
                break
            labels = host.split(".")
            if len(labels) >= 3 and labels[2] == "svc" and (s.metadata.name, s.metadata.namespace) == tuple(
                    labels[:2]):
                svc = s
                break
        if svc is None:
            return "no Service has this address"
        sport = next((p for p in svc.spec.ports or [] if p.port == port), None)
        if sport is None:
            return f"Service {svc.metadata.namespace}/{svc.metadata.name} has no port {port}"
        ready = self.endpoints(svc.metadata.namespace, dict(svc.spec.selector or {}))
        if not ready:
            return f"no endpoints available for service \"{svc.metadata.name}\""
        target = sport.target_port if sport.target_port is not None else sport.port
        for c in ready:
            local = c.local_port(target if isinstance(target, str) else int(target))
            if local:
                return ("127.0.0.1", local)
        return f"no endpoint of {svc.metadata.namespace}/{svc.metadata.name} serves target port {target}"
