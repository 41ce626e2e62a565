"""Issue 22 acceptance: Knative upgrades on the real binaries, 1.17.0 -> 1.17.1 -> 1.18.1, on two clusters at once.

After each upgrade the processes behind the webhook and controller pods are the target release's builds (`go version
-m` of the running binary names knative.dev/serving v0.44.1, then v0.45.1), the storage-version migration Job ran the
target's `migrate`, `knfleet status` shows the release, a re-run changes nothing; a client sending the runbook's chat
request through kourier-internal the whole time sees no failed request. Between them: a 1.18-only config-features flag
with knative_version 1.17.1 is refused before any cluster is touched (the real 1.17.1 webhook refuses what the flag
would allow, as lint says); at the end a downgrade is refused with every resourceVersion unchanged, and a pod of a
release with no build here (1.17.2) stays not Ready, saying why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
import requests
import yaml

from knfleet.desired import lint, releases
from knfleet.run import smoke
from localcluster import paths, versions
from localcluster.cluster import Spec
from localcluster.runner import releases as runner_releases
from tests.conftest import REPO
from tests.integration.test_deploy import changed_ops
from tests.integration.test_upgrade import SHARED, release_images, resource_versions
from tests.kube import Kube, binary_modules, control_plane_modules, eventually

pytestmark = pytest.mark.integration

CSI = releases.CSI_FLAG
MODEL = {"name": "knative-qwen7b-svc", "namespace": "knative-qwen7b"}  # the runbook's service (every default)


def test_the_runners_image_table_is_derived_from_the_pinned_release_files():
    if not all((SHARED / f"v{v}" / "serving-core.yaml").is_file() for v in releases.RELEASES):
        pytest.skip(f"no offline release files at {SHARED}")
    assert runner_releases.derive() == runner_releases.IMAGES


@pytest.fixture(scope="module")
def two(pool, tmp_path_factory):
    missing = [v for v in ("1.17.0", "1.17.1", "1.18.1") if not (SHARED / f"v{v}" / "serving-core.yaml").is_file()]
    if missing:
        pytest.skip(f"no Knative release files for {', '.join(missing)} at {SHARED}")
    spec = Spec(ready_delay_ms=300, time_factor=0.05)
    a, b = pool.start("rel", spec, group="releases"), pool.start("rel", spec, group="releases")
    yield tmp_path_factory.mktemp("inv") / "releases.py", a, b
    pool.stop(a)
    pool.stop(b)


def inventory(path: Path, clusters: tuple[Kube, ...], version: str, **extra: object) -> Path:
    """Group `local` (group_data/local.py: tag resolution skipped for Docker Hub, the proxy's load balancer) with the
    runbook's model service and the release asked for."""
    hosts = [(f"@kube/{k.name}", {"kubeconfig": str(k.kubeconfig), "knative_bundle_dir": str(SHARED / "v{version}"),
                                  "knative_version": version, "models": [{}], **extra}) for k in clusters]
    path.write_text(f"local = {hosts!r}\n")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / ".venv" / "bin" / argv[0]), *argv[1:]], cwd=REPO, capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL, env=dict(os.environ, PYINFRA_PROGRESS="off"))


def deploy(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("pyinfra", str(inv), "deploy.py", "-y", *args)


class Traffic:
    """A background client: the runbook's chat request to the model service through kourier-internal, again and
    again, for the whole of a run; every failed request is kept."""

    def __init__(self, kube: Kube) -> None:
        self.url = (kube.cluster.dir / "internal.url").read_text().strip().rstrip("/") + "/v1/chat/completions"
        ksvc = kube.json("get", "ksvc", MODEL["name"], "-n", MODEL["namespace"])
        self.host = ksvc["status"]["url"].split("://", 1)[1]
        self.sent, self.failed = 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = smoke.runbook_request("qwen7b")
        with requests.Session() as http:
            while not self.stop.is_set():
                self.sent += 1
                try:
                    resp = http.post(self.url, json=body, headers={"Host": self.host}, timeout=30)
                    why = None if resp.status_code == 200 else f"HTTP {resp.status_code}: {resp.text[:200]}"
                    why = why or smoke.check_body(resp.json(), "qwen7b")
                except (requests.RequestException, ValueError) as err:
                    why = f"{type(err).__name__}: {err}"
                if why:
                    self.failed.append(why)
                self.stop.wait(0.05)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def queue_images(kube: Kube) -> dict[str, str] | None:
    """The queue-proxy image of each of the model's pods and of its revision Deployments' templates (for a failure
    message: the first look that is not all the target's is returned)."""
    out = {}
    for pod in kube.json("get", "pods", "-n", MODEL["namespace"])["items"]:
        if not pod["metadata"].get("deletionTimestamp"):
            ready = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}.get("Ready")
            out.update({f"pod/{pod['metadata']['name']} ({pod['status'].get('phase')}, Ready {ready})": c["image"]
                        for c in pod["spec"]["containers"] if c["name"] == "queue-proxy"})
    for dep in kube.json("get", "deploy", "-n", MODEL["namespace"])["items"]:
        out.update({f"deploy/{dep['metadata']['name']}": c["image"]
                    for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "queue-proxy"})
    return out


