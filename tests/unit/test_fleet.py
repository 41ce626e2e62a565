"""Inventory loading and waves for rollouts (no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knfleet.fleet import inventory as fleet
from knfleet.fleet import rollout
from knfleet.report.outcome import ClusterOutcome


def test_example_inventory_waves_and_group_data(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    clusters = fleet.load("inventories/example.py")
    assert [(c.name, c.wave) for c in clusters] == [("staging-gpu-1", 0), ("prod-eu-1", 1), ("prod-us-1", 2)]
    assert clusters[0].data["knative_domain"] == "staging.knative.example.com"
    assert "production" in clusters[1].groups
    assert [w for w, _ in fleet.waves(clusters)] == [0, 1, 2]


def test_bad_wave_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inv = tmp_path / "inv.py"
    inv.write_text("hosts = [('@kube/a', {'kubeconfig': 'x', 'rollout_wave': 'first'})]\n")
    with pytest.raises(fleet.InventoryError, match="rollout_wave = 'first' is not allowed"):
        fleet.load(str(inv))
    with pytest.raises(fleet.InventoryError, match="no such file"):
        fleet.load(str(tmp_path / "missing.py"))


def test_rollout_cannot_start_on_bad_input(tmp_path, capsys):
    assert rollout.rollout(str(tmp_path / "missing.py")) == rollout.EXIT_CANNOT_START
    assert rollout.rollout(str(tmp_path / "missing.py"), resume=True) == rollout.EXIT_CANNOT_START


def test_final_table_lists_every_cluster(capsys):
    rollout.print_table({
        "a": ClusterOutcome("a", "failed", wave=0, errors=["preflight: API server not reachable"]),
        "b": ClusterOutcome("b", "untouched", wave=1, reason="not touched: rollout halted after wave 0"),
        "c": ClusterOutcome("c", "converged", wave=0, smoke=[{"service": "ns/svc", "ok": True, "latency_s": 0.12}]),
    })
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["CLUSTER", "WAVE", "STATUS", "CHANGED", "SMOKE", "REASON"]
    assert out[1].startswith("a ") and "not reachable" in out[1]
    assert out[2].startswith("c ") and "svc ok 0.12s" in out[2]
    assert out[3].startswith("b ") and "halted after wave 0" in out[3]
