"""Issues 12 and 22: in-place upgrade 1.17.0 -> 1.18.1 directly (one minor) on a local cluster whose Knative webhook,
controller and post-install Jobs are each release's real binaries (1.18.1's after the upgrade), refusals before any
change."""

from __future__ import annotations

import json
import re
import threading

import pytest

from knfleet.desired import render
from tests.conftest import REPO
from tests.integration.test_deploy import changed_ops, pyinfra
from tests.integration.test_models import QWEN, models_arg
from tests.kube import Kube, control_plane_modules, eventually

pytestmark = pytest.mark.integration

SHARED = REPO.parent / "shared" / "knative"
RELEASE_FILES = ("serving-core.yaml", "serving-hpa.yaml", "serving-post-install-jobs.yaml")


def release_images(version: str) -> set[str]:
    """Every image of a Serving release (core, hpa, post-install Jobs), from the release files."""
    out = set()
    for name in RELEASE_FILES:
        text = json.dumps(render.load_docs((SHARED / f"v{version}" / name).read_text()))
        out |= {w.strip('"') for w in text.split() if "gcr.io/knative-releases/knative.dev/" in w
                and "/net-kourier/" not in w}
    return {i.rstrip('",') for i in out}


def knative_images(kube: Kube) -> dict[str, str]:
    """What knative-serving runs and configures: every Deployment's and Pod's container image (Kourier's controller
    aside: Kourier has its own release), config-deployment's queue-sidecar-image and the Image object."""
    out = {}
    for kind in ("deployments", "pods"):
        for o in kube.json("get", kind, "-n", "knative-serving")["items"]:
            spec = o["spec"]["template"]["spec"] if kind == "deployments" else o["spec"]
            for c in spec["containers"]:
                if "/net-kourier/" not in c["image"] and o.get("status", {}).get("phase") not in ("Succeeded",):
                    out[f"{kind}/{o['metadata']['name']}/{c['name']}"] = c["image"]
    out["configmap/config-deployment/queue-sidecar-image"] = kube.json(
        "get", "cm", "config-deployment", "-n", "knative-serving")["data"]["queue-sidecar-image"]
    out["image/queue-proxy"] = kube.json("get", "images.caching.internal.knative.dev", "queue-proxy", "-n",
                                         "knative-serving")["spec"]["image"]
    return out


