"""Local Kubernetes clusters for knfleet's tests, demo and benchmarks.

Real control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) built from their Go modules, kwok simulating nodes, and a
simulator of Knative's controllers and the Kourier/nginx gateways.
"""
