"""The one Kubernetes layer: the in-process client, drift detection, readiness per kind, Knative's webhook."""
