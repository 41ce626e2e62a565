"""Where the local clusters keep their binaries (outside the repo) and state (.local/)."""

from __future__ import annotations

import os
from pathlib import Path

from localcluster import versions

REPO = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """Cache for built binaries, shared by every clone: $KNFLEET_CACHE or ~/.cache/knfleet."""
    env = os.environ.get("KNFLEET_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "knfleet"


def bin_dir() -> Path:
    return bin_root() / versions.bin_key()


def bin_root() -> Path:
    """Every built binary, one folder per set (Kubernetes; each Knative release)."""
    return cache_root() / "bin"


def knative_bin_dir(release: str = versions.KNATIVE_RELEASE) -> Path:
    return bin_root() / versions.knative_bin_key(release)


def binary(name: str, release: str = versions.KNATIVE_RELEASE) -> Path:
    folder = knative_bin_dir(release) if name in versions.KNATIVE_COMMANDS else bin_dir()
    return folder / name


def state_root() -> Path:
    """Runtime state of the local clusters: $KNFLEET_LOCAL or <repo>/.local."""
    env = os.environ.get("KNFLEET_LOCAL")
    return Path(env) if env else REPO / ".local"


def clusters_dir() -> Path:
    return state_root() / "clusters"


def cluster_dir(name: str) -> Path:
    return clusters_dir() / name
