"""knfleet lint: one test per Knative 1.17 webhook rule, with accepted and rejected values at each boundary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from knfleet.cli import main as cli_main
from knfleet.desired import lint

P = "autoscaling.knative.dev/"


DIGEST_IMAGE = "vllm/vllm-openai@sha256:" + "a" * 64


def svc(annotations: dict | None = None, spec: dict | None = None, meta_annotations: dict | None = None,
        container: dict | None = None) -> dict:
    ctr = {"image": DIGEST_IMAGE, "ports": [{"containerPort": 8000}], **(container or {})}
    return {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "qwen", "namespace": "llm", "annotations": meta_annotations or {}},
        "spec": {"template": {"metadata": {"annotations": annotations or {}},
                              "spec": {"containers": [ctr], **(spec or {})}}},
    }


def errors(obj: dict, cfg: lint.ClusterConfig | None = None) -> list[lint.Problem]:
    return [p for p in lint.lint_service(obj, cfg or lint.ClusterConfig(), "f.yaml") if p.severity == "error"]


def warnings(obj: dict, cfg: lint.ClusterConfig | None = None) -> list[lint.Problem]:
    return [p for p in lint.lint_service(obj, cfg or lint.ClusterConfig(), "f.yaml") if p.severity == "warning"]


# (annotation key, value, accepted?) at each boundary of the webhook's ranges
CASES = [
    ("target", "0.01", True), ("target", "0.009", False), ("target", "abc", False), ("target", "100", True),
    ("target-utilization-percentage", "1", True), ("target-utilization-percentage", "100", True),
    ("target-utilization-percentage", "0.99", False), ("target-utilization-percentage", "150", False),
    ("targetUtilizationPercentage", "101", False),
    ("target-burst-capacity", "0", True), ("target-burst-capacity", "-1", True),
    ("target-burst-capacity", "-0.5", False), ("target-burst-capacity", "-2", False),
    ("initial-scale", "1", True), ("initial-scale", "0", False), ("initial-scale", "-1", False),
    ("initial-scale", "1.5", False), ("initialScale", "0", False),
    ("min-scale", "0", True), ("min-scale", "2147483647", True), ("min-scale", "-1", False),
    ("min-scale", "2147483648", False), ("minScale", "x", False),
    ("max-scale", "0", True), ("max-scale", "2147483647", True), ("max-scale", "-1", False),
    ("scale-down-delay", "0", True), ("scale-down-delay", "0s", True), ("scale-down-delay", "1h", True),
    ("scale-down-delay", "5", False), ("scale-down-delay", "1h0m1s", False), ("scale-down-delay", "1.5s", False),
    ("scale-down-delay", "-1s", False), ("scaleDownDelay", "10", False),
    ("scale-to-zero-pod-retention-period", "0s", True), ("scale-to-zero-pod-retention-period", "1h", True),
    ("scale-to-zero-pod-retention-period", "1.5s", True), ("scale-to-zero-pod-retention-period", "61m", False),
    ("scale-to-zero-pod-retention-period", "-1s", False),
    ("window", "6s", True), ("window", "1h", True), ("window", "5s", False), ("window", "3601s", False),
    ("window", "6.5s", False),
    ("panic-window-percentage", "1", True), ("panic-window-percentage", "100", True),
    ("panic-window-percentage", "0.5", False), ("panic-window-percentage", "101", False),
    ("panic-threshold-percentage", "110", True), ("panic-threshold-percentage", "1000", True),
    ("panic-threshold-percentage", "109", False), ("panic-threshold-percentage", "1001", False),
    ("panicThresholdPercentage", "100", False),
    ("activation-scale", "2", True), ("activation-scale", "1", False),
    ("class", "kpa.autoscaling.knative.dev", True), ("class", "hpa.autoscaling.knative.dev", True),
    ("class", "custom.example.com", True), ("class", "foo.autoscaling.knative.dev", False),
    ("metric", "concurrency", True), ("metric", "rps", True), ("metric", "cpu", False),
]


@pytest.mark.parametrize(("key", "value", "ok"), CASES)
def test_annotation_ranges(key, value, ok):
    found = errors(svc({P + key: value}))
    assert (not found) == ok, found
    if found:
        assert found[0].path == f"spec.template.metadata.annotations[{P + key}]" and found[0].value == value


def test_every_problem_names_file_service_path_value_and_allowed():
    p = errors(svc({P + "target-utilization-percentage": "150"}))[0]
    text = str(p)
    assert text.startswith("f.yaml: error: llm/qwen: ")
    assert "target-utilization-percentage" in text and "'150'" in text and "allowed 1 to 100" in text


def test_canonical_key_wins_over_alias():
    assert not errors(svc({P + "min-scale": "1", P + "minScale": "-5"}))
    assert any("wins over the legacy alias" in w.message for w in warnings(svc({P + "min-scale": "1",
                                                                               P + "minScale": "-5"})))
    assert errors(svc({P + "minScale": "-5"}))


def test_zero_initial_scale_allowed_only_by_cluster():
    obj = svc({P + "initial-scale": "0"})
    assert "=0 not allowed by cluster" in errors(obj)[0].message
    assert not errors(obj, lint.ClusterConfig(autoscaler={"allow-zero-initial-scale": "true"}))


def test_max_scale_against_min_and_limit():
    assert "less than min-scale" in errors(svc({P + "min-scale": "3", P + "max-scale": "2"}))[0].message
    assert not errors(svc({P + "min-scale": "3", P + "max-scale": "0"}))
    limited = lint.ClusterConfig(autoscaler={"max-scale-limit": "10"})
    assert not errors(svc({P + "max-scale": "10"}), limited)
    assert errors(svc({P + "max-scale": "11"}), limited)
    assert errors(svc({P + "max-scale": "0"}), limited)


def test_activation_scale_within_min_and_max():
    assert errors(svc({P + "activation-scale": "3", P + "max-scale": "2"}))
    assert errors(svc({P + "activation-scale": "2", P + "min-scale": "3"}))
    assert not errors(svc({P + "activation-scale": "2", P + "max-scale": "2"}))


def test_metric_follows_the_effective_class():
    assert not errors(svc({P + "class": "hpa.autoscaling.knative.dev", P + "metric": "cpu"}))
    assert errors(svc({P + "class": "hpa.autoscaling.knative.dev", P + "metric": ""}))
    hpa_default = lint.ClusterConfig(autoscaler={"pod-autoscaler-class": "hpa.autoscaling.knative.dev"})
    assert not errors(svc({P + "metric": "memory"}), hpa_default)
    assert not errors(svc({P + "class": "custom.example.com", P + "metric": "anything"}))


def test_metric_aggregation_algorithm_checked_only_for_explicit_kpa():
    assert errors(svc({P + "class": "kpa.autoscaling.knative.dev", P + "metric-aggregation-algorithm": "max"}))
    assert not errors(svc({P + "class": "kpa.autoscaling.knative.dev",
                           P + "metricAggregationAlgorithm": "weightedExponential"}))
    assert not errors(svc({P + "metric-aggregation-algorithm": "max"}))


def test_autoscaling_annotations_on_service_metadata_are_rejected():
    e = errors(svc(meta_annotations={P + "min-scale": "1"}))
    assert e and "spec.template.metadata.annotations" in e[0].message and e[0].path.startswith("metadata.")


@pytest.mark.parametrize(("cc", "ok"), [(0, True), (1000, True), (1001, False), (-1, False)])
def test_container_concurrency_bounds(cc, ok):
    assert (not errors(svc(spec={"containerConcurrency": cc}))) == ok


def test_container_concurrency_zero_can_be_forbidden():
    cfg = lint.ClusterConfig(defaults={"allow-container-concurrency-zero": "false"})
    assert errors(svc(spec={"containerConcurrency": 0}), cfg)
    assert not errors(svc(spec={"containerConcurrency": 1}), cfg)


@pytest.mark.parametrize(("t", "ok"), [(0, True), (600, True), (601, False), (-1, False)])
def test_timeout_seconds_bounds(t, ok):
    assert (not errors(svc(spec={"timeoutSeconds": t}))) == ok


def test_timeout_follows_max_revision_timeout():
    cfg = lint.ClusterConfig(defaults={"max-revision-timeout-seconds": "1800"})
    assert not errors(svc(spec={"timeoutSeconds": 1800}), cfg)
    assert any("terminationGracePeriodSeconds" in w.message for w in warnings(svc(), cfg))


@pytest.mark.parametrize("port", sorted(lint.RESERVED_PORTS))
def test_reserved_ports(port):
    assert errors(svc(container={"ports": [{"containerPort": port}]}))


def test_port_rules():
    assert not errors(svc(container={"ports": [{"containerPort": 8000, "name": "h2c"}]}))
    assert errors(svc(container={"ports": [{"containerPort": 8000, "name": "grpc"}]}))
    assert errors(svc(container={"ports": [{"containerPort": 8000}, {"containerPort": 8001}]}))
    two = svc()
    two["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "x"})
    assert not errors(two)
    two["spec"]["template"]["spec"]["containers"][0].pop("ports")
    assert errors(two)


def test_probe_port_and_aggressive_probing():
    assert not errors(svc(container={"readinessProbe": {"httpGet": {"path": "/health"}}}))
    assert not errors(svc(container={"readinessProbe": {"httpGet": {"path": "/health", "port": 8000}}}))
    # Knative 1.17 checks only named probe ports (validateProbe): a number is accepted, even another one.
    assert not errors(svc(container={"readinessProbe": {"httpGet": {"path": "/health", "port": 9000}}}))
    assert errors(svc(container={"readinessProbe": {"httpGet": {"path": "/health", "port": "http"}}}))
    assert errors(svc(container={"readinessProbe": {"tcpSocket": {"port": "h2c"}}}))
    named = {"ports": [{"containerPort": 8000, "name": "http1"}]}
    assert not errors(svc(container={**named, "readinessProbe": {"httpGet": {"path": "/", "port": "http1"}}}))
    assert errors(svc(container={**named, "readinessProbe": {"httpGet": {"path": "/", "port": "h2c"}}}))
    assert errors(svc(container={"readinessProbe": {"periodSeconds": 0, "failureThreshold": 3,
                                                    "tcpSocket": {}}}))
    assert not errors(svc(container={"readinessProbe": {"periodSeconds": 0, "tcpSocket": {}}}))


def test_reserved_names_env_and_lifecycle():
    assert errors(svc(container={"name": "queue-proxy"}))
    assert errors(svc(container={"lifecycle": {"preStop": {"exec": {"command": ["x"]}}}}))
    for name in ("PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"):
        assert errors(svc(container={"env": [{"name": name, "value": "1"}]}))
    assert not errors(svc(container={"env": [{"name": "VLLM_LOGGING", "value": "1"}]}))


@pytest.mark.parametrize(("field", "value", "flag"), [
    ("tolerations", [{"key": "nvidia.com/gpu", "operator": "Exists"}], "kubernetes.podspec-tolerations"),
    ("nodeSelector", {"gpu": "a100"}, "kubernetes.podspec-nodeselector"),
    ("runtimeClassName", "nvidia", "kubernetes.podspec-runtimeclassname"),
    ("affinity", {"nodeAffinity": {}}, "kubernetes.podspec-affinity"),
])
def test_fields_needing_feature_flags(field, value, flag):
    e = errors(svc(spec={field: value}))
    assert e and flag in e[0].message
    assert not errors(svc(spec={field: value}), lint.ClusterConfig(features={flag: "enabled"}))


def test_volumes_need_flags_but_emptydir_is_on_by_default():
    shm = {"volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}]}
    assert not errors(svc(spec=shm))
    pvc = {"volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "models"}}]}
    assert errors(svc(spec=pvc))
    assert not errors(svc(spec=pvc), lint.ClusterConfig(features={"kubernetes.podspec-persistent-volume-claim":
                                                                  "enabled"}))


def test_warnings_initial_above_max_typo_progress_deadline_gpus():
    assert warnings(svc({P + "initial-scale": "3", P + "max-scale": "2"}))
    typo = warnings(svc({"utoscaling.knative.dev/initial-scale": "1"}))
    assert typo and "autoscaling.knative.dev/initial-scale" in typo[0].message
    slow = svc({"serving.knative.dev/progress-deadline": "600s"},
               container={"startupProbe": {"httpGet": {"path": "/health"}, "periodSeconds": 10,
                                           "failureThreshold": 180}})
    assert any("ProgressDeadlineExceeded" in w.message for w in warnings(slow))
    gpus = svc(container={"resources": {"limits": {"nvidia.com/gpu": "4"}}})
    assert warnings(gpus, lint.ClusterConfig(max_gpus_per_node=2))
    assert not warnings(gpus, lint.ClusterConfig(max_gpus_per_node=8))


def test_a_valid_gpu_service_has_no_problem():
    ok = svc({P + "class": "kpa.autoscaling.knative.dev", P + "metric": "concurrency", P + "target": "16",
              P + "target-utilization-percentage": "80", P + "min-scale": "1", P + "max-scale": "2",
              P + "initial-scale": "1", P + "scale-down-delay": "10m", P + "window": "120s",
              "serving.knative.dev/progress-deadline": "1800s"},
             spec={"containerConcurrency": 64, "timeoutSeconds": 600},
             container={"resources": {"limits": {"nvidia.com/gpu": "1"}},
                        "readinessProbe": {"httpGet": {"path": "/health"}, "periodSeconds": 10}})
    assert lint.lint_service(ok, lint.ClusterConfig(), "f.yaml") == []


def test_cli_exit_codes_json_strict_and_cluster_config(tmp_path: Path, capsys):
    good, bad, warn = tmp_path / "good.yaml", tmp_path / "bad.yaml", tmp_path / "warn.yaml"
    good.write_text(yaml.safe_dump(svc()))
    bad.write_text(yaml.safe_dump_all([svc(), svc({P + "scale-down-delay": "5"})]))
    warn.write_text(yaml.safe_dump(svc({P + "initial-scale": "3", P + "max-scale": "2"})))
    assert cli_main(["lint", str(good)]) == 0
    assert cli_main(["lint", str(bad)]) == 1
    assert cli_main(["lint", str(warn)]) == 0
    assert cli_main(["lint", "--strict", str(warn)]) == 1
    capsys.readouterr()
    assert cli_main(["lint", "--json", str(bad)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["problems"][0]["file"] == str(bad)
    zero = tmp_path / "zero.yaml"
    zero.write_text(yaml.safe_dump(svc({P + "initial-scale": "0"})))
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": "config-autoscaler"},
                                       "data": {"allow-zero-initial-scale": "true"}}))
    assert cli_main(["lint", str(zero)]) == 1
    assert cli_main(["lint", "--cluster-config", str(cluster), str(zero)]) == 0


def test_cli_lints_group_data_modules(tmp_path: Path):
    mod = tmp_path / "gpu.py"
    mod.write_text("models = [{'name': 'a', 'autoscaling': {'target_utilization_percentage': 150}}]\n")
    proc = subprocess.run([sys.executable, "-m", "knfleet.cli", "lint", str(mod)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "knative-qwen7b/a" in proc.stdout and "target-utilization-percentage" in proc.stdout
    assert "allowed 1 to 100" in proc.stdout
    repo_group = Path(__file__).resolve().parents[2] / "group_data" / "local.py"
    assert subprocess.run([sys.executable, "-m", "knfleet.cli", "lint", str(repo_group)]).returncode == 0


def test_cli_lints_each_cluster_of_an_inventory_with_its_merged_data(tmp_path: Path):
    """An inventory is linted host by host with the data a deploy gives each (host over its group over
    group_data/all.py and group_data/<group>.py of the working directory); problems name the cluster."""
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text("wait_timeout = 300\n")
    (tmp_path / "group_data" / "gpu.py").write_text(
        "models = [{'name': 'a', 'autoscaling': {'target_utilization_percentage': 150}}]\n")
    inv = tmp_path / "fleet.py"
    inv.write_text(
        "import os\n"
        "gpu = ([('@kube/ok', {'kubeconfig': 'k'}),\n"
        "        ('@kube/bad', {'kubeconfig': 'k', 'models': [{'name': 'b', 'autoscaling': {'min_scale': 3,\n"
        "                                                                             'max_scale': 2}}]}),\n"
        "        ('@kube/typo', {'kubeconfig': 'k', 'wait_timeot': 10})], {'knative_domain': 'x.example'})\n")
    proc = subprocess.run([sys.executable, "-m", "knfleet.cli", "lint", "--json", str(inv)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    problems = json.loads(proc.stdout)["problems"]
    files = {pr["file"] for pr in problems if pr["severity"] == "error"}
    assert files == {f"{inv} (ok)", f"{inv} (bad)", f"{inv} (typo)"}, problems
    bad = [pr for pr in problems if pr["file"] == f"{inv} (bad)"]
    assert not [pr for pr in bad if pr["service"] == "knative-qwen7b/a"], bad  # its own models replace the group's
    assert any("min-scale" in pr["path"] or "min_scale" in pr["path"] or "min-scale" in pr["message"]
               for pr in bad), bad
    typo = next(pr for pr in problems if pr["file"] == f"{inv} (typo)")
    assert "unknown key 'wait_timeot'" in typo["message"] and "did you mean 'wait_timeout'" in typo["message"]
    # the group's data reached the host without models of its own: group_data/gpu.py's service, with its error
    ok = [pr for pr in problems if pr["file"] == f"{inv} (ok)" and pr["severity"] == "error"]
    assert [(pr["service"], "allowed 1 to 100" in pr["message"]) for pr in ok] == [("knative-qwen7b/a", True)], ok
    repo = Path(__file__).resolve().parents[2]
    example = subprocess.run([sys.executable, "-m", "knfleet.cli", "lint", "inventories/example.py"],
                             capture_output=True, text=True, cwd=repo)
    assert example.returncode == 0 and "0 error(s)" in example.stderr, example.stdout + example.stderr
    empty = tmp_path / "empty.py"
    empty.write_text("local = []\n")
    proc = subprocess.run([sys.executable, "-m", "knfleet.cli", "lint", str(empty)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0 and "no hosts (nothing linted)" in proc.stdout, proc.stdout + proc.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_here\nlocal = []\n")
    proc = subprocess.run([sys.executable, "-m", "knfleet.cli", "lint", str(broken)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot be run: ModuleNotFoundError" in proc.stdout, proc.stdout


def test_nan_is_accepted_by_knative_so_only_a_warning():
    obj = svc({P + "target-utilization-percentage": "NaN"})
    assert not errors(obj) and warnings(obj)
    assert errors(svc({P + "target-utilization-percentage": "Inf"}))


def test_a_tag_knative_must_resolve_is_a_warning_unless_its_registry_is_skipped():
    tagged = svc(container={"image": "vllm/vllm-openai:v0.6.3"})
    found = warnings(tagged)
    assert [w.path for w in found] == ["spec.template.spec.containers[0].image"]
    assert "index.docker.io" in found[0].message and "registries-skipping-tag-resolving" in found[0].message
    skip = lint.ClusterConfig(deployment={"registries-skipping-tag-resolving": "kind.local, index.docker.io"})
    assert not warnings(tagged, skip)
    assert not warnings(svc())  # a digest needs no resolution
    mirror = svc(container={"image": "mirror.example.com:5000/vllm/vllm-openai:v0.6.3"})
    assert "mirror.example.com:5000" in warnings(mirror)[0].message


@pytest.mark.parametrize(("image", "registry"), [
    ("vllm/vllm-openai:v0.6.3", "index.docker.io"), ("docker.io/vllm/vllm-openai", "index.docker.io"),
    ("nvcr.io/nim/meta/llama3:1", "nvcr.io"), ("localhost:5000/x", "localhost:5000"),
    ("localhost/x", "index.docker.io"), ("ubuntu", "index.docker.io"),
])
def test_image_registry_follows_go_containerregistry(image, registry):
    assert lint.image_registry(image) == registry


def test_a_startup_probe_without_port_is_refused_knative_fills_only_readiness_and_liveness():
    """Knative 1.17's webhook accepts it, but the revision's Deployment gets port 0 and Kubernetes refuses it: the
    revision never starts (found deploying ../shared/knative/NOTES.md's GPU service shape on the real controller)."""
    for handler in ({"httpGet": {"path": "/health"}}, {"tcpSocket": {}}, {"httpGet": {"path": "/health", "port": 0}}):
        found = errors(svc(container={"startupProbe": {**handler, "failureThreshold": 180}}))
        assert found and found[0].path.startswith("spec.template.spec.containers[0].startupProbe.")
        assert "Knative fills it into readiness and liveness probes only" in found[0].message
    assert not errors(svc(container={"startupProbe": {"httpGet": {"path": "/health", "port": 8000}}}))
    assert not errors(svc(container={"startupProbe": {"exec": {"command": ["true"]}}}))
    assert not errors(svc(container={"livenessProbe": {"httpGet": {"path": "/health"}},
                                     "readinessProbe": {"httpGet": {"path": "/health"}}}))
