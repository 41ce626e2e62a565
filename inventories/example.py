"""A real fleet (not run by tests): staging first, then production, with per-group data.

    pyinfra inventories/example.py deploy.py -y --limit staging
"""

staging = (
    [
        ("@kube/staging-gpu-1", {"kubeconfig": "~/.kube/staging-gpu-1.yaml", "rollout_wave": 0}),
    ],
    {"knative_domain": "staging.knative.example.com", "kourier_service_type": "LoadBalancer"},
)

production = (
    [
        ("@kube/prod-eu-1", {"kubeconfig": "~/.kube/prod.yaml", "kube_context": "prod-eu-1", "rollout_wave": 1}),
        ("@kube/prod-us-1", {"kubeconfig": "~/.kube/prod.yaml", "kube_context": "prod-us-1", "rollout_wave": 2}),
    ],
    {"knative_domain": "knative.example.com", "wait_timeout": 600},
)
