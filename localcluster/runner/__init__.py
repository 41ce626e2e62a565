"""The pod runner (real binaries behind pods) and the apiserver egress proxy of a local cluster."""
