"""localcluster.replay over a small hand-made recording: recorded answers replayed, an unrecorded request an error
that names it (and is counted), the Lease with real resourceVersion semantics, the round-trip delay applied, run
identities and timestamps normalised and nothing else."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.replay import recording, server
from localcluster.replay.recording import Exchange

NS_LIST = json.dumps({"kind": "NamespaceList", "items": [{"metadata": {"name": "knative-serving"}}]}).encode()
DRY_BODY = {"metadata": {"name": "x", "annotations": {"t": "2026-12-07T01:02:03.456789Z"}},
            "spec": {"holder": "root@vm/pid-25390/boot-39eb/pidns-4026531836/start-2534997/8cb6a18e"}}
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"


def _recording() -> list[Exchange]:
    return [
        Exchange("GET", "/api/v1/namespaces", 200, NS_LIST, b"", {"Content-Type": "application/json"}),
        Exchange("GET", "/api/v1/pods", 200, b'{"items": [1]}', b"", {"Content-Type": "application/json"}),
        Exchange("GET", "/api/v1/pods", 200, b'{"items": [2]}', b"", {"Content-Type": "application/json"}),
        Exchange("POST", "/apis/x/v1/things?dryRun=All&fieldManager=knfleet", 201, b'{"ok": true}',
                 json.dumps(DRY_BODY).encode(), {"Content-Type": "application/json"}),
    ]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[server.Replay, Path, list[Any]]]:
    """Two simulated clusters served by the real asyncio server on a thread of its own, delay 50 ms; the delay's
    sleeps are recorded (`slept`)."""
    loop = asyncio.new_event_loop()
    slept: list[Any] = []
    started = threading.Event()
    holder: dict[str, server.Replay] = {}

    async def main() -> None:
        replay = await server.start(_recording(), 2, tmp_path, 0.05)

        async def sleep(delay: float) -> None:
            slept.append((delay, replay.requests))
            await asyncio.sleep(0)
        replay.sleep = sleep
        holder["replay"] = replay
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(main()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(30)
    yield holder["replay"], tmp_path, slept
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def call(folder: Path, cluster: int, method: str, target: str, body: Any = None,
         token: str | None = None) -> tuple[int, Any]:
    kc = yaml.safe_load((folder / f"sim-{cluster}.kubeconfig").read_text())
    url = kc["clusters"][0]["cluster"]["server"].removeprefix("https://")
    tls = ssl.create_default_context(cafile=str(folder / "pki" / "ca.crt"))
    conn = http.client.HTTPSConnection(url, context=tls, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, target, body=data, headers={
        "Authorization": f"Bearer {token or kc['users'][0]['user']['token']}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    return resp.status, json.loads(out) if out else None


def test_a_recorded_get_is_replayed_in_order_per_cluster(fleet) -> None:
    replay, folder, _ = fleet
    assert call(folder, 1, "GET", "/api/v1/namespaces") == (200, json.loads(NS_LIST))
    assert call(folder, 1, "GET", "/api/v1/pods")[1] == {"items": [1]}
    assert call(folder, 1, "GET", "/api/v1/pods")[1] == {"items": [2]}
    assert call(folder, 1, "GET", "/api/v1/pods")[1] == {"items": [2]}  # the last answer again after that
    assert call(folder, 2, "GET", "/api/v1/pods")[1] == {"items": [1]}  # each cluster has its own sequence
    assert replay.requests == 5 and replay.unrecorded == []


def test_an_unrecorded_request_is_an_error_naming_it_and_counted(fleet) -> None:
    replay, folder, _ = fleet
    code, body = call(folder, 2, "GET", "/api/v1/secrets?limit=5")
    assert code == 501
    assert body["reason"] == "NotRecorded" and "GET /api/v1/secrets?limit=5" in body["message"]
    assert replay.unrecorded == ["sim-2: GET /api/v1/secrets?limit=5"]
    assert server.Replay.stats(replay)["unrecorded"] == 1


def test_a_wrong_token_is_refused(fleet) -> None:
    _, folder, _ = fleet
    assert call(folder, 1, "GET", "/api/v1/namespaces", token="nope")[0] == 401


def test_timestamps_and_holders_are_normalised_and_nothing_else(fleet) -> None:
    replay, folder, _ = fleet
    target = "/apis/x/v1/things?fieldManager=knfleet&dryRun=All"  # query order is not meaning either
    other_run = {"metadata": {"name": "x", "annotations": {"t": "2027-01-01T00:00:00.000001Z"}},
                 "spec": {"holder": "ci@runner-7/pid-1/boot-aa/pidns-1/start-9/0000beef"}}
    assert call(folder, 1, "POST", target, other_run) == (201, {"ok": True})
    changed = {**other_run, "metadata": {"name": "y", "annotations": other_run["metadata"]["annotations"]}}
    assert call(folder, 1, "POST", target, changed)[0] == 501
    assert len(replay.unrecorded) == 1


def _lease(rv: str | None = None, uid: str | None = None, holder: str = "me") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "knfleet-lock", "namespace": "kube-system"}
    if rv:
        meta["resourceVersion"] = rv
    if uid:
        meta["uid"] = uid
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": holder}}


def test_the_lease_has_real_resource_version_semantics(fleet) -> None:
    _, folder, _ = fleet
    assert call(folder, 1, "GET", f"{LEASES}/knfleet-lock")[0] == 404
    code, created = call(folder, 1, "POST", LEASES, _lease())
    assert code == 201
    assert call(folder, 1, "POST", LEASES, _lease())[1]["reason"] == "AlreadyExists"
    assert call(folder, 2, "POST", LEASES, _lease())[0] == 201  # another cluster: its own Lease
    rv, uid = created["metadata"]["resourceVersion"], created["metadata"]["uid"]
    code, updated = call(folder, 1, "PUT", f"{LEASES}/knfleet-lock", _lease(rv, uid, "me-renewed"))
    assert code == 200 and updated["metadata"]["resourceVersion"] != rv
    stale = call(folder, 1, "PUT", f"{LEASES}/knfleet-lock", _lease(rv, uid, "someone-else"))
    assert stale[0] == 409 and stale[1]["reason"] == "Conflict"
    other_uid = _lease(updated["metadata"]["resourceVersion"], "other-uid")
    assert call(folder, 1, "PUT", f"{LEASES}/knfleet-lock", other_uid)[0] == 409
    assert call(folder, 1, "GET", f"{LEASES}/knfleet-lock")[1]["spec"]["holderIdentity"] == "me-renewed"
    assert call(folder, 1, "DELETE", f"{LEASES}/knfleet-lock", {"preconditions": {"resourceVersion": rv}})[0] == 409
    current = updated["metadata"]["resourceVersion"]
    assert call(folder, 1, "DELETE", f"{LEASES}/knfleet-lock",
                {"preconditions": {"uid": uid, "resourceVersion": current}})[0] == 200
    assert call(folder, 1, "GET", f"{LEASES}/knfleet-lock")[0] == 404


def test_every_answer_waits_the_round_trip_delay_before_it_is_sent(fleet) -> None:
    replay, folder, slept = fleet
    call(folder, 1, "GET", "/api/v1/namespaces")
    call(folder, 1, "GET", "/api/v1/secrets")  # an error answer is delayed too
    call(folder, 1, "POST", LEASES, _lease())
    assert slept == [(0.05, 1), (0.05, 2), (0.05, 3)]  # one delay per answer, after the request was taken


def test_the_recording_round_trips_through_its_file(tmp_path: Path) -> None:
    ex = _recording() + [Exchange("GET", "/bin", 200, b"\xff\x00", b"", {})]
    recording.write(tmp_path / "r.jsonl", ex)
    assert recording.read(tmp_path / "r.jsonl") == ex
