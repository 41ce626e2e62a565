"""Settings, bundle verification, rendering and readiness diagnostics: pure logic, no cluster."""

from __future__ import annotations

import shutil

import pytest

from knfleet.desired import bundle, render, settings
from knfleet.kube import readiness
from tests.unit.bundle_fixture import FOLDER, fixture_bundle


@pytest.fixture(scope="module")
def b() -> bundle.Bundle:
    return fixture_bundle()


@pytest.fixture
def pinned(monkeypatch) -> str:
    """The fixture bundle's files pinned as a version of their own, "9.9.9"."""
    monkeypatch.setitem(bundle.PINS, "9.9.9", {p.name: bundle.sha256(p.read_bytes()) for p in FOLDER.glob("*.yaml")})
    monkeypatch.setitem(bundle.KOURIER_VERSION, "9.9.9", "9.9.9")
    return "9.9.9"


def test_bundle_rejects_a_tampered_file_naming_it_and_both_checksums(tmp_path, pinned):
    folder = tmp_path / "b"
    shutil.copytree(FOLDER, folder)
    assert set(bundle.load(pinned, str(folder)).files) == set(bundle.REQUIRED)
    (folder / "serving-core.yaml").write_text("tampered")
    bundle.load.cache_clear()
    with pytest.raises(bundle.BundleError) as err:
        bundle.load(pinned, str(folder))
    msg = str(err.value)
    assert "serving-core.yaml" in msg and bundle.PINS[pinned]["serving-core.yaml"] in msg
    assert bundle.sha256(b"tampered") in msg


def test_bundle_missing_file_and_unknown_version(tmp_path):
    (tmp_path / "serving-crds.yaml").write_text("x")
    with pytest.raises(bundle.BundleError, match="checksum mismatch"):
        bundle.load("1.17.0", str(tmp_path))
    with pytest.raises(bundle.BundleError, match="serving-crds.yaml is missing"):
        bundle.load("1.17.0", str(tmp_path / "nowhere"))
    with pytest.raises(bundle.BundleError, match="not supported"):
        bundle.load("1.9.0", str(tmp_path))


def test_official_urls():
    assert bundle.url_for("1.17.2", "serving-core.yaml").endswith("/knative-v1.17.2/serving-core.yaml")
    assert "net-kourier/releases/download/knative-v1.17.0/kourier.yaml" in bundle.url_for("1.17.2", "kourier.yaml")


@pytest.mark.parametrize(("data", "field"), [
    ({"kourier_service_type": "Ingress"}, "kourier_service_type"),
    ({"action": "remove"}, "action"),
    ({"knative_version": "1.16.0"}, "knative_version"),
    ({"knative_autoscaler": {"scale-down-delay": "5"}}, "knative_autoscaler.scale-down-delay"),
    ({"knative_autoscaler": {"utoscaling-typo": "1"}}, "knative_autoscaler"),
    ({"wait_timeout": -1}, "wait_timeout"),
])
def test_settings_errors_name_the_field(data, field):
    with pytest.raises(settings.SettingsError) as err:
        settings.from_data(data)
    assert str(err.value).startswith(field)


def test_render_merges_user_keys_into_release_configmaps(b):
    cfg = settings.from_data({"knative_domain": "127.0.0.1.nip.io", "knative_autoscaler": {"stable-window": "90s"},
                              "kourier_service_type": "NodePort"})
    stages = {s.name: s for s in render.install_stages(b, cfg)}
    assert list(stages) == ["crds", "config", "core", "kourier", "proxy"]
    cms = {o["metadata"]["name"]: o for o in stages["config"].objects if o["kind"] == "ConfigMap"}
    assert cms["config-network"]["data"]["ingress-class"] == "kourier.ingress.networking.knative.dev"
    assert cms["config-domain"]["data"]["127.0.0.1.nip.io"] == ""
    assert cms["config-autoscaler"]["data"]["stable-window"] == "90s"
    assert "_example" in cms["config-autoscaler"]["data"]  # the release's content stays
    assert [o["metadata"]["name"] for o in stages["crds"].objects] == ["services.serving.knative.dev"]
    assert not [o for o in stages["core"].objects if o["kind"] in ("CustomResourceDefinition", "ConfigMap")]
    kourier = next(o for o in stages["kourier"].objects
                   if o["kind"] == "Service" and o["metadata"]["name"] == "kourier")
    assert kourier["spec"]["type"] == "NodePort"


def test_proxy_timeout_is_not_shorter_than_the_max_revision_timeout(b):
    cfg = settings.from_data({"knative_defaults": {"max-revision-timeout-seconds": "1800"},
                              "proxy_service_type": "LoadBalancer"})
    objs = render.proxy_objects(cfg)
    conf = next(o for o in objs if o["kind"] == "ConfigMap")["data"]["default.conf"]
    assert "proxy_read_timeout 1860s" in conf and "proxy_buffering off" in conf
    assert "proxy_set_header Host $host" in conf
    assert next(o for o in objs if o["kind"] == "Service")["spec"]["type"] == "LoadBalancer"


def test_uninstall_stages_reverse_order_without_custom_resources(b):
    stages = render.uninstall_stages(b, settings.from_data({"action": "uninstall"}))
    assert [s.name for s in stages] == ["proxy", "kourier", "core", "crds"]
    core = stages[2].objects
    assert not [o for o in core if o["apiVersion"].split("/")[0].endswith("knative.dev")]


