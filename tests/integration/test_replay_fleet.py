"""Issue 26: a no-op converge recorded from a real local cluster (the real Knative control plane) and replayed for 3
simulated clusters by `make bench-fleet`'s own code: `pyinfra … deploy.py -y` changes nothing and fails nowhere."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from localcluster import fleetbench
from localcluster.replay import recording, store

pytestmark = pytest.mark.integration


def test_a_recorded_noop_run_replays_on_three_clusters_with_no_change_and_no_failure(tmp_path, shared_knative):
    bench = fleetbench.FleetBench(tmp_path / "state", [3], 0.0)
    try:
        rec = bench.record()  # a real cluster converged, then a no-op converge through the recording proxy
        assert bench.cluster is None  # the real cluster was stopped (by PID) once recorded
        rows = bench.replay(rec)
    finally:
        bench.stop_all()
    exchanges = recording.read(rec)
    writes = [e for e in exchanges if e.method != "GET"]
    assert any(store.stateful(urlsplit(e.target).path) and e.method == "POST" for e in writes)  # the lock
    for e in writes:  # a no-op run: only the lock, dry runs and access reviews write
        q = parse_qs(urlsplit(e.target).query)
        assert (store.stateful(urlsplit(e.target).path) or q.get("dryRun") == ["All"]
                or "selfsubjectaccessreviews" in e.target), (e.method, e.target)
    row = rows[0]
    assert (row["clusters"], row["exit_code"], row["failed"], row["unrecorded"]) == (3, 0, 0, 0), row
    assert row["requests"] >= 3 * len([e for e in exchanges if e.method == "GET"]) - 3
    report = json.loads((tmp_path / "state" / "replay" / "report-3.json").read_text())
    assert sorted(report["clusters"]) == ["sim-1", "sim-2", "sim-3"]
    for name, c in report["clusters"].items():
        assert c["status"] == "converged", (name, c)
        assert c["changed_operations"] == [] and c["failed_operations"] == [], (name, c)
    log = (tmp_path / "state" / "replay" / "run-3.log").read_text()
    assert all(f"sim-{i}: install done, no change" in log for i in (1, 2, 3)), log[-2000:]
