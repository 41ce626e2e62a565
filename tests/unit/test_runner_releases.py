"""Issue 22: the pod runner runs the build of the release a pod's image digest belongs to, and never another
release's binary (a 1.17.2 pod stays not Ready, saying why); the build makes one wrapper module per release."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcluster import build, versions
from localcluster.runner import releases
from localcluster.runner.pods import PodRunner

DIGESTS = {(r, b): d for d, (r, b) in releases.IMAGES.items()}


def image(release: str, binary: str, registry: str = "gcr.io/knative-releases") -> str:
    path = "knative.dev/pkg/apiextensions/storageversion/cmd/migrate" if binary == "migrate" else \
        "knative.dev/serving/pkg/cleanup/cmd/cleanup" if binary == "cleanup" else f"knative.dev/serving/cmd/{binary}"
    return f"{registry}/{path}@{DIGESTS[(release, binary)]}"


@pytest.fixture
def bin_root(tmp_path: Path) -> Path:
    for release in versions.KNATIVE_BUILDS:
        folder = tmp_path / versions.knative_bin_key(release)
        folder.mkdir()
        for name in versions.KNATIVE_COMMANDS:
            (folder / name).write_text("#!/bin/sh\n")
    return tmp_path


def test_the_table_has_each_binary_of_each_pinned_release():
    assert sorted(DIGESTS) == sorted((r, b) for r in ("1.17.0", "1.17.1", "1.17.2", "1.18.1")
                                     for b in ("webhook", "controller", "migrate", "cleanup"))


@pytest.mark.parametrize(("release", "module"), [("1.17.0", "0.44.0"), ("1.17.1", "0.44.1"), ("1.18.1", "0.45.1")])
def test_a_pod_runs_the_build_of_its_images_release(bin_root, release, module):
    for binary in versions.KNATIVE_COMMANDS:
        got = releases.pick(image(release, binary), bin_root)
        assert got is not None and got.release == release
        assert got.path == bin_root / f"knative-serving-v{module}" / binary
    # a mirror keeps the digest: same build
    mirrored = releases.pick(image(release, "webhook", "registry.corp.example:5000/mirror/knative-releases"), bin_root)
    assert mirrored is not None and mirrored.path == bin_root / f"knative-serving-v{module}" / "webhook"


def test_a_release_without_a_build_here_is_not_run_with_another_releases_binary(bin_root):
    got = releases.pick(image("1.17.2", "webhook"), bin_root)
    assert got is not None and got.path is None and got.release == "1.17.2"
    assert got.reason == "KnativeReleaseNotBuilt"
    assert "Knative Serving 1.17.2 (webhook sha256:1b79e592b857…) has no build on this machine: knative.dev/serving " \
           "v0.44.2 is not served by the Go module proxy" in got.message
    assert "not run with another release's binary (builds here: 1.17.0, 1.17.1, 1.18.1)" in got.message


def test_an_unknown_digest_or_a_tag_runs_nothing(bin_root):
    for img in ("gcr.io/knative-releases/knative.dev/serving/cmd/webhook@sha256:" + "0" * 64,
                "ko.local/knative.dev/serving/cmd/webhook:latest",
                # a known digest under another binary's name is not that binary
                "gcr.io/x/knative.dev/serving/cmd/controller@" + DIGESTS[("1.17.0", "webhook")]):
        got = releases.pick(img, bin_root)
        assert got is not None and got.path is None and got.reason == "UnknownKnativeRelease", img
    assert releases.pick("docker.io/library/nginx:1.27", bin_root) is None


def test_a_release_not_built_yet_says_how_to_build_it(tmp_path):
    got = releases.pick(image("1.18.1", "controller"), tmp_path)
    assert got is not None and got.path is None and got.reason == "KnativeBuildMissing"
    assert "python -m localcluster.build" in got.message


class FakeCore:
    def __init__(self) -> None:
        self.patches: list[dict] = []

    def patch_namespaced_pod_status(self, name: str, ns: str, body: dict, **_: object) -> None:
        self.patches.append(body["status"])


def test_the_runner_keeps_a_pod_of_a_release_without_a_build_waiting_with_the_reason(bin_root, tmp_path):
    runner = PodRunner(None, tmp_path, bin_root, "https://127.0.0.1:1", "", log=lambda m: None)
    runner.core = FakeCore()
    pod = {"metadata": {"name": "webhook-1", "namespace": "knative-serving", "uid": "u1",
                        "labels": {"app": "webhook", "app.kubernetes.io/version": "1.17.2"}},
           "spec": {"nodeName": "kwok-cpu-1", "containers": [{"name": "webhook", "image": image("1.17.2", "webhook")}]},
           "status": {"podIP": "10.0.0.9"}}
    runner.reconcile([pod])
    (c,) = runner.containers.values()
    assert c.popen is None and c.path is None and not c.ready
    status = runner.core.patches[-1]
    (st,) = status["containerStatuses"]
    assert st["ready"] is False and st["state"]["waiting"]["reason"] == "KnativeReleaseNotBuilt"
    assert "Knative Serving 1.17.2" in st["state"]["waiting"]["message"]
    assert status["phase"] == "Pending"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"
    runner.reconcile([pod])  # still nothing runs, nothing new written
    assert c.popen is None and len(runner.core.patches) == 1


def test_the_build_repeats_each_serving_versions_own_replaces():
    edit = {"Replace": [
        {"Old": {"Path": "k8s.io/api"}, "New": {"Path": "k8s.io/api", "Version": "v0.31.4"}},
        {"Old": {"Path": "k8s.io/gengo/v2", "Version": "v2.0.0-20240826214909-a7b603a56eb7"},
         "New": {"Path": "k8s.io/gengo/v2", "Version": "v2.0.0-20240228010128-51d4e06bde70"}}]}
    lines = build.replace_lines(edit)
    assert lines == ["k8s.io/api => k8s.io/api v0.31.4",
                     "k8s.io/gengo/v2 v2.0.0-20240826214909-a7b603a56eb7 => k8s.io/gengo/v2 "
                     "v2.0.0-20240228010128-51d4e06bde70"]
    mod = build.knative_go_mod("0.44.1", lines)
    assert "require knative.dev/serving v0.44.1\n" in mod and "replace k8s.io/api => k8s.io/api v0.31.4\n" in mod
    assert build.replace_lines({}) == []
    with pytest.raises(SystemExit, match="local path"):
        build.replace_lines({"Replace": [{"Old": {"Path": "a"}, "New": {"Path": "../a"}}]})
    assert versions.KNATIVE_BUILDS == {"1.17.0": "0.44.0", "1.17.1": "0.44.1", "1.18.1": "0.45.1"}
