"""The replay server: N simulated clusters in one process (asyncio + ssl), each a TLS endpoint on its own
127.0.0.1 port with its own kubeconfig and bearer token, answering from a recording after a round-trip delay.

- The lock's Lease (store.STATEFUL_PLURALS) is kept per cluster with real resourceVersion semantics (store.Store).
- Any other request is matched against the recording (recording.key_of); the n-th identical request of a cluster
  gets the n-th recorded answer (the last one again after that).
- A request the recording does not hold is answered 501 with a Status whose message names it, and counted.
- A plain-HTTP control endpoint (127.0.0.1, port in <folder>/control) answers GET /stats (requests, unrecorded and
  their names, the server's own CPU seconds) and POST /reset (counters and every cluster's state).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from localcluster.replay import certs, store
from localcluster.replay.recording import Exchange, key_of, read

REASONS = {200: "OK", 201: "Created", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 422: "Unprocessable Entity", 501: "Not Implemented"}


def response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(head).encode() + body


def json_response(status: int, doc: dict[str, Any]) -> bytes:
    return response(status, {"Content-Type": "application/json"}, json.dumps(doc).encode())


class Answers:
    """The recording, indexed: match key -> the recorded answers in order (pre-rendered HTTP responses)."""

    def __init__(self, exchanges: list[Exchange]) -> None:
        self.by_key: dict[str, list[bytes]] = {}
        for e in exchanges:
            if store.stateful(urlsplit(e.target).path):
                continue  # answered by the store, never from the recording
            self.by_key.setdefault(key_of(e.method, e.target, e.request_body), []).append(
                response(e.status, e.headers, e.body))
        self._keys: dict[bytes, str] = {}  # digest of the raw request -> match key (the same body comes N times)

    def key(self, method: str, target: str, body: bytes) -> str:
        raw = hashlib.sha256(method.encode() + b" " + target.encode() + b"\n" + body).digest()
        k = self._keys.get(raw)
        if k is None:
            k = self._keys[raw] = key_of(method, target, body)
        return k


@dataclass
class Sim:
    """One simulated cluster."""

    index: int
    token: str
    store: store.Store = field(default_factory=store.Store)
    seen: Counter = field(default_factory=Counter)

    def reset(self) -> None:
        self.store, self.seen = store.Store(), Counter()


class Replay:
    def __init__(self, answers: Answers, clusters: int, delay: float) -> None:
        self.answers, self.delay = answers, delay
        self.sims = [Sim(i, secrets.token_hex(12)) for i in range(1, clusters + 1)]
        self.requests = 0
        self.unrecorded: list[str] = []
        self.sleep = asyncio.sleep  # the round-trip delay (tests put a recorder here)
        self.servers: list[asyncio.Server] = []

    def reset(self) -> None:
        self.requests, self.unrecorded = 0, []
        for s in self.sims:
            s.reset()

    def answer(self, sim: Sim, method: str, target: str, body: bytes) -> bytes:
        """The HTTP response for one request of one simulated cluster."""
        self.requests += 1
        path = urlsplit(target).path
        if store.stateful(path):
            code, doc = sim.store.handle(method, path, body)
            return json_response(code, doc)
        k = self.answers.key(method, target, body)
        recorded = self.answers.by_key.get(k)
        if recorded is None:
            what = f"{method} {target}"
            self.unrecorded.append(f"sim-{sim.index}: {what}")
            return json_response(501, store.status(501, "NotRecorded",
                                                  f"replay: the recording holds no answer to {what}"))
        n = sim.seen[k]
        sim.seen[k] = n + 1
        return recorded[min(n, len(recorded) - 1)]

    def stats(self) -> dict[str, Any]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {"requests": self.requests, "unrecorded": len(self.unrecorded),
                "unrecorded_examples": self.unrecorded[:20], "cpu_s": ru.ru_utime + ru.ru_stime,
                "max_rss_mib": ru.ru_maxrss / 1024, "clusters": len(self.sims), "delay_ms": self.delay * 1000}


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    """One HTTP/1.1 request (method, target, headers lower-cased, body); None at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length") or 0))
    return method, target, headers, body


def cluster_handler(replay: Replay, sim: Sim):  # noqa: ANN201 - an asyncio client_connected_cb
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                method, target, headers, body = req
                if headers.get("authorization") != f"Bearer {sim.token}":
                    out = json_response(401, store.status(401, "Unauthorized", "Unauthorized"))
                else:
                    out = replay.answer(sim, method, target, body)
                if replay.delay:
                    await replay.sleep(replay.delay)
                writer.write(out)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
    return handle


def control_handler(replay: Replay):  # noqa: ANN201
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await read_request(reader)
        if req is not None:
            method, target, _, _ = req
            if method == "POST" and target == "/reset":
                replay.reset()
            writer.write(json_response(200, replay.stats()))
            await writer.drain()
        writer.close()
    return handle


SSL_BUFFER = 16 * 1024  # asyncio gives every TLS connection a 256 KiB read buffer: 4 GiB at 16,000 connections


def small_tls_buffers() -> None:
    """Smaller read buffers for asyncio's TLS connections (more reads, the same bytes)."""
    from asyncio import sslproto

    sslproto.SSLProtocol.max_size = SSL_BUFFER


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def start(exchanges: list[Exchange], clusters: int, folder: Path, delay: float) -> Replay:
    """Listen for every simulated cluster (and the control endpoint); kubeconfigs and `ready` under folder."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = certs.ensure(folder)
    tls = ca.server_context()
    replay = Replay(Answers(exchanges), clusters, delay)
    for sim in replay.sims:
        srv = await asyncio.start_server(cluster_handler(replay, sim), "127.0.0.1", 0, ssl=tls, backlog=512)
        port = srv.sockets[0].getsockname()[1]
        certs.write_kubeconfig(folder / f"sim-{sim.index}.kubeconfig", f"sim-{sim.index}",
                               f"https://127.0.0.1:{port}", ca.cert_pem, sim.token)
        replay.servers.append(srv)
    control = await asyncio.start_server(control_handler(replay), "127.0.0.1", 0)
    replay.servers.append(control)
    (folder / "control").write_text(str(control.sockets[0].getsockname()[1]))
    (folder / "ready").write_text(str(clusters))
    return replay


async def serve(recording: Path, clusters: int, folder: Path, delay: float) -> None:
    await start(read(recording), clusters, folder, delay)
    await asyncio.Event().wait()


def run(recording: Path, clusters: int, folder: Path, delay: float) -> None:
    raise_nofile()
    small_tls_buffers()
    (folder / "ready").unlink(missing_ok=True)
    asyncio.run(serve(recording, clusters, folder, delay))
