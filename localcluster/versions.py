"""Every version the local clusters are built from, pinned in this one place."""

from __future__ import annotations

KUBERNETES = "1.32.5"
# 1.32.5: the newest 1.32 patch whose k8s.io/kubernetes and every staging module
# (v0.32.5) the Go module proxy reachable here serves in full.
ETCD = "3.5.21"
KWOK = "0.7.0"

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
