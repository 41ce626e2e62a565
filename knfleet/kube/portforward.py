"""Port-forward to a pod through the API server, as `kubectl port-forward pod/<name> :<port>` does.

The cluster's own authentication and path (API server -> the node's kubelet), no image to pull and no address
the runner machine must reach besides the API server. `Forward` listens on 127.0.0.1:<free port>; each
connection made to it opens one port-forward stream (the `kubernetes` package's websocket port-forward) and the
bytes are relayed both ways until either side closes.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from knfleet.errors import ClusterError

RELAY_CHUNK = 65536


class Forward:
    """A local listener forwarding to `port` of pod `namespace/name`; use as a context manager."""

    def __init__(self, api: Any, namespace: str, name: str, port: int, timeout: float = 30.0) -> None:
        self.api, self.namespace, self.name, self.port, self.timeout = api, namespace, name, port, timeout
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._closed = threading.Event()
        self.errors: list[str] = []
        self.local_port: int = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name=f"port-forward {namespace}/{name}:{port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def __enter__(self) -> Forward:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept(); close() alone would not
        except OSError:
            pass
        self._server.close()

    def _open(self) -> Any:
        # The websocket port-forward of the `kubernetes` package, called with the request the client builds
        # (auth header from the kubeconfig, exec plugins refreshed); not through CoreV1Api, whose import alone
        # costs a second or more.
        from kubernetes.stream.ws_client import portforward_call

        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/portforward"
        try:
            _, url, headers, _, _ = self.api.param_serialize("GET", path, header_params={},
                                                             auth_settings=["BearerToken"])
            return portforward_call(self.api.configuration, "GET", url, query_params=[("ports", str(self.port))],
                                    headers={k.lower(): v for k, v in headers.items()})
        except Exception as err:  # noqa: BLE001 - the API server refused or could not reach the kubelet
            raise ClusterError(f"port-forward to pod {self.namespace}/{self.name}:{self.port} failed: {err}") \
                from None

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            pf = self._open()
        except ClusterError as err:
            self.errors.append(str(err))
            conn.close()
            return
        remote = pf.socket(self.port)
        remote.setblocking(True)
        done = threading.Event()

        def pump(src: Any, dst: Any) -> None:
            try:
                while True:
                    data = src.recv(RELAY_CHUNK)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                done.set()

        threading.Thread(target=pump, args=(remote, conn), daemon=True).start()
        threading.Thread(target=pump, args=(conn, remote), daemon=True).start()
        done.wait()  # either side closed: close both, so the other side sees the end too
        for s in (conn, remote):
            try:
                s.close()
            except OSError:
                pass
        err = pf.error(self.port)
        if err:
            self.errors.append(f"port-forward to pod {self.namespace}/{self.name}:{self.port}: {err}")
