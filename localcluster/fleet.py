"""Bring several local clusters up or down together."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from localcluster import build, paths
from localcluster.cluster import ClusterError, LocalCluster, Spec


def names(count: int) -> list[str]:
    if count < 1:
        raise ValueError(f"CLUSTERS must be >= 1, got {count}")
    return [f"local-{i}" for i in range(1, count + 1)]


def existing(root: Path | None = None) -> list[LocalCluster]:
    base = root or paths.clusters_dir()
    if not base.is_dir():
        return []
    return [LocalCluster(d.name, base) for d in sorted(base.iterdir()) if (d / "state.json").exists()]


def up(count: int, spec: Spec | None = None, root: Path | None = None, log=print) -> list[LocalCluster]:
    """Start local-1 … local-<count> in parallel; clusters already running are left as they are."""
    bin_dir = build.build()
    clusters = [LocalCluster(n, root, spec) for n in names(count)]
    t0 = time.monotonic()

    def one(c: LocalCluster) -> LocalCluster:
        was_running = c.is_running()
        state = c.up(bin_dir)
        log(f"{c.name}: {'already running' if was_running else f'started in {state.started_seconds}s'}"
            f" (apiserver https://127.0.0.1:{state.ports['apiserver']}, kubeconfig {c.kubeconfig})")
        return c

    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=len(clusters)) as pool:
        for fut in [pool.submit(one, c) for c in clusters]:
            try:
                fut.result()
            except ClusterError as err:
                errors.append(str(err))
    if errors:
        raise ClusterError("\n".join(errors))
    log(f"{len(clusters)} cluster(s) up in {time.monotonic() - t0:.1f}s")
    return clusters


def down(root: Path | None = None, log=print) -> None:
    """Stop every local cluster under the state folder, by the PIDs it recorded."""
    found = existing(root)
    for c in found:
        stopped = c.down()
        log(f"{c.name}: stopped {', '.join(stopped) if stopped else 'nothing (was not running)'}")
    if not found:
        log("no local clusters")
