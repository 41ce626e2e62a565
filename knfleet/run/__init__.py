"""A run on clusters under pyinfra: the @kube connector, the operations, the lock, smoke tests."""
