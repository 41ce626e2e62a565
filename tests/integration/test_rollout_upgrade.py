"""Issues 12 and 22: `knfleet rollout --data knative_version=1.17.1` upgrades wave by wave (each cluster then runs
1.17.1's own webhook and controller); a canary whose upgrade is refused halts the rollout before the later waves are
touched; after the fix, --resume upgrades the rest."""

from __future__ import annotations

import pytest

from localcluster.cluster import Spec
from tests.integration.test_rollout import knfleet
from tests.integration.test_upgrade import SHARED
from tests.kube import control_plane_modules, eventually

pytestmark = pytest.mark.integration

SERVING = [("crd", "services.serving.knative.dev", None)] + [
    ("deploy", n, "knative-serving") for n in ("activator", "autoscaler", "controller", "webhook")]


def version(kube) -> str:
    return kube.run("get", "deploy", "controller", "-n", "knative-serving", "-o",
                    "jsonpath={.metadata.labels.app\\.kubernetes\\.io/version}").stdout


def label(kube, v: str) -> None:
    for kind, name, ns in SERVING:
        kube.run("label", "--overwrite", kind, name, f"app.kubernetes.io/version={v}", *(["-n", ns] if ns else []))


@pytest.fixture(scope="module")
def fleet(pool, shared_knative, tmp_path_factory):
    if not (SHARED / "v1.17.1" / "serving-core.yaml").is_file():
        pytest.skip(f"no Knative 1.17.1 release files at {SHARED / 'v1.17.1'}")
    spec = Spec(ready_delay_ms=300, time_factor=0.05)
    canary, other = pool.start("rup", spec, group="rollout-upgrade"), pool.start("rup", spec, group="rollout-upgrade")
    hosts = [(f"@kube/{k.name}", {"kubeconfig": str(k.kubeconfig), "rollout_wave": w,
                                  "knative_bundle_dir": str(SHARED / "v{version}"),
                                  "smoke_internal_url": (k.cluster.dir / "internal.url").read_text().strip(),
                                  "smoke_url": (k.cluster.dir / "public.url").read_text().strip()})
             for k, w in ((canary, 0), (other, 1))]
    inv = tmp_path_factory.mktemp("inv") / "fleet.py"
    inv.write_text(f"local = {hosts!r}\n")
    yield inv, canary, other
    pool.stop(canary)
    pool.stop(other)


def test_rollout_upgrades_wave_by_wave_and_halts_on_a_refused_canary(fleet, tmp_path):
    inv, canary, other = fleet
    state = tmp_path / "state.json"
    first = knfleet("rollout", str(inv), "--state", str(state))
    assert first.returncode == 0, first.stdout[-3000:]
    assert version(canary) == version(other) == "1.17.0"
    label(canary, "1.15.3")  # the canary runs an older minor: its upgrade to 1.17.1 must be refused
    halted = knfleet("rollout", str(inv), "--state", str(state), "--data", "knative_version=1.17.1")
    assert halted.returncode == 2, halted.stdout[-3000:]
    assert "Upgrade along 1.15.3 -> 1.16.x -> 1.17.1" in halted.stdout + halted.stderr
    assert "not touched: rollout halted after wave 0" in halted.stdout or version(other) == "1.17.0"
    assert version(other) == "1.17.0" and version(canary) == "1.15.3"  # nothing changed anywhere
    label(canary, "1.17.0")
    resumed = knfleet("rollout", str(inv), "--state", str(state), "--resume", "--data", "knative_version=1.17.1")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert version(canary) == version(other) == "1.17.1"
    assert resumed.stdout.index(f"wave 0 [{canary.name}]: passed") < resumed.stdout.index(f"wave 1 [{other.name}]")
    for kube in (canary, other):
        jobs = kube.json("get", "jobs", "-n", "knative-serving")["items"]
        assert len(jobs) == 2 and all(j["status"].get("succeeded") for j in jobs)
        eventually(lambda k=kube: set(control_plane_modules(k).values()) == {"v0.44.1"}, 60,
                   what=f"only v0.44.1 webhook and controller processes on {kube.name}")
    # knfleet status shows the installed version per cluster (and that group data still asks for 1.17.0)
    status = knfleet("status", str(inv))
    for kube in (canary, other):
        assert f"{kube.name}: DRIFT; knative 1.17.1" in status.stdout, status.stdout
    assert "drift version: Knative Serving 1.17.1 installed, group data asks 1.17.0" in status.stdout
