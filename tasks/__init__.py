"""Thin @deploy functions: what a knfleet run does, step by step, on each cluster."""
