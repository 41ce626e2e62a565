"""In-place upgrades of Knative Serving: which version is installed, whether the asked one may follow it, what
the old release leaves behind, and the post-install Jobs. Pure: no cluster (knfleet.run.operations reads the
cluster and calls these).

The installed version is what the release's own objects say (`app.kubernetes.io/version` on the Serving CRDs and
the four core Deployments). Knative supports moving one minor version at a time, up only (the Knative Operator
refuses the rest: "not supported to upgrade or downgrade across multiple MINOR versions"), so a jump of more than
one minor and any downgrade are refused before any change, naming the path that is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from knfleet.errors import KnfleetError

VERSION_LABEL = "app.kubernetes.io/version"
NAME_LABEL = "app.kubernetes.io/name"
RELEASE_NAME = "knative-serving"  # app.kubernetes.io/name of every object of serving's and kourier's manifests
# The objects whose labels say which Serving release is installed (Kourier's carry Kourier's own version).
VERSION_CRD = "services.serving.knative.dev"
CORE_DEPLOYMENTS = ("activator", "autoscaler", "controller", "webhook")
# Notes of an upgrade in progress (kube-system, beside the lock): from, to, phase.
NOTE_NS, NOTE_NAME = "kube-system", "knfleet-upgrade"
JOBS_FILE = "serving-post-install-jobs.yaml"
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class UpgradeRefused(KnfleetError):
    """The asked version may not follow the installed one; nothing was changed on the cluster."""


def parse(version: str) -> tuple[int, int, int]:
    m = _VERSION.fullmatch(version.strip())
    if not m:
        raise ValueError(f"not a release version: {version!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _minor(v: tuple[int, int, int]) -> str:
    return f"{v[0]}.{v[1]}"


@dataclass(frozen=True)
class Installed:
    """What the cluster's Serving objects say: the version (the lowest found: an interrupted upgrade counts as not
    done), and each object's own label."""

    version: str | None
    labels: tuple[tuple[str, str], ...] = ()  # (object, version label)

    @property
    def mixed(self) -> bool:
        return len({v for _, v in self.labels}) > 1

    def describe(self) -> str:
        if self.version is None:
            return "not installed"
        if not self.mixed:
            return self.version
        return f"{self.version} (partly upgraded: " + ", ".join(f"{o} {v}" for o, v in self.labels) + ")"


def installed(crds: list[dict[str, Any]], deployments: list[dict[str, Any]]) -> Installed:
    """The installed Serving version from the live Serving CRD and core Deployments (knative-serving)."""
    found: list[tuple[str, str]] = []
    for o in crds:
        if o["metadata"]["name"] == VERSION_CRD:
            v = (o["metadata"].get("labels") or {}).get(VERSION_LABEL)
            if v:
                found.append((f"CRD/{VERSION_CRD}", v))
    for o in deployments:
        meta = o["metadata"]
        if meta.get("namespace") == "knative-serving" and meta["name"] in CORE_DEPLOYMENTS:
            v = (meta.get("labels") or {}).get(VERSION_LABEL)
            if v:
                found.append((f"Deployment/{meta['name']}", v))
    versions = []
    for _, v in found:
        try:
            versions.append((parse(v), v))
        except ValueError:
            continue
    return Installed(min(versions)[1] if versions else None, tuple(sorted(found)))


def check_path(current: str | None, target: str) -> str:
    """'install' (nothing installed), 'same', or 'upgrade'; UpgradeRefused for a downgrade or a jump of more than
    one minor version, with the path that is allowed."""
    if current is None:
        return "install"
    have, want = parse(current), parse(target)
    if have == want:
        return "same"
    if want < have:
        raise UpgradeRefused(
            f"Knative Serving {current} is installed and knative_version is {target}: downgrades are not supported "
            f"(Knative's storage versions and migrations only go forward). Keep knative_version = \"{current}\" "
            f"(or a later {_minor(have)}.x / {have[0]}.{have[1] + 1}.x release); to run {target}, uninstall "
            f"(--data action=uninstall) and install it. Nothing was changed")
    if want[0] != have[0] or want[1] > have[1] + 1:
        steps = [f"{have[0]}.{m}.x" for m in range(have[1] + 1, want[1])] if want[0] == have[0] else []
        path = " -> ".join([current, *steps, target])
        raise UpgradeRefused(
            f"Knative Serving {current} is installed and knative_version is {target}: that skips minor versions, "
            f"and Knative upgrades one minor version at a time. Upgrade along {path}: set knative_version to the "
            f"latest {_minor((have[0], have[1] + 1, 0))} release first, run, then the next. Nothing was changed")
    return "upgrade"


def post_install_jobs(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The Jobs of serving-post-install-jobs.yaml. They use `generateName`: each run creates new ones (a re-apply of
    a finished Job is refused: its template is immutable, knative/operator#2008), so they are created, never
    applied."""
    jobs = tuple(d for d in docs if d.get("kind") == "Job")
    for j in jobs:
        if not (j.get("metadata") or {}).get("generateName"):
            raise KnfleetError(f"{JOBS_FILE}: Job {j['metadata'].get('name')} has no generateName")
    return jobs


def job_outcome(job: dict[str, Any]) -> tuple[str, str]:
    """('complete' | 'failed' | 'running', why) for a Job, from its conditions (Complete / Failed with reason)."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return "complete", "complete"
        if c.get("type") == "Failed":
            return "failed", f"{c.get('reason') or 'Failed'}: {c.get('message') or ''}".rstrip(": ")
    st = job.get("status") or {}
    return "running", f"active {st.get('active', 0)}, failed pods {st.get('failed', 0)}"


def _managed_by_knfleet(obj: dict[str, Any], manager: str) -> bool:
    return any(m.get("manager") == manager and m.get("operation") == "Apply"
               for m in (obj.get("metadata") or {}).get("managedFields") or [])


def ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{ns}{meta.get('name')}"


def obsolete(live: list[dict[str, Any]], desired: list[dict[str, Any]], target: str, manager: str = "knfleet") \
        -> tuple[list[dict[str, Any]], list[str]]:
    """Objects of an older release that the new one (`target`) no longer has: labelled as part of Knative's release
    (app.kubernetes.io/name=knative-serving) with a version other than the target's (Kourier's objects carry
    Kourier's own version, which may equal the old Serving version: the desired objects settle those), applied by
    knfleet (what knfleet did not apply is not its to delete), and absent from the desired objects. Returns (to
    delete, kept with why): CRDs are never deleted (that would delete every object of that kind), only reported."""
    wanted = {(o.get("apiVersion", "").split("/")[0] if "/" in o.get("apiVersion", "") else "", ref(o))
              for o in desired}
    delete: list[dict[str, Any]] = []
    kept: list[str] = []
    for o in live:
        labels = (o.get("metadata") or {}).get("labels") or {}
        version = labels.get(VERSION_LABEL)
        if labels.get(NAME_LABEL) != RELEASE_NAME or not version or version == target:
            continue
        group = o.get("apiVersion", "").split("/")[0] if "/" in o.get("apiVersion", "") else ""
        if (group, ref(o)) in wanted or not _managed_by_knfleet(o, manager):
            continue
        if o.get("kind") == "CustomResourceDefinition":
            kept.append(f"{ref(o)} (release {version}; CRDs are never deleted: that would delete every object of "
                        "the kind; remove it by hand once nothing uses it)")
            continue
        delete.append(o)
    return sorted(delete, key=ref), kept
