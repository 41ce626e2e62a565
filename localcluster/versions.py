"""Every version the local clusters are built from, pinned in this one place."""

from __future__ import annotations

KUBERNETES = "1.32.5"
# 1.32.5: the newest 1.32 patch whose k8s.io/kubernetes and every staging module
# (v0.32.5) the Go module proxy reachable here serves in full.
ETCD = "3.5.21"
KWOK = "0.7.0"

# Knative Serving's own webhook, controller and post-install Jobs, built from knative.dev/serving's Go module, one
# build per release (Serving 1.X.Y is the module's v0.(X+27).Y). The pod runner runs the build of the release a pod's
# image digest belongs to (localcluster/runner/releases.py). 1.17.2 (v0.44.2) is not served by the Go module proxy
# reachable here ("403 This module version is not available"): a 1.17.2 pod is not run, and says why.
KNATIVE_BUILDS = {"1.17.0": "0.44.0", "1.17.1": "0.44.1", "1.18.1": "0.45.1"}
KNATIVE_NOT_BUILT = {"1.17.2": "0.44.2"}  # pinned releases with no build here (release -> module version)
KNATIVE_RELEASE = "1.17.0"  # the default release (knfleet's), built first
KNATIVE_SERVING = KNATIVE_BUILDS[KNATIVE_RELEASE]
# Each wrapper module repeats the `replace` directives of that serving version's own go.mod (v0.44.x replaces
# k8s.io/gengo/v2, v0.44.1 also pins k8s.io/api & co. to v0.31.4; v0.45.1 has none): read from its go.mod at build
# time (localcluster.build.serving_replaces), since a dependency's replaces do not apply to the module using it.
# Binary name (as in the release images: /ko-app/<name>, so field managers read the same) -> what it is built
# from ("./controller" is our main, see localcluster/knative/controller).
KNATIVE_COMMANDS = {
    "webhook": "knative.dev/serving/cmd/webhook",
    "controller": "./controller",
    # The post-install Jobs of serving-post-install-jobs.yaml (run on upgrades): the storage-version migration
    # from knative.dev/pkg (at the version that serving version requires) and serving's cleanup of old resources.
    "migrate": "knative.dev/pkg/apiextensions/storageversion/cmd/migrate",
    "cleanup": "knative.dev/serving/pkg/cleanup/cmd/cleanup",
}

# The staging modules of k8s.io/kubernetes: a build of k8s.io/kubernetes/cmd/...
# as a dependency needs each of them replaced by its published v0.<minor>.<patch>.
K8S_STAGING_MODULES = (
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime",
    "client-go", "cloud-provider", "cluster-bootstrap", "code-generator",
    "component-base", "component-helpers", "controller-manager", "cri-api",
    "cri-client", "csi-translation-lib", "dynamic-resource-allocation",
    "endpointslice", "externaljwt", "kms", "kube-aggregator",
    "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl", "kubelet",
    "metrics", "mount-utils", "pod-security-admission", "sample-apiserver",
    "sample-cli-plugin", "sample-controller",
)

K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def staging_version() -> str:
    """k8s.io/<staging> release matching KUBERNETES: 1.32.13 -> v0.32.13."""
    _, minor, patch = KUBERNETES.split(".")
    return f"v0.{minor}.{patch}"


def bin_key() -> str:
    """Folder name of one set of built binaries in the cache."""
    return f"k8s-{KUBERNETES}_etcd-{ETCD}_kwok-{KWOK}"


def knative_bin_key(release: str = KNATIVE_RELEASE) -> str:
    """Folder name of one release's built Knative binaries in the cache (KeyError: no build of that release)."""
    return f"knative-serving-v{KNATIVE_BUILDS[release]}"
