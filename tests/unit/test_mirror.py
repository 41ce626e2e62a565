"""Mirrored registries and vendor bundles (knfleet.desired.mirror, bundle): pure, on the fixture bundle."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from knfleet import cli
from knfleet.desired import bundle, mirror, plan, settings
from tests.unit.bundle_fixture import FOLDER, fixture_bundle

MIRROR = "registry.corp.example:5000/knative"
ENVOY_PIN = "docker.io/envoyproxy/envoy:v1.31.2@sha256:" + "a" * 64


def desired(data: dict) -> plan.Desired:
    return plan.desired("@kube/c", settings.Data(data), bundle_loader=lambda *_: fixture_bundle())


@pytest.mark.parametrize(("image", "moved"), [
    ("gcr.io/knative-releases/knative.dev/serving/cmd/controller@sha256:63c9",
     f"{MIRROR}/knative-releases/knative.dev/serving/cmd/controller@sha256:63c9"),
    ("docker.io/envoyproxy/envoy:v1.31-latest", f"{MIRROR}/envoyproxy/envoy:v1.31-latest"),
    ("nginx:1.27.3-alpine", f"{MIRROR}/library/nginx:1.27.3-alpine"),
    ("localhost:5000/x/y:1", f"{MIRROR}/x/y:1"),
])
def test_rewrite_keeps_the_path_and_the_digest(image, moved):
    assert mirror.rewrite_image(image, MIRROR) == moved


def test_every_image_of_the_install_moves_to_the_mirror_with_pull_secrets_and_envoy_pinned():
    d = desired({"image_mirror": MIRROR, "image_pull_secrets": ["corp-pull"], "envoy_image": ENVOY_PIN,
                 "models": [{}]})
    release = [o for s in d.stages if s.name != "services" for o in s.objects]
    found = [(plan.render.ref(o), w, i) for o in release for w, i in mirror.images_of(o)]
    assert len(found) >= 4  # webhook, the queue image in config-deployment, Envoy, the proxy
    assert all(i.startswith(MIRROR + "/") for _, _, i in found), found
    assert any(w == "data.queue-sidecar-image" for _, w, _ in found)
    assert any(i == f"{MIRROR}/envoyproxy/envoy:v1.31.2@sha256:{'a' * 64}" for _, _, i in found)
    assert any(i.endswith("@sha256:" + "0" * 64) for _, _, i in found)  # digests kept
    gateway = next(o for o in release if o["kind"] == "Deployment" and "kourier" in o["metadata"]["name"])
    assert gateway["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "corp-pull"}]
    # the model services are the user's: their images are not rewritten, lint reports them (below)
    ksvc = next(o for s in d.stages if s.name == "services" for o in s.objects if o["kind"] == "Service")
    assert ksvc["spec"]["template"]["spec"]["containers"][0]["image"].startswith("vllm/")


def test_unreachable_registries_are_reported_and_a_floating_tag_warned():
    d = desired({"unreachable_registries": ["docker.io"], "image_mirror": None, "models": [{}]})
    blocked = [w for w in d.warnings if "unreachable_registries lists" in w]
    assert any("envoyproxy/envoy" in w for w in blocked) and any("vllm/vllm-openai" in w for w in blocked)
    moved = desired({"unreachable_registries": ["docker.io"], "image_mirror": MIRROR})
    assert not [w for w in moved.warnings if "unreachable_registries lists" in w]
    assert any("floating tag" in w and "envoy" in w for w in moved.warnings)
    assert not any("floating tag" in w for w in desired({"image_mirror": MIRROR, "envoy_image": ENVOY_PIN}).warnings)


def test_bad_mirror_settings_name_the_field():
    for data, field in (({"image_mirror": "https://registry"}, "image_mirror"),
                        ({"image_pull_secrets": ["Bad_Name"]}, "image_pull_secrets[]"),
                        ({"knative_bundle_files": {"serving-core.yaml": {"file": "x.yaml"}}},
                         "knative_bundle_files.serving-core.yaml"),
                        ({"knative_bundle_files": {"core.yaml": {"file": "x", "sha256": "0" * 64}}},
                         "knative_bundle_files")):
        with pytest.raises(settings.SettingsError, match=field.replace(".", r"\.").replace("[", r"\[")):
            settings.from_data(settings.Data(data))


def test_vendor_bundle_with_a_renamed_file_and_its_pin(tmp_path):
    folder = tmp_path / "vendor"
    shutil.copytree(FOLDER, folder)
    (folder / "serving-core.yaml").rename(folder / "serving-core-v1.17.0.yaml")
    pin = hashlib.sha256((folder / "serving-core-v1.17.0.yaml").read_bytes()).hexdigest()
    vendor = (("serving-core.yaml", "serving-core-v1.17.0.yaml", pin),)
    official = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ("serving-crds.yaml", "kourier.yaml")}
    saved = dict(bundle.PINS["1.17.0"])
    bundle.PINS["1.17.0"].update(official)  # the fixture's other files stand in for the official ones
    try:
        got = bundle.load("1.17.0", str(folder), (), None, vendor)
        assert got.text("serving-core.yaml") == (folder / "serving-core-v1.17.0.yaml").read_text()
        with pytest.raises(bundle.BundleError, match="serving-core.yaml is missing"):
            bundle.load("1.17.0", str(folder), (), None, ())  # renamed: not found under the release's name
        (folder / "serving-core-v1.17.0.yaml").write_bytes((folder / "serving-core-v1.17.0.yaml").read_bytes() + b" ")
        with pytest.raises(bundle.BundleError, match="checksum mismatch for serving-core-v1.17.0.yaml .* pins sha256"):
            bundle.load("1.17.0", str(folder), (), "x", vendor)
    finally:
        bundle.PINS["1.17.0"].clear()
        bundle.PINS["1.17.0"].update(saved)
        bundle.load.cache_clear()


def test_lint_lists_every_image_of_install_and_models_on_an_unreachable_registry(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "load", lambda *_: fixture_bundle())
    group = tmp_path / "edge.py"
    group.write_text('unreachable_registries = ["docker.io", "example.invalid"]\nmodels = [{}]\n')
    problems = cli.unreachable_images(str(group), settings.from_data(settings.Data(
        {"unreachable_registries": ["docker.io", "example.invalid"]})), plan.models.from_data([{}]))
    images = {p.value for p in problems}
    assert all(p.severity == "error" for p in problems)
    assert "docker.io/envoyproxy/envoy:v1.31-latest" in images and "vllm/vllm-openai:v0.6.3" in images
    assert any(i.startswith("example.invalid/knative.dev/serving/cmd/webhook") for i in images)
    assert any(p.path == "data.queue-sidecar-image" for p in problems)
