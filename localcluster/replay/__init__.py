"""A simulated fleet by record and replay (issue 26): record a no-op run against one real local cluster through a
TLS proxy (recorder), then answer the same run for N simulated clusters from that recording (server), each its own
TLS endpoint and kubeconfig, with a round-trip delay and real resourceVersion semantics for the objects a run
writes (the lock's Lease). See docs/fleet-scale.md."""
