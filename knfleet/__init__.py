"""knfleet: serverless GPU inference on Kubernetes (Knative Serving + Kourier), installed and rolled out by pyinfra."""

__version__ = "0.1.0"
