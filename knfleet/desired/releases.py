"""The Knative Serving releases knfleet installs and upgrades between. Pure facts, no cluster.

Per release: the net-kourier release that goes with it, the oldest Kubernetes it runs on (knative.dev/pkg
version/version.go `defaultMinimumVersion` at the version the release's go.mod requires), and the `config-features`
flags its config parsing knows (knative.dev/serving pkg/apis/config/features.go). The sha256 pins of each release's
files are in knfleet.desired.bundle; the upgrade rules (one minor at a time, never down) in knfleet.desired.upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass

from knfleet.desired import upgrade


@dataclass(frozen=True)
class Release:
    version: str  # Knative Serving release, e.g. "1.18.1" (Go module knative.dev/serving v0.45.1)
    kourier: str  # the net-kourier release installed with it (kourier.yaml)
    min_kubernetes: str  # the oldest Kubernetes its controllers start on

    @property
    def minor(self) -> str:
        major, minor, _ = upgrade.parse(self.version)
        return f"{major}.{minor}"


RELEASES: dict[str, Release] = {r.version: r for r in (
    # net-kourier has no 1.17 release after 1.17.0 and no 1.18 release after 1.18.0.
    Release("1.17.0", kourier="1.17.0", min_kubernetes="1.30.0"),
    Release("1.17.1", kourier="1.17.0", min_kubernetes="1.30.0"),
    Release("1.17.2", kourier="1.17.0", min_kubernetes="1.30.0"),
    Release("1.18.1", kourier="1.18.0", min_kubernetes="1.31.0"),
)}
DEFAULT = "1.17.0"  # the runbook's

# config-features flags, by the minor release whose parsing added them (features.go NewFeaturesConfigFromMap).
FEATURE_FLAGS_ADDED: dict[str, tuple[str, ...]] = {
    "1.17": (
        "autodetect-http2", "kubernetes.podspec-dryrun", "kubernetes.podspec-persistent-volume-write",
        "multi-container", "multi-container-probing", "queueproxy.mount-podinfo", "queueproxy.resource-defaults",
        "secure-pod-defaults", "tag-header-based-routing", "kubernetes.containerspec-addcapabilities",
        "kubernetes.podspec-affinity", "kubernetes.podspec-dnsconfig", "kubernetes.podspec-dnspolicy",
        "kubernetes.podspec-volumes-emptydir", "kubernetes.podspec-fieldref", "kubernetes.podspec-hostaliases",
        "kubernetes.podspec-hostipc", "kubernetes.podspec-hostnetwork", "kubernetes.podspec-hostpid",
        "kubernetes.podspec-volumes-hostpath", "kubernetes.podspec-init-containers",
        "kubernetes.podspec-nodeselector", "kubernetes.podspec-persistent-volume-claim",
        "kubernetes.podspec-priorityclassname", "kubernetes.podspec-runtimeclassname",
        "kubernetes.podspec-schedulername", "kubernetes.podspec-securitycontext",
        "kubernetes.podspec-shareprocessnamespace", "kubernetes.podspec-tolerations",
        "kubernetes.podspec-topologyspreadconstraints",
    ),
    # 1.18: CSI volumes and volumeMounts[].mountPropagation, each behind its own flag ("disabled" by default)
    "1.18": ("kubernetes.podspec-volumes-csi", "kubernetes.podspec-volumes-mount-propagation"),
}
CSI_FLAG = "kubernetes.podspec-volumes-csi"
MOUNT_PROPAGATION_FLAG = "kubernetes.podspec-volumes-mount-propagation"


def _minor_key(minor: str) -> tuple[int, ...]:
    return tuple(int(x) for x in minor.split("."))


def get(version: str) -> Release:
    """The supported release `version`; a KeyError names the supported ones."""
    if version not in RELEASES:
        raise KeyError(f"Knative Serving {version} is not supported; supported: {', '.join(RELEASES)}")
    return RELEASES[version]


def minor_of(version: str) -> str:
    major, minor, _ = upgrade.parse(version)
    return f"{major}.{minor}"


def feature_flags(version: str) -> tuple[str, ...]:
    """Every config-features flag Knative Serving `version` parses."""
    key = _minor_key(minor_of(version))
    return tuple(f for minor, flags in FEATURE_FLAGS_ADDED.items() if _minor_key(minor) <= key for f in flags)


ALL_FEATURE_FLAGS: tuple[str, ...] = tuple(f for flags in FEATURE_FLAGS_ADDED.values() for f in flags)


def flag_added_in(flag: str) -> str | None:
    """The minor release that first parses `flag` (None: no supported release does)."""
    return next((minor for minor, flags in FEATURE_FLAGS_ADDED.items() if flag in flags), None)


def has_flag(version: str, flag: str) -> bool:
    return flag in feature_flags(version)


def not_in_release(flag: str, version: str) -> str:
    """Why `flag` is refused for `version`: the release that has it, and what to do."""
    since = flag_added_in(flag)
    later = [v for v in RELEASES if since and minor_of(v) == since]
    return (f"Knative Serving {version} has no config-features flag {flag} (it came with Knative Serving {since}; "
            f"{version} would ignore it, and what it guards is refused). Set knative_version to "
            f"{' or '.join(later) or 'a ' + str(since) + '.x release'} (upgrading one minor at a time), "
            "or leave the flag out")


def field_not_in_release(what: str, flag: str, version: str) -> str:
    """Why a Service field of a later release is refused for `version` (lint): its CRDs have no such field."""
    since = flag_added_in(flag)
    later = [v for v in RELEASES if since and minor_of(v) == since]
    return (f"Knative Serving {version} has no {what} (they came with Knative Serving {since}, behind config-features "
            f"{flag}): its CRD schema has no such field, so the API server refuses it under strict field validation "
            f"and otherwise drops it with only a warning. Set knative_version to {' or '.join(later) or since} "
            "(upgrading one minor at a time), or leave it out")


def allowed_upgrades(version: str) -> tuple[str, ...]:
    """The supported releases knfleet upgrades a cluster running `version` to, in one run."""
    out = []
    for target in RELEASES:
        try:
            if upgrade.check_path(version, target) == "upgrade":
                out.append(target)
        except upgrade.UpgradeRefused:
            continue
    return tuple(out)


def table() -> str:
    """The supported releases as a Markdown table (docs/upgrades.md shows it; a unit test keeps the two equal)."""
    rows = ["| Knative Serving | Kourier | minimum Kubernetes | knfleet upgrades it to |",
            "|---|---|---|---|"]
    for r in RELEASES.values():
        default = " (default)" if r.version == DEFAULT else ""
        rows.append(f"| {r.version}{default} | {r.kourier} | {r.min_kubernetes} | "
                    f"{', '.join(allowed_upgrades(r.version)) or '- (newest supported)'} |")
    return "\n".join(rows)


def _kube_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a Kubernetes version as servers report it: v1.31.2, v1.30.4-eks-a737599, v1.31.0+k3s1,
    1.31 (a missing part is 0; a minor like "31+" as some providers report it counts as 31)."""
    core = text.strip().lstrip("v").split("-")[0].split("+")[0].split(".")
    nums = [int("".join(ch for ch in part if ch.isdigit()) or 0) for part in core[:3]]
    return (nums + [0, 0, 0])[0], (nums + [0, 0, 0])[1], (nums + [0, 0, 0])[2]


def kubernetes_too_old(server: str, minimum: str, release: str) -> str | None:
    """The preflight's refusal when the API server's version is below the release's minimum (Knative's controllers
    refuse to start there), else None."""
    if _kube_version(server) >= _kube_version(minimum):
        return None
    return (f"Kubernetes {server} is too old: Knative Serving {release} needs >= v{minimum}. Upgrade the cluster "
            "first, or keep a knative_version whose minimum it meets (docs/upgrades.md lists them)")
