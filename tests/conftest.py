"""Shared fixtures: local clusters (real kube-apiserver + kwok) for integration tests.

Clusters are started once per test session into a temporary state folder, so a test run never
touches the clusters of `make local-up`, and stopped (by PID) when the session ends.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from localcluster import build
from localcluster.cluster import LocalCluster, Spec
from tests.kube import Kube

REPO = Path(__file__).resolve().parent.parent
SHARED_KNATIVE = REPO.parent / "shared" / "knative" / "v1.17.0"
TEST_PULL_MS = 300  # the simulated image pull of test clusters (Spec.pull_delay_ms None); the CLI's default is 2 s


class ClusterPool:
    """Starts uniquely named clusters on demand; stops them all at the end of the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin_dir = build.build()
        os.environ["PATH"] = f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}"
        self._ids = itertools.count(1)
        self.started: list[LocalCluster] = []

    def root_for(self, group: str) -> Path:
        """A state folder of its own (<group>/clusters), as KNFLEET_LOCAL=<group> would use."""
        return self.root / group / "clusters"

    def start(self, prefix: str = "local", spec: Spec | None = None, group: str = "default") -> Kube:
        spec = spec or Spec(ready_delay_ms=300)
        if spec.pull_delay_ms is None:  # test clusters pull fast unless the test says otherwise
            spec = replace(spec, pull_delay_ms=TEST_PULL_MS)
        cluster = LocalCluster(f"{prefix}-{next(self._ids)}", self.root_for(group), spec)
        self.started.append(cluster)
        cluster.up(self.bin_dir)
        return Kube(cluster, self.bin_dir)

    def stop(self, kube: Kube) -> None:
        kube.cluster.down()

    def close(self) -> None:
        for c in self.started:
            c.down()


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterPool]:
    root = tmp_path_factory.mktemp("clusters")
    p = ClusterPool(root)
    yield p
    p.close()
    if not os.environ.get("KNFLEET_KEEP_TEST_CLUSTERS"):
        shutil.rmtree(root, ignore_errors=True)


def knative_release_folder() -> Path | None:
    """The Knative 1.17.0 release files: the offline bundle beside the checkout when it is there, else the pinned
    release downloaded (and verified) into the bundle cache; None when neither is possible."""
    if (SHARED_KNATIVE / "serving-core.yaml").exists():
        return SHARED_KNATIVE
    from knfleet.desired import bundle

    try:
        bundle.load("1.17.0", None, ("serving-hpa.yaml", "serving-post-install-jobs.yaml"))
    except bundle.BundleError:
        return None
    return bundle.default_cache() / "1.17.0"


@pytest.fixture(scope="session")
def shared_knative() -> Path:
    folder = knative_release_folder()
    if folder is None:
        pytest.skip(f"no Knative release files: no offline bundle at {SHARED_KNATIVE} and the official release "
                    "URLs are not reachable from here")
    return folder
