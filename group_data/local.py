"""The local clusters' model services (group `local` of inventories/local.py): the runbook's qwen7b,
and one that scales to zero when idle."""

models = [
    {},  # the runbook's example: knative-qwen7b/knative-qwen7b-svc, served model qwen7b, 1 GPU, initial-scale 1
    {
        "name": "qwen7b-scale-to-zero",
        "autoscaling": {"initial_scale": 1, "min_scale": 0, "max_scale": 2, "scale_down_delay": "0s",
                        "target": 16, "target_utilization_percentage": 80},
    },
]

# Knative's controller resolves image tags to digests by asking the registry; there is no network here (and
# none behind many firewalls), so Docker Hub tags are taken as they are. Real fleets pin digests or list their
# mirror instead.
knative_deployment = {
    "progress-deadline": "600s",
    "registries-skipping-tag-resolving": "kind.local,ko.local,dev.local,index.docker.io",
}

# The public proxy behind a load balancer, as on a cloud (locally the simulator plays the cloud's load-balancer
# controller): the smoke tests then reach the public services through it too.
proxy_service_type = "LoadBalancer"