def test_pod_problem_says_why():
    pod = {"metadata": {"name": "p", "namespace": "ns"},
           "status": {"phase": "Pending",
                      "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                      "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]}}
    assert "Insufficient nvidia.com/gpu" in readiness.pod_problem(pod)
    pull = {"metadata": {"name": "q", "namespace": "ns"},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "c", "ready": False, "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                    "message": "Back-off pulling image"}}}]}}
    events = [{"type": "Warning", "reason": "Failed", "message": "Failed to pull image",
               "involvedObject": {"name": "q"}}]
    text = readiness.pod_problem(pull, events)
    assert "ImagePullBackOff" in text and "event Failed: Failed to pull image" in text


def test_deployment_problem_lists_its_pods():
    dep = {"metadata": {"name": "web", "namespace": "ns", "generation": 1}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "web"}}}, "status": {}}
    pod = {"metadata": {"name": "web-1", "namespace": "ns", "labels": {"app": "web"}},
           "status": {"phase": "Pending", "containerStatuses": [
               {"name": "c", "ready": False, "state": {"waiting": {"reason": "ErrImagePull"}}}]}}
    text = readiness.deployment_problem(dep, [pod], [])
    assert text.startswith("deployment ns/web: 0/1 ready") and "ErrImagePull" in text
    assert not readiness.deployment_available(dep)


def _node(name: str, status: str, reason: str = "", message: str = "", cordoned: bool = False) -> dict:
    return {"metadata": {"name": name}, "spec": {"unschedulable": True} if cordoned else {},
            "status": {"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": message,
                                       "lastTransitionTime": "2026-11-26T16:31:30Z"}]}}


def test_nodes_that_cannot_run_pods_are_named_with_the_kubelets_reason():
    lost = _node("gpu-1", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    assert readiness.node_problem(lost) == ("node gpu-1 NotReady since 2026-11-26T16:31:30Z (NodeStatusUnknown: "
                                            "Kubelet stopped posting node status.)")
    assert readiness.node_problem(_node("cpu-1", "True", "KubeletReady")) == ""
    assert readiness.node_problem(_node("cpu-2", "True", cordoned=True)) == "node cpu-2 cordoned (unschedulable)"
    assert readiness.node_problem({"metadata": {"name": "new"}}) == "node new NotReady (no Ready condition)"
    short, lines = readiness.nodes_note([lost, _node("cpu-1", "True"), _node("gpu-2", "False", "KubeletNotReady",
                                                                              "container runtime is down")])
    assert short == "2 of 3 node(s) NotReady or cordoned: gpu-1, gpu-2"
    assert lines.splitlines()[1] == ("node gpu-2 NotReady since 2026-11-26T16:31:30Z (KubeletNotReady: container "
                                     "runtime is down)")
    assert readiness.nodes_note([_node("cpu-1", "True")]) == ("", "")
    many = readiness.nodes_note([_node(f"n{i}", "Unknown") for i in range(7)])[0]
    assert many.endswith("n0, n1, n2, n3, n4 …") and many.startswith("7 of 7 ")


class _Nodes:
    """The two calls of knfleet's Cluster a wait's message makes once it has given up."""

    def __init__(self, nodes: list[dict] | None, error: Exception | None = None) -> None:
        self.nodes, self.error, self.invalidated = nodes, error, 0

    def invalidate(self) -> None:
        self.invalidated += 1

    def list(self, api_version: str, kind: str) -> list[dict]:
        assert (api_version, kind) == ("v1", "Node")
        if self.error:
            raise self.error
        return self.nodes or []


def test_a_wait_that_gives_up_names_the_nodes_that_cannot_run_pods_in_its_first_line():
    from knfleet.kube.client import KubeError
    from knfleet.run.applying import with_nodes as _with_nodes

    message = "not ready after 120s:\nksvc t/m: Ready=Unknown reason Deploying"
    lost = _node("gpu-1", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    cluster = _Nodes([lost, _node("cpu-1", "True")])
    text = _with_nodes(cluster, message)
    assert cluster.invalidated == 1  # the nodes as they are now, not as cached at the wait's start
    assert text.splitlines()[0] == "not ready after 120s (1 of 2 node(s) NotReady or cordoned: gpu-1):"
    assert text.splitlines()[1] == "ksvc t/m: Ready=Unknown reason Deploying"
    assert text.splitlines()[2].startswith("node gpu-1 NotReady since ")
    assert _with_nodes(_Nodes([_node("cpu-1", "True")]), message) == message
    forbidden = KubeError("c", "list nodes", 403, "Forbidden", "nodes is forbidden")
    assert _with_nodes(_Nodes(None, forbidden), message) == message


def test_bundle_download_verifies_and_caches(tmp_path, monkeypatch, pinned):
    """The official-URL path, against a real HTTP server on 127.0.0.1 serving the (fixture) release files."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(FOLDER))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(bundle, "SERVING_URL", base + "/{file}")
    monkeypatch.setattr(bundle, "KOURIER_URL", base + "/kourier.yaml")
    try:
        cache = tmp_path / "cache"
        got = bundle.load(pinned, None, (), str(cache))
        assert set(got.files) == set(bundle.REQUIRED)
        assert (cache / pinned / "serving-core.yaml").exists()
        # the wrong version's pins: the download is refused and nothing is cached
        with pytest.raises(bundle.BundleError, match="checksum mismatch"):
            bundle.load("1.17.2", None, (), str(tmp_path / "other"))
        assert not (tmp_path / "other" / "1.17.2" / "serving-crds.yaml").exists()
    finally:
        server.shutdown()