def resource_versions(kube: Kube) -> dict[str, str]:
    """resourceVersions of what a run changes (HPAs left out: the HPA controller writes their status)."""
    got = {}
    for what, ns in (("deploy,cm,svc,sa,pdb,jobs", "knative-serving"), ("deploy,svc,cm", "kourier-system"),
                     ("crd", None)):
        args = ["get", what, *(["-n", ns] if ns else [])]
        for o in kube.json(*args)["items"]:
            got[f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"] = \
                o["metadata"]["resourceVersion"]
    return got


class ReadyWatch:
    """Polls the model service's Ready condition for the whole of a run; every look that is not Ready is kept."""

    def __init__(self, kube: Kube, ns: str, name: str) -> None:
        self.kube, self.ns, self.name = kube, ns, name
        self.looks, self.not_ready = 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            proc = self.kube.run("get", "ksvc", self.name, "-n", self.ns, "-o", "json", check=False)
            if proc.returncode == 0:
                conds = {c["type"]: c for c in json.loads(proc.stdout)["status"].get("conditions", [])}
                self.looks += 1
                if conds.get("Ready", {}).get("status") != "True":
                    self.not_ready.append(conds.get("Ready"))
            self.stop.wait(0.3)

    def __enter__(self) -> ReadyWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture(scope="module")
def cluster(pool, shared_knative):
    if not (SHARED / "v1.18.1" / "serving-core.yaml").is_file():
        pytest.skip(f"no Knative 1.18.1 release files at {SHARED / 'v1.18.1'}")
    kube = pool.start("upgrade", group="upgrade")
    yield pool.root_for("upgrade"), kube
    pool.stop(kube)


LEFTOVER = """apiVersion: v1
kind: ConfigMap
metadata:
  name: config-from-an-older-release
  namespace: knative-serving
  labels: {app.kubernetes.io/name: knative-serving, app.kubernetes.io/version: "1.17.0"}
data: {}
"""


def test_upgrade_in_place_from_1_17_0_to_1_18_1_directly(cluster):
    root, kube = cluster
    first = pyinfra(root, "-y", "--data", models_arg(QWEN))
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    old, new = release_images("1.17.0"), release_images("1.18.1")
    assert old and new and not old & new
    assert set(knative_images(kube).values()) <= old
    # An object the old release had and the new one has not, as knfleet would have applied it.
    kube.run("apply", "--server-side", "--field-manager=knfleet", "-f", "-", stdin=LEFTOVER)

    with ReadyWatch(kube, "knative-qwen7b", "knative-qwen7b-svc") as watch:
        up = pyinfra(root, "-y", "--data", models_arg(QWEN), "--data", "knative_version=1.18.1")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-4000:]
    log = up.stderr + up.stdout
    assert "Knative Serving 1.17.0 installed: upgrading to 1.18.1" in log, log[-3000:]
    # the model service answered before anything was applied, and after
    # (each time through kourier-internal and through the public proxy's load balancer: group_data/local.py)
    said = r"\] smoke knative-qwen7b/knative-qwen7b-svc: 200 in \S+ \(via (kourier-internal|proxy)"
    answered = [(m.start(), m.group(1)) for m in re.finditer(said, log)]
    crds = log.index("Knative CRDs (serving-crds.yaml)")
    assert sorted(path for at, path in answered if at < crds) == ["kourier-internal", "proxy"], log[-3000:]
    assert sorted(path for at, path in answered if at > crds) == ["kourier-internal", "proxy"], log[-3000:]
    # ... and was Ready at every look in between
    assert watch.looks > 10 and watch.not_ready == [], watch.not_ready[:3]

    # every Knative image (Deployments, Pods, config-deployment, the Image object) is 1.18.1's
    # (a pod of an old ReplicaSet may still be Terminating a moment after the run: kwok deletes it shortly)
    images = knative_images(kube)
    if not set(images.values()) <= new:
        def only_new() -> dict[str, str] | None:
            now = knative_images(kube)
            return now if set(now.values()) <= new else None
        images = eventually(only_new, 60, what=f"only 1.18.1 images; first look: {images}")
    assert any(k.startswith("pods/controller-") for k in images)
    # ... and the processes behind the webhook and controller pods are the v0.45.1 (1.18.1) builds
    eventually(lambda: set(control_plane_modules(kube).values()) == {"v0.45.1"}, 60, what="only v0.45.1 processes")
    # the post-install Jobs: created from generateName, completed, run by the real binaries
    jobs = kube.json("get", "jobs", "-n", "knative-serving", "-l", "app.kubernetes.io/version=1.18.1")["items"]
    assert sorted(j["metadata"]["generateName"] for j in jobs) == ["cleanup-serving-",
                                                                  "storage-version-migration-serving-"]
    for j in jobs:
        assert any(c["type"] == "Complete" and c["status"] == "True" for c in j["status"]["conditions"]), j["status"]
    pod_logs = root / kube.name / "logs" / "pods"
    migrate = [p for p in pod_logs.glob("knative-serving_storage-version-migration-serving-*_migrate.log")]
    assert migrate and "Migration complete" in migrate[0].read_text(), list(pod_logs.iterdir())
    cleanup = [p for p in pod_logs.glob("knative-serving_cleanup-serving-*_cleanup.log")]
    assert cleanup and "Old Serving resource deletion completed successfully" in cleanup[0].read_text()
    # the old release's object the new one lacks is gone; the upgrade is noted done
    assert not kube.exists("cm", "config-from-an-older-release", "-n", "knative-serving")
    note = kube.json("get", "cm", "knfleet-upgrade", "-n", "kube-system")["data"]
    assert (note["from"], note["to"], note["phase"]) == ("1.17.0", "1.18.1", "done")

    again = pyinfra(root, "-y", "--json", "--data", models_arg(QWEN), "--data", "knative_version=1.18.1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert changed_ops(again) == []
    assert len(kube.json("get", "jobs", "-n", "knative-serving")["items"]) == 2  # no new Jobs


def test_downgrade_and_skipped_minor_refused_before_any_change(cluster):
    root, kube = cluster
    before = resource_versions(kube)
    down = pyinfra(root, "-y", "--data", models_arg(QWEN), "--data", "knative_version=1.17.0")
    assert down.returncode != 0
    assert "Knative Serving 1.18.1 is installed and knative_version is 1.17.0: downgrades are not supported" \
        in down.stderr, down.stderr[-3000:]
    assert 'Keep knative_version = "1.18.1"' in down.stderr
    assert resource_versions(kube) == before

    # a cluster whose Serving objects say 1.16.4 (labels as a 1.16.4 release leaves them)
    serving = [("crd", "services.serving.knative.dev", None)] + [
        ("deploy", n, "knative-serving") for n in ("activator", "autoscaler", "controller", "webhook")]

    def label(version: str) -> None:
        for kind, name, ns in serving:
            kube.run("label", "--overwrite", kind, name, f"app.kubernetes.io/version={version}",
                     *(["-n", ns] if ns else []))
    label("1.16.4")
    try:
        before = resource_versions(kube)
        jump = pyinfra(root, "-y", "--data", models_arg(QWEN), "--data", "knative_version=1.18.1")
        assert jump.returncode != 0
        assert "Upgrade along 1.16.4 -> 1.17.x -> 1.18.1" in jump.stderr, jump.stderr[-3000:]
        assert resource_versions(kube) == before
    finally:
        label("1.18.1")
    status = kube.run("get", "deploy", "controller", "-n", "knative-serving", "-o",
                      "jsonpath={.metadata.labels.app\\.kubernetes\\.io/version}").stdout
    assert status == "1.18.1"
