"""Every version the local clusters are built from, pinned in this one place."""

from __future__ import annotations

KUBERNETES = "1.32.5"
# 1.32.5: the newest 1.32 patch whose k8s.io/kubernetes and every staging module
# (v0.32.5) the Go module proxy reachable here serves in full.
ETCD = "3.5.21"
KWOK = "0.7.0"

# Knative Serving's own webhook and controller, built from knative.dev/serving's Go module.
# v0.44.0 is Knative Serving 1.17.0. 1.17.2 (v0.44.2) is not served by the Go module proxy
# reachable here, so a 1.17.2 pod runs this build (the pod runner logs it).
KNATIVE_SERVING = "0.44.0"
KNATIVE_RELEASE = "1.17.0"
# knative.dev/serving's own go.mod replaces k8s.io/gengo/v2; `go install …@v0.44.0` refuses a module
# with a replace, so the wrapper module repeats it.
KNATIVE_REPLACES = (
    "k8s.io/gengo/v2 v2.0.0-20240826214909-a7b603a56eb7 => k8s.io/gengo/v2 v2.0.0-20240228010128-51d4e06bde70",
)
# Binary name (as in the release images: /ko-app/<name>, so field managers read the same) -> what it is built
# from ("./controller" is our main, see localcluster/knative/controller).
KNATIVE_COMMANDS = {
    "webhook": "knative.dev/serving/cmd/webhook",
    "controller": "./controller",
    # The post-install Jobs of serving-post-install-jobs.yaml (run on upgrades): the storage-version migration
    # from knative.dev/pkg (at the version serving v0.44.0 requires) and serving's cleanup of old resources.
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


def knative_bin_key() -> str:
    """Folder name of the built Knative binaries in the cache."""
    return f"knative-serving-v{KNATIVE_SERVING}"
