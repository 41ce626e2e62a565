"""Desired state for every cluster. Per-group files (group_data/<group>.py) override these."""

# Knative Serving release (sha256-pinned in knfleet/desired/bundle.py). None: download from the official URLs
# into ~/.cache/knfleet/bundles ($KNFLEET_CACHE/bundles); or name an offline folder holding serving-crds.yaml,
# serving-core.yaml, kourier.yaml.
knative_version = "1.17.0"
knative_bundle_dir = None
knative_optional_files = []  # e.g. ["serving-hpa.yaml"]

# config-domain: the runbook's "no DNS" magic domain; use your wildcard DNS suffix in production.
knative_domain = "127.0.0.1.nip.io"

# The cluster's own DNS domain (kubelet --cluster-domain): the proxy's upstream and cluster-local smoke Hosts.
cluster_domain = "cluster.local"

# config-autoscaler global defaults (the runbook's global column). Only these keys are owned by knfleet.
knative_autoscaler = {
    "enable-scale-to-zero": "true",
    "scale-to-zero-grace-period": "30s",
    "stable-window": "60s",
}

# config-features: GPU services need tolerations (and often node selectors / runtime classes).
knative_features = {
    "kubernetes.podspec-tolerations": "enabled",
    "kubernetes.podspec-nodeselector": "enabled",
    "kubernetes.podspec-runtimeclassname": "enabled",
}

# config-defaults and config-deployment keys (timeouts, progress deadline, tag resolution).
knative_defaults = {"revision-timeout-seconds": "300", "max-revision-timeout-seconds": "600"}
knative_deployment = {"progress-deadline": "600s", "registries-skipping-tag-resolving": "kind.local,ko.local,dev.local"}

# Services: the kourier gateway's type and the public nginx proxy's.
kourier_service_type = "LoadBalancer"
proxy_service_type = "NodePort"
proxy_image = "nginx:1.27.3-alpine"

# How long each readiness wait may take (seconds).
wait_timeout = 300

# Model services (Knative Services) for every cluster; group files (group_data/<group>.py) set their own.
models = []
