"""The cloud's load-balancer controller, for Services of type LoadBalancer (the public proxy's, Kourier's).

As a cloud controller does, it gives each such Service an address, writes it to `status.loadBalancer.ingress`,
and serves that address: a listener on <address>:<port> for each Service port, relaying a connection to the
Service's target port on a ready endpoint, or closing it when the Service has none (no healthy backend). The
addresses are loopback addresses of this machine (127.0.0.0/8, one per Service, never shared between clusters),
so the Service's own port (80) is served as a cloud balancer would. Only the gateways' pods have something
behind them (nodes.pod_ports); a connection to any other target is closed.
"""

from __future__ import annotations

import errno
import hashlib
import socket
import threading
from collections.abc import Callable
from typing import Any

from localcluster.runner.egress import pipe

Key = tuple[str, str]


def candidates(seed: str) -> list[str]:
    """Loopback addresses to try, in an order that depends on `seed` (the cluster's folder): 127.200-254.x.y."""
    h = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big")
    first = h % (55 * 254 * 254)
    total = 55 * 254 * 254
    out = []
    for i in range(512):
        n = (first + i * 7919) % total
        a, rest = divmod(n, 254 * 254)
        b, c = divmod(rest, 254)
        out.append(f"127.{200 + a}.{b + 1}.{c + 1}")
    return out


def ready_target(endpoints: dict[str, Any] | None, port_name: str | None) -> int | None:
    """The target port of the Service port `port_name` when the Service has a ready endpoint, else None."""
    for subset in (endpoints or {}).get("subsets") or []:
        if not subset.get("addresses"):
            continue
        for p in subset.get("ports") or []:
            if (p.get("name") or None) == (port_name or None):
                return int(p["port"])
    return None


class Balancer:
    """The listeners of one Service's address."""

    def __init__(self, ip: str, sockets: dict[int, tuple[socket.socket, str | None]]) -> None:
        self.ip, self.sockets = ip, sockets
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for s, _ in self.sockets.values():
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept(); close() alone would not
            except OSError:
                pass
            s.close()


class LoadBalancers:
    def __init__(self, seed: str, pod_ports: dict[tuple[str, int], int], log: Callable[[str], None]) -> None:
        self.pool = candidates(seed)
        self.pod_ports, self.log = pod_ports, log
        self.balancers: dict[Key, Balancer] = {}
        self.endpoints: dict[Key, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def reconcile(self, services: list[dict[str, Any]], endpoints: list[dict[str, Any]],
                  write_status: Callable[[str, str, dict[str, Any]], None]) -> None:
        with self.lock:
            self.endpoints = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
        wanted = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services
                  if (s.get("spec") or {}).get("type") == "LoadBalancer"}
        for key in [k for k in self.balancers if k not in wanted]:
            self.balancers.pop(key).close()
            self.log(f"load balancer of Service {key[0]}/{key[1]} removed")
        for key, svc in wanted.items():
            ports = {int(p["port"]): p.get("name") for p in svc["spec"].get("ports") or []
                     if (p.get("protocol") or "TCP") == "TCP"}
            lb = self.balancers.get(key)
            if lb is not None and set(lb.sockets) != set(ports):
                self.balancers.pop(key).close()
                lb = None
            if lb is None:
                lb = self._open(key, ports)
                if lb is None:
                    continue
                self.balancers[key] = lb
                self.log(f"load balancer of Service {key[0]}/{key[1]} on {lb.ip} ports {sorted(ports)}")
            ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if [i.get("ip") for i in ingress] != [lb.ip]:
                write_status(key[0], key[1], {"loadBalancer": {"ingress": [{"ip": lb.ip, "ipMode": "VIP"}]}})

    def close(self) -> None:
        for lb in self.balancers.values():
            lb.close()
        self.balancers.clear()

    def _open(self, key: Key, ports: dict[int, str | None]) -> Balancer | None:
        used = {lb.ip for lb in self.balancers.values()}
        for ip in self.pool:
            if ip in used:
                continue
            sockets: dict[int, tuple[socket.socket, str | None]] = {}
            try:
                for port, name in ports.items():
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sockets[port] = (s, name)
                    s.bind((ip, port))
                    s.listen(64)
            except OSError as err:
                for s, _ in sockets.values():
                    s.close()
                if err.errno == errno.EADDRINUSE:
                    continue  # another cluster's balancer: the next address
                self.log(f"load balancer of Service {key[0]}/{key[1]}: cannot listen on {ip}: {err}")
                return None
            lb = Balancer(ip, sockets)
            for port, (s, name) in sockets.items():
                threading.Thread(target=self._accept, args=(key, lb, s, name), daemon=True,
                                 name=f"lb-{key[1]}-{port}").start()
            return lb
        self.log(f"load balancer of Service {key[0]}/{key[1]}: no free loopback address")
        return None

    def _accept(self, key: Key, lb: Balancer, server: socket.socket, port_name: str | None) -> None:
        while not lb.closed.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(key, conn, port_name), daemon=True).start()

    def _relay(self, key: Key, conn: socket.socket, port_name: str | None) -> None:
        with self.lock:
            target = ready_target(self.endpoints.get(key), port_name)
        gateway = self.pod_ports.get((key[0], target)) if target is not None else None
        if gateway is None:
            conn.close()  # no ready endpoint (or nothing simulated behind it): as a balancer with no backend
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", gateway), timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        t = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        t.start()
        pipe(conn, upstream)
        t.join()
        for s in (conn, upstream):
            try:
                s.close()
            except OSError:
                pass
