"""A real fleet (not run by tests): staging first, then production, with per-group data.

    pyinfra inventories/example.py deploy.py -y --limit staging
"""

staging = (
    [
        ("@kube/staging-gpu-1", {"kubeconfig": "~/.kube/staging-gpu-1.yaml", "rollout_wave": 0}),
    ],
    # The public proxy behind the cloud's load balancer: public services are smoke-tested through it too.
    {"knative_domain": "staging.knative.example.com", "kourier_service_type": "LoadBalancer",
     "proxy_service_type": "LoadBalancer"},
)

production = (
    [
        ("@kube/prod-eu-1", {"kubeconfig": "~/.kube/prod.yaml", "kube_context": "prod-eu-1", "rollout_wave": 1}),
        # On-premises: the proxy on a NodePort, reached at a node's address; the smoke request from inside the
        # cluster, as the runbook does it (curl in a knative-nginx pod).
        ("@kube/prod-us-1", {"kubeconfig": "~/.kube/prod.yaml", "kube_context": "prod-us-1", "rollout_wave": 2,
                             "proxy_node_address": "10.20.0.11", "smoke_via": "exec"}),
    ],
    {"knative_domain": "knative.example.com", "wait_timeout": 600},
)
