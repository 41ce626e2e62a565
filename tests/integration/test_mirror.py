"""Issue 12 acceptance: a mirror registry and a vendor bundle (renamed, changed file pinned by group data) on a local
cluster with the real Knative webhook and controller. Of Knative 1.18.1 (issue 22): a mirrored image keeps its
digest, so the pod runner still runs 1.18.1's own build behind it."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from tests.integration.test_deploy import pyinfra
from tests.integration.test_models import QWEN, models_arg
from tests.integration.test_upgrade import SHARED, resource_versions
from tests.kube import control_plane_modules, eventually

pytestmark = pytest.mark.integration

MIRROR = "registry.corp.example:5000/mirror"
ENVOY = "docker.io/envoyproxy/envoy:v1.31.2@sha256:" + "e" * 64  # a pinned tag (digest made up: kwok pulls nothing)
RELEASE_REGISTRIES = ("gcr.io/knative-releases", "docker.io/envoyproxy")  # where the release's images are


@pytest.fixture(scope="module")
def cluster(pool, shared_knative, tmp_path_factory):
    release = SHARED / "v1.18.1"
    if not (release / "serving-core.yaml").is_file():
        pytest.skip(f"no Knative 1.18.1 release files at {release}")
    vendor = tmp_path_factory.mktemp("vendor")
    for f in release.iterdir():
        if f.suffix == ".yaml":
            shutil.copy(f, vendor / f.name)
    # the runbook's dependency bundle: serving-core renamed, and changed (a vendor's comment line)
    core = vendor / "serving-core-v1.18.1.yaml"
    core.write_bytes(b"# vendored by corp, 2026\n" + (vendor / "serving-core.yaml").read_bytes())
    (vendor / "serving-core.yaml").unlink()
    kube = pool.start("mirror", group="mirror")
    yield pool.root_for("mirror"), kube, vendor
    pool.stop(kube)


def settings(vendor, digest: str) -> list[str]:
    files = {"serving-core.yaml": {"file": "serving-core-v1.18.1.yaml", "sha256": digest}}
    return ["--data", "knative_version=1.18.1",
            "--data", f"knative_bundle_dir={vendor}", "--data", "knative_bundle_files=" + json.dumps(files),
            "--data", f"image_mirror={MIRROR}", "--data", f"envoy_image={ENVOY}",
            "--data", 'image_pull_secrets=["corp-pull"]', "--data", models_arg(QWEN)]


def test_vendor_bundle_installs_every_image_from_the_mirror_and_a_changed_byte_stops_the_run(cluster):
    root, kube, vendor = cluster
    core = vendor / "serving-core-v1.18.1.yaml"
    digest = hashlib.sha256(core.read_bytes()).hexdigest()
    run = pyinfra(root, "-y", *settings(vendor, digest))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    seen = []
    for ns in ("knative-serving", "kourier-system"):
        for kind in ("pods", "deployments", "configmaps", "images.caching.internal.knative.dev"):
            text = kube.run("get", kind, "-n", ns, "-o", "json").stdout
            assert not [r for r in RELEASE_REGISTRIES if r in text], (ns, kind)
            seen += [w for w in text.split('"') if w.startswith(MIRROR + "/")]
    assert f"{MIRROR}/envoyproxy/envoy:v1.31.2@sha256:{'e' * 64}" in seen
    assert any(s.startswith(f"{MIRROR}/knative-releases/knative.dev/serving/cmd/controller@sha256:") for s in seen)
    # the mirrored webhook and controller run 1.18.1's own builds (the runner goes by digest, not registry)
    assert set(eventually(lambda: control_plane_modules(kube), 60, what="Ready Knative processes").values()) == \
        {"v0.45.1"}
    assert kube.json("get", "cm", "config-deployment", "-n", "knative-serving")["data"]["queue-sidecar-image"] \
        .startswith(f"{MIRROR}/knative-releases/knative.dev/serving/cmd/queue@sha256:")
    gateway = kube.json("get", "deploy", "3scale-kourier-gateway", "-n", "kourier-system")
    assert gateway["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "corp-pull"}]
    # Knative's controller put the mirrored queue-proxy into the model's revision pod
    pods = kube.json("get", "pods", "-n", "knative-qwen7b")["items"]
    queue = [c["image"] for p in pods for c in p["spec"]["containers"] if c["name"] == "queue-proxy"]
    assert queue and all(i.startswith(f"{MIRROR}/knative-releases/") for i in queue), queue

    before = resource_versions(kube)
    core.write_bytes(core.read_bytes().replace(b"vendored by corp", b"vendored by c0rp"))  # one changed byte
    bad = pyinfra(root, "-y", *settings(vendor, digest), "--data", "knative_domain=changed.example")
    assert bad.returncode == 2
    assert f"checksum mismatch for serving-core-v1.18.1.yaml (serving-core.yaml of the vendor bundle): " \
           f"knative_bundle_files pins sha256 {digest}" in bad.stderr, bad.stderr[-2000:]
    assert "nothing was changed on any cluster" in bad.stderr
    assert resource_versions(kube) == before
