"""Fleets: inventories and waves, rollouts, status."""
