"""Upgrade rules (knfleet.desired.upgrade): installed version, allowed paths, obsolete objects, post-install Jobs."""

from __future__ import annotations

import pytest

from knfleet.desired import plan, settings, upgrade
from knfleet.desired.bundle import Bundle
from tests.unit.bundle_fixture import fixture_bundle


def obj(kind: str, name: str, ns: str | None = None, version: str | None = "1.17.0", api: str = "v1",
        by_knfleet: bool = True) -> dict:
    meta: dict = {"name": name, "labels": {"app.kubernetes.io/name": "knative-serving"}}
    if version:
        meta["labels"]["app.kubernetes.io/version"] = version
    if ns:
        meta["namespace"] = ns
    if by_knfleet:
        meta["managedFields"] = [{"manager": "knfleet", "operation": "Apply"}]
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def test_installed_version_is_the_lowest_label_of_the_serving_objects():
    crd = obj("CustomResourceDefinition", "services.serving.knative.dev", api="apiextensions.k8s.io/v1",
              version="1.17.2")
    deps = [obj("Deployment", n, "knative-serving", "1.17.0" if n == "webhook" else "1.17.2", "apps/v1")
            for n in upgrade.CORE_DEPLOYMENTS]
    kourier = obj("Deployment", "net-kourier-controller", "knative-serving", "1.16.0", "apps/v1")  # kourier's own
    got = upgrade.installed([crd], [*deps, kourier])
    assert got.version == "1.17.0" and got.mixed
    assert "Deployment/webhook 1.17.0" in got.describe()
    assert upgrade.installed([], []).version is None
    assert upgrade.installed([], []).describe() == "not installed"


@pytest.mark.parametrize(("have", "want", "path"), [
    (None, "1.17.0", "install"), ("1.17.0", "1.17.0", "same"), ("1.17.0", "1.17.2", "upgrade"),
    ("1.16.4", "1.17.2", "upgrade"),
])
def test_allowed_paths(have, want, path):
    assert upgrade.check_path(have, want) == path


def test_two_minor_versions_refused_naming_the_path():
    with pytest.raises(upgrade.UpgradeRefused) as err:
        upgrade.check_path("1.15.3", "1.17.2")
    assert "1.15.3 -> 1.16.x -> 1.17.2" in str(err.value) and "one minor version at a time" in str(err.value)
    assert "Nothing was changed" in str(err.value)
    with pytest.raises(upgrade.UpgradeRefused, match="skips minor"):
        upgrade.check_path("1.17.0", "2.0.0")


@pytest.mark.parametrize(("have", "want"), [("1.17.2", "1.17.0"), ("1.18.0", "1.17.2")])
def test_downgrades_refused(have, want):
    with pytest.raises(upgrade.UpgradeRefused) as err:
        upgrade.check_path(have, want)
    assert "downgrades are not supported" in str(err.value) and f'knative_version = "{have}"' in str(err.value)


def test_obsolete_objects_are_old_release_objects_knfleet_applied_that_the_new_one_lacks():
    desired = [obj("Deployment", "controller", "knative-serving", "1.17.2", "apps/v1"),
               obj("ConfigMap", "config-network", "knative-serving", "1.17.2"),
               obj("Deployment", "net-kourier-controller", "knative-serving", "1.17.0", "apps/v1")]  # Kourier 1.17.0
    live = [
        obj("Deployment", "controller", "knative-serving", "1.17.0", "apps/v1"),  # still in the release
        obj("Deployment", "net-kourier-controller", "knative-serving", "1.17.0", "apps/v1"),
        obj("Deployment", "domain-mapping", "knative-serving", "1.17.0", "apps/v1"),  # gone from it
        obj("Deployment", "someone-elses", "knative-serving", "1.17.0", "apps/v1", by_knfleet=False),
        obj("ConfigMap", "new-in-this-release", "knative-serving", "1.17.2"),  # the new version: not old
        obj("CustomResourceDefinition", "olds.serving.knative.dev", api="apiextensions.k8s.io/v1"),
        obj("Service", "controller", "knative-serving", "1.17.0", "serving.knative.dev/v1"),  # same ref, other group
    ]
    gone, kept = upgrade.obsolete(live, desired, "1.17.2")
    assert [upgrade.ref(o) for o in gone] == ["Deployment/knative-serving/domain-mapping",
                                              "Service/knative-serving/controller"]
    assert len(kept) == 1 and "CRDs are never deleted" in kept[0]


def test_post_install_jobs_and_their_outcome():
    jobs = upgrade.post_install_jobs([{"kind": "Job", "metadata": {"generateName": "x-", "namespace": "n"}}])
    assert len(jobs) == 1
    with pytest.raises(Exception, match="generateName"):
        upgrade.post_install_jobs([{"kind": "Job", "metadata": {"name": "fixed"}}])
    assert upgrade.job_outcome({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})[0] == "complete"
    state, why = upgrade.job_outcome({"status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit"}]}})
    assert state == "failed" and why.startswith("BackoffLimitExceeded: Job has reached")
    assert upgrade.job_outcome({"status": {"active": 1}})[0] == "running"


def test_plan_carries_the_post_install_jobs_and_the_release_for_the_obsolete_check():
    jobs = ("apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: storage-version-migration-serving-\n"
            "  namespace: knative-serving\nspec: {}\n")
    b = fixture_bundle()
    with_jobs = Bundle(b.version, {**b.files, upgrade.JOBS_FILE: jobs})
    d = plan.desired("@kube/c", settings.Data({}), bundle_loader=lambda *_: with_jobs)
    steps = plan.plan(d)
    version = next(s for s in steps if isinstance(s, plan.Version))
    post = next(s for s in steps if isinstance(s, plan.PostInstall))
    old = next(s for s in steps if isinstance(s, plan.Obsolete))
    assert version.jobs and post.jobs[0]["metadata"]["generateName"] == "storage-version-migration-serving-"
    assert ("apps/v1", "Deployment") in old.kinds
    assert not any(o["kind"] == "Namespace" and o["metadata"]["name"] == "knative-nginx" for o in old.desired)
    rights = {str(r) for r in steps[0].rights}
    assert "create jobs.batch in knative-serving" in rights and "delete deployments.apps in knative-serving" in rights
    without = plan.plan(plan.desired("@kube/c", settings.Data({}), bundle_loader=lambda *_: b))
    assert not next(s for s in without if isinstance(s, plan.Version)).jobs
