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


def test_doctor_on_a_machine_without_the_example_kubeconfigs_names_what_is_missing(tmp_path, monkeypatch, capsys):
    from knfleet.fleet import doctor

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("HOME", str(tmp_path))
    assert doctor.doctor("inventories/example.py") == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["staging-gpu-1", "FAIL"], ["prod-eu-1", "FAIL"],
                                                    ["prod-us-1", "FAIL"]]
    assert f"kubeconfig {tmp_path}/.kube/staging-gpu-1.yaml does not exist" in lines[0]
    assert f"kubeconfig {tmp_path}/.kube/prod.yaml does not exist" in lines[1]


def test_doctor_names_a_missing_context_and_a_missing_credential_plugin(tmp_path, monkeypatch):
    from knfleet.fleet import doctor

    kubeconfig = tmp_path / "kc.yaml"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: eks\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: eks, context: {cluster: c, user: u}}]\n"
        "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: aws-nope}}}]\n")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    d = doctor.diagnose(fleet.Cluster("@kube/x", "x", 0, (), {"kubeconfig": str(kubeconfig), "kube_context": "gke"}))
    assert not d.ok and "context 'gke' is not in" in d.problem and "(contexts: eks)" in d.problem
    d = doctor.diagnose(fleet.Cluster("@kube/x", "x", 0, (), {"kubeconfig": str(kubeconfig)}))
    assert not d.ok and "credential plugin 'aws-nope' (user 'u') is not on PATH (/usr/bin:/bin)" in d.problem
    assert d.checks == ["kubeconfig", "context eks"]
    (tmp_path / "bad.yaml").write_text("a: [")
    d = doctor.diagnose(fleet.Cluster("@kube/x", "x", 0, (), {"kubeconfig": str(tmp_path / "bad.yaml")}))
    assert "is not readable YAML" in d.problem


def test_cli_output_cut_short_by_a_pipe_ends_quietly(tmp_path):
    import subprocess
    import sys

    import yaml

    from knfleet.desired import models

    svc = [models.render_service(models.Model(name=f"m{i}", namespace="pipe")) for i in range(300)]
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump_all(svc))
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(f"{sys.executable} -m knfleet.cli lint {path} | head -1", shell=True, cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.count("\n") == 1 and "pipe/m0" in proc.stdout
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_resume_with_a_state_file_cut_short_by_a_kill_cannot_start_and_says_why(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    inv = tmp_path / "inv.py"
    inv.write_text("hosts = [('@kube/a', {'kubeconfig': 'x'})]\n")
    state = tmp_path / "state.json"
    state.write_text('{"inventory": "inv.py", "waves": {"0": {"sta')
    assert rollout.rollout(str(inv), state_file=str(state), resume=True) == rollout.EXIT_CANNOT_START
    assert f"the state file {state} cannot be read" in capsys.readouterr().out
