"""knfleet's own manifests (the knative-nginx proxy), installed with the package as `knfleet.files`."""
