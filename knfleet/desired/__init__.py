"""Desired state, pure (no cluster): settings, bundle, models, rendering, Knative config checks, lint, the plan."""
