"""Results as values: per-cluster records and outcomes, closing lines, the JSON report schema."""
