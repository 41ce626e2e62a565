"""Issue 22: the supported releases (1.17.0, 1.17.1, 1.17.2, 1.18.1), their Kourier and minimum Kubernetes, the upgrade
paths between them, and the checks that follow the target release (config-features, model lint, preflight)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from knfleet.desired import bundle, knconfig, lint, plan, releases, settings, upgrade
from tests.conftest import REPO
from tests.unit.bundle_fixture import fixture_bundle

CSI, PROPAGATION = releases.CSI_FLAG, releases.MOUNT_PROPAGATION_FLAG


def test_supported_releases_are_pinned_with_their_kourier_and_the_default_stays_1_17_0():
    assert list(bundle.PINS) == list(releases.RELEASES) == ["1.17.0", "1.17.1", "1.17.2", "1.18.1"]
    assert releases.DEFAULT == settings.InstallSettings().knative_version == "1.17.0"
    for version, files in bundle.PINS.items():
        assert set(files) == {*bundle.REQUIRED, *bundle.OPTIONAL}, version
        assert all(len(d) == 64 for d in files.values())
    # kourier.yaml: 1.17.0's for every 1.17 release, 1.18.0's (Envoy v1.34) for 1.18.1
    assert len({bundle.PINS[v]["kourier.yaml"] for v in ("1.17.0", "1.17.1", "1.17.2")}) == 1
    assert bundle.PINS["1.18.1"]["kourier.yaml"] != bundle.PINS["1.17.0"]["kourier.yaml"]
    assert bundle.url_for("1.18.1", "kourier.yaml") == \
        "https://github.com/knative/net-kourier/releases/download/knative-v1.18.0/kourier.yaml"
    assert bundle.url_for("1.17.1", "kourier.yaml").endswith("/knative-v1.17.0/kourier.yaml")
    assert bundle.url_for("1.18.1", "serving-core.yaml") == \
        "https://github.com/knative/serving/releases/download/knative-v1.18.1/serving-core.yaml"
    assert [releases.get(v).min_kubernetes for v in releases.RELEASES] == ["1.30.0", "1.30.0", "1.30.0", "1.31.0"]


def test_allowed_upgrades_one_minor_at_a_time_patches_in_any_order_upwards():
    assert releases.allowed_upgrades("1.17.0") == ("1.17.1", "1.17.2", "1.18.1")
    assert releases.allowed_upgrades("1.17.1") == ("1.17.2", "1.18.1")
    assert releases.allowed_upgrades("1.17.2") == ("1.18.1",)
    assert releases.allowed_upgrades("1.18.1") == ()
    assert upgrade.check_path("1.17.0", "1.18.1") == "upgrade"  # 1.17.x -> 1.18.y directly
    with pytest.raises(upgrade.UpgradeRefused, match=r"Upgrade along 1\.17\.1 -> 1\.18\.x -> 1\.19\.0"):
        upgrade.check_path("1.17.1", "1.19.0")
    with pytest.raises(upgrade.UpgradeRefused, match="downgrades are not supported"):
        upgrade.check_path("1.18.1", "1.17.1")
    with pytest.raises(upgrade.UpgradeRefused, match="downgrades are not supported"):
        upgrade.check_path("1.17.2", "1.17.1")


def test_docs_table_is_the_supported_releases_table():
    text = (REPO / "docs" / "upgrades.md").read_text()
    assert releases.table() in text, releases.table()
    assert "| 1.17.0 (default) | 1.17.0 | 1.30.0 | 1.17.1, 1.17.2, 1.18.1 |" in releases.table()
    assert "| 1.18.1 | 1.18.0 | 1.31.0 | - (newest supported) |" in releases.table()


def test_1_18_feature_flags_follow_the_release():
    assert releases.feature_flags("1.18.1")[-2:] == (CSI, PROPAGATION)
    assert CSI not in releases.feature_flags("1.17.2")
    for flag in (CSI, PROPAGATION):
        assert not knconfig.check("config-features", {flag: "enabled"}, "1.18.1")
        (p,) = knconfig.check("config-features", {flag: "enabled"}, "1.17.1")
        assert p.severity == "error" and p.field == f"knative_features.{flag}"
        assert f"Knative Serving 1.17.1 has no config-features flag {flag}" in str(p)
        assert "came with Knative Serving 1.18" in str(p) and "knative_version to 1.18.1" in str(p)
    # a misspelt value of a 1.18 flag stays a warning (Knative keeps the default), as for the 1.17 flags
    assert [p.severity for p in knconfig.check("config-features", {CSI: "enabeld"}, "1.18.1")] == ["warning"]


def test_group_data_with_a_1_18_flag_and_knative_version_1_17_is_refused_naming_the_release():
    data = settings.Data({"knative_version": "1.17.1", "knative_features": {CSI: "enabled"}})
    with pytest.raises(settings.SettingsError) as err:
        settings.from_data(data)
    assert f"knative_features.{CSI} = 'enabled': Knative Serving 1.17.1 has no config-features flag {CSI}" \
        in str(err.value)
    cfg = settings.from_data(settings.Data({"knative_version": "1.18.1", "knative_features": {CSI: "enabled"}}))
    assert cfg.features[CSI] == "enabled"
    # a name no release parses is still an unknown key
    with pytest.raises(settings.SettingsError, match="unknown key 'kubernetes.podspec-volumes-nfs'"):
        settings.from_data(settings.Data({"knative_features": {"kubernetes.podspec-volumes-nfs": "enabled"}}))


def svc(spec: dict, mounts: list | None = None) -> dict:
    ctr = {"image": "vllm/vllm-openai@sha256:" + "a" * 64, "ports": [{"containerPort": 8000}]}
    if mounts is not None:
        ctr["volumeMounts"] = mounts
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "q", "namespace": "n"},
            "spec": {"template": {"spec": {"containers": [ctr], **spec}}}}


def errors(obj: dict, **cfg) -> list[str]:
    return [f"{p.path}: {p.message}" for p in lint.lint_service(obj, lint.ClusterConfig(**cfg), "f.yaml")
            if p.severity == "error"]


CSI_VOLUME = {"volumes": [{"name": "weights", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": True}}]}


def test_lint_of_csi_volumes_follows_the_release():
    ro = [{"name": "weights", "mountPath": "/weights", "readOnly": True}]
    (e,) = errors(svc(CSI_VOLUME, ro), release="1.17.1", features={CSI: "enabled"})
    assert e.startswith("spec.template.spec.volumes[0].csi: Knative Serving 1.17.1 has no CSI volumes (volumes[].csi) "
                        f"(they came with Knative Serving 1.18, behind config-features {CSI}): its CRD schema has no "
                        "such field")
    assert "Set knative_version to 1.18.1" in e
    (e,) = errors(svc(CSI_VOLUME, ro), release="1.18.1")
    assert "csi volume support is disabled" in e and f"set config-features {CSI} to enabled" in e
    assert errors(svc(CSI_VOLUME, ro), release="1.18.1", features={CSI: "allowed"})  # validation wants enabled
    assert not errors(svc(CSI_VOLUME, ro), release="1.18.1", features={CSI: "Enabled"})
    # a CSI volume's mount must be read-only (only emptyDir and PVC mounts may write)
    rw = [{"name": "weights", "mountPath": "/weights"}]
    (e,) = errors(svc(CSI_VOLUME, rw), release="1.18.1", features={CSI: "enabled"})
    assert e == "spec.template.spec.containers[0].volumeMounts[0].readOnly: volume mount should be readOnly for " \
                "this type of volume (csi)"


def test_lint_of_mount_propagation_follows_the_release():
    shm = {"volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}]}
    mount = [{"name": "shm", "mountPath": "/dev/shm", "mountPropagation": "HostToContainer"}]
    (e,) = errors(svc(shm, mount), release="1.17.0", features={PROPAGATION: "enabled"})
    assert "Knative Serving 1.17.0 has no volumeMounts[].mountPropagation (they came with Knative Serving 1.18" in e
    (e,) = errors(svc(shm, mount), release="1.18.1")
    assert "Volume Mount Propagation support is disabled" in e
    assert not errors(svc(shm, mount), release="1.18.1", features={PROPAGATION: "enabled"})
    bidi = [{**mount[0], "mountPropagation": "Bidirectional"}]
    (e,) = errors(svc(shm, bidi), release="1.18.1", features={PROPAGATION: "enabled"})
    assert e.endswith("mount propagation should be set to None or HostToContainer")


def test_volume_flags_must_be_enabled_not_only_allowed():
    # Knative's validateVolume refuses an emptyDir unless its flag is "enabled" ("allowed" passes the field mask only)
    shm = {"volumes": [{"name": "shm", "emptyDir": {}}]}
    assert errors(svc(shm), features={"kubernetes.podspec-volumes-emptydir": "allowed"})
    assert not errors(svc(shm))


def test_the_deploy_lints_models_for_its_knative_version():
    cfg = settings.from_data(settings.Data({"knative_version": "1.18.1"}))
    assert plan.cluster_config(cfg).release == "1.18.1"


def test_lint_cli_takes_the_release_for_yaml_files(tmp_path):
    import yaml
    f = tmp_path / "svc.yaml"
    f.write_text(yaml.safe_dump(svc(CSI_VOLUME, [{"name": "weights", "mountPath": "/w", "readOnly": True}])))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "knfleet.cli", "lint", *args, str(f)], capture_output=True,
                              text=True, cwd=REPO)
    old = run()
    assert old.returncode == 1 and "Knative Serving 1.17.0 has no CSI volumes" in old.stdout, old.stdout
    new = run("--knative-version", "1.18.1")
    assert new.returncode == 1 and "csi volume support is disabled" in new.stdout, new.stdout
    bad = run("--knative-version", "1.19.0")
    assert bad.returncode == 2 and "--knative-version '1.19.0' is not supported; use one of 1.17.0, 1.17.1, " \
                                   "1.17.2, 1.18.1" in bad.stderr


def test_the_preflight_step_carries_the_target_releases_minimum_kubernetes():
    for version, minimum, title in (("1.17.1", "1.30.0", "version >= 1.30"), ("1.18.1", "1.31.0", "version >= 1.31")):
        d = plan.desired("h", settings.Data({"knative_version": version}), bundle_loader=lambda *a: fixture_bundle())
        (pre,) = [s for s in plan.plan(d) if isinstance(s, plan.Preflight)]
        assert (pre.release, pre.min_kubernetes) == (version, minimum) and title in pre.title
    assert releases.kubernetes_too_old("v1.31.0", "1.31.0", "1.18.1") is None
    assert releases.kubernetes_too_old("v1.32.5", "1.31.0", "1.18.1") is None
    assert releases.kubernetes_too_old("v1.30.9-eks-a737599", "1.30.0", "1.17.1") is None
    msg = releases.kubernetes_too_old("v1.30.9-eks-a737599", "1.31.0", "1.18.1")
    assert msg and msg.startswith("Kubernetes v1.30.9-eks-a737599 is too old: Knative Serving 1.18.1 needs >= v1.31.0")
    assert releases.kubernetes_too_old("v1.29.15+k3s1", "1.30.0", "1.17.0")