def migrate_binary(kube: Kube, version: str) -> tuple[str, str]:
    """(the binary the storage-version migration Job of `version` ran, its log) from the runner's pod log."""
    (job,) = [j for j in kube.json("get", "jobs", "-n", "knative-serving", "-l",
                                   f"app.kubernetes.io/version={version}")["items"]
              if j["metadata"]["generateName"] == "storage-version-migration-serving-"]
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"]), job["status"]
    (pod,) = kube.json("get", "pods", "-n", "knative-serving", "-l", f"job-name={job['metadata']['name']}")["items"]
    log = (kube.cluster.dir / "logs" / "pods" / f"knative-serving_{pod['metadata']['name']}_migrate.log").read_text()
    started = re.search(r"^--- \S+ start (\S+) \(restart 0\)$", log, re.M)
    assert started, log[:2000]
    return started.group(1), log


def csi_service() -> str:
    return yaml.safe_dump({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "csi-probe", "namespace": MODEL["namespace"]},
        "spec": {"template": {"spec": {
            "containers": [{"image": "docker.io/vllm/vllm-openai:v0.6.4",
                            "volumeMounts": [{"name": "w", "mountPath": "/w", "readOnly": True}]}],
            "volumes": [{"name": "w", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": True}}]}}}})


def knative_admits(kube: Kube, manifest: str) -> tuple[bool, str]:
    """Whether the cluster's Knative admits the Service (a server-side dry run with kubectl's strict field
    validation): refused by its webhook, or by its CRD schema (a field the release does not have)."""
    proc = kube.run("create", "--dry-run=server", "-f", "-", stdin=manifest, check=False)
    if proc.returncode != 0:
        assert "denied the request" in proc.stderr or "strict decoding error: unknown field" in proc.stderr, \
            proc.stderr
    return proc.returncode == 0, proc.stderr


def lint_admits(manifest: str, version: str, features: dict[str, str]) -> bool:
    cfg = lint.ClusterConfig(features=features, release=version)
    return not [p for p in lint.lint_service(yaml.safe_load(manifest), cfg) if p.severity == "error"]


def upgrade_to(inv: Path, clusters: tuple[Kube, Kube], version: str, module: str) -> None:
    inventory(inv, clusters, version)
    with Traffic(clusters[0]) as ta, Traffic(clusters[1]) as tb:
        up = deploy(inv)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-5000:]
    for kube in clusters:
        assert f"[@kube/{kube.name}] Knative Serving" in up.stderr and f"installed: upgrading to {version}" in up.stderr
    # the model service answered through kourier-internal the whole time ...
    for kube, t in zip(clusters, (ta, tb), strict=True):
        print(f"{kube.name}: {t.sent} chat requests during the upgrade to {version}, {len(t.failed)} failed")
        assert t.sent > 20 and t.failed == [], (t.sent, t.failed[:5])
    # ... while its revision's pods moved to the target's queue-proxy (Knative rolls them with the new release)
    for kube in clusters:
        queue = kube.json("get", "cm", "config-deployment", "-n", "knative-serving")["data"]["queue-sidecar-image"]
        assert queue in release_images(version)
        eventually(lambda k=kube, q=queue: (got := queue_images(k)) and set(got.values()) == {q} or got,
                   120, what=f"the model's pods on {version}'s queue-proxy {queue}")
    # the processes behind the webhook and controller pods are the target release's builds
    for kube in clusters:
        mods = eventually(lambda k=kube: (m := control_plane_modules(k)) and set(m.values()) == {module} and m,
                          120, what=f"only {module} webhook and controller processes on {kube.name}")
        assert {k.split("/")[0] for k in mods} == {"webhook", "controller"}, mods
        # the migration Job ran the target's migrate (built against the same knative.dev/pkg as its webhook)
        binary, log = migrate_binary(kube, version)
        assert Path(binary) == paths.knative_bin_dir(version) / "migrate"
        assert f"knative-serving-{module}" in binary and "Migration complete" in log
        got = subprocess.run(["go", "version", "-m", binary], capture_output=True, text=True, check=True).stdout
        webhook_pid = int(next(p["status"]["containerStatuses"][0]["containerID"].split("//")[1] for p in kube.json(
            "get", "pods", "-n", "knative-serving", "-l", "app=webhook")["items"]
            if not p["metadata"].get("deletionTimestamp")))
        assert f"knative.dev/pkg\t{binary_modules(webhook_pid)['knative.dev/pkg']}" in got, got
        note = kube.json("get", "cm", "knfleet-upgrade", "-n", "kube-system")["data"]
        assert (note["to"], note["phase"]) == (version, "done")
    # knfleet status shows the new release on both, in sync; a re-run changes nothing
    status = run("knfleet", "status", str(inv), "--json")
    assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-2000:]
    for kube in clusters:
        got = json.loads(status.stdout)["clusters"][kube.name]
        assert got["knative_version"] == version and got["status"] == "in-sync", got
    again = deploy(inv, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert changed_ops(again) == []


def test_two_clusters_upgrade_1_17_0_to_1_17_1_to_1_18_1_on_each_releases_own_binaries(two):
    inv, a, b = two
    clusters = (a, b)
    inventory(inv, clusters, "1.17.0")
    first = deploy(inv)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    for kube in clusters:
        eventually(lambda k=kube: set(control_plane_modules(k).values()) == {"v0.44.0"}, 60, what="v0.44.0 processes")

    upgrade_to(inv, clusters, "1.17.1", "v0.44.1")

    # a 1.18-only flag with knative_version 1.17.1: refused before any cluster is touched
    before = {k.name: resource_versions(k) for k in clusters}
    inventory(inv, clusters, "1.17.1", knative_features={CSI: "enabled"})
    refused = deploy(inv)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-3000:]
    assert f"knative_features.{CSI} = 'enabled': Knative Serving 1.17.1 has no config-features flag {CSI}" \
        in refused.stderr, refused.stderr[-3000:]
    assert "nothing was changed on any cluster" in refused.stderr
    assert {k.name: resource_versions(k) for k in clusters} == before
    # ... what it would allow, 1.17.1 refuses (its CRDs have no csi field), as lint for 1.17.1 says
    admitted, why = knative_admits(a, csi_service())
    assert not admitted and 'unknown field "spec.template.spec.volumes[0].csi"' in why, why
    assert not lint_admits(csi_service(), "1.17.1", {CSI: "enabled"})

    upgrade_to(inv, clusters, "1.18.1", "v0.45.1")
    for kube in clusters:  # the Kourier release that goes with 1.18.1 (Envoy v1.34)
        gateway = kube.json("get", "deploy", "3scale-kourier-gateway", "-n", "kourier-system")
        assert gateway["metadata"]["labels"]["app.kubernetes.io/version"] == "1.18.0"
        envoy = gateway["spec"]["template"]["spec"]["containers"][0]["image"]
        assert envoy == "docker.io/envoyproxy/envoy:v1.34-latest"

    # 1.18.1's webhook refuses a CSI volume until the flag is enabled, then admits it; lint agrees each time
    admitted, why = knative_admits(a, csi_service())
    assert not admitted and "denied the request" in why and "CSI volume support is disabled" in why, why
    assert not lint_admits(csi_service(), "1.18.1", {})
    inventory(inv, clusters, "1.18.1", knative_features={CSI: "enabled"})
    flagged = deploy(inv)
    assert flagged.returncode == 0, flagged.stderr[-3000:]
    assert eventually(lambda: knative_admits(a, csi_service())[0], 30, what="1.18.1's webhook admitting CSI volumes")
    assert lint_admits(csi_service(), "1.18.1", {CSI: "enabled"})


def test_a_downgrade_from_1_18_1_to_1_17_1_is_refused_with_every_resource_version_unchanged(two):
    inv, a, b = two
    before = {k.name: resource_versions(k) for k in (a, b)}
    inventory(inv, (a, b), "1.17.1")
    down = deploy(inv)
    assert down.returncode != 0
    for kube in (a, b):
        assert f"[@kube/{kube.name}]" in down.stderr
    assert "Knative Serving 1.18.1 is installed and knative_version is 1.17.1: downgrades are not supported" \
        in down.stderr, down.stderr[-3000:]
    assert {k.name: resource_versions(k) for k in (a, b)} == before


def test_a_pod_of_a_release_without_a_build_here_stays_not_ready_saying_why(two):
    _, a, _ = two
    digest = next(d for d, (r, b) in runner_releases.IMAGES.items() if (r, b) == ("1.17.2", "webhook"))
    a.run("create", "namespace", "nobuild")
    a.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "webhook-1-17-2",
                                                                              "namespace": "nobuild"},
                            "spec": {"containers": [{"name": "webhook", "image":
                                                     f"gcr.io/knative-releases/knative.dev/serving/cmd/webhook@{digest}"}]}}))

    def waiting() -> dict | None:
        pod = a.json("get", "pod", "webhook-1-17-2", "-n", "nobuild")
        st = (pod["status"].get("containerStatuses") or [{}])[0]
        return st if (st.get("state") or {}).get("waiting", {}).get("reason") == "KnativeReleaseNotBuilt" else None
    st = eventually(waiting, 60, what="the 1.17.2 pod waiting with KnativeReleaseNotBuilt")
    assert st["ready"] is False and "containerID" not in st
    assert "Knative Serving 1.17.2" in st["state"]["waiting"]["message"]
    assert f"v{versions.KNATIVE_NOT_BUILT['1.17.2']} is not served" in st["state"]["waiting"]["message"]
    runner = json.loads((a.cluster.dir / "runner.json").read_text())
    assert not [k for k in runner if k.startswith("nobuild/")]  # no process runs for it
    a.run("delete", "namespace", "nobuild", "--wait=false")
