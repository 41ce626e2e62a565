"""A test's handle on one local cluster: kubectl with its kubeconfig, and small waits."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcluster.cluster import LocalCluster


class Kube:
    def __init__(self, cluster: LocalCluster, bin_dir: Path) -> None:
        self.cluster = cluster
        self.name = cluster.name
        self.kubeconfig = cluster.kubeconfig
        self.kubectl_bin = str(bin_dir / "kubectl")

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = [self.kubectl_bin, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str, *extra: str) -> str:
        return self.run("apply", "-f", "-", *extra, stdin=manifest).stdout

    def exists(self, *args: str) -> bool:
        return self.run("get", *args, check=False).returncode == 0


def eventually(check: Callable[[], Any], timeout: float = 60, interval: float = 0.3, what: str = "") -> Any:
    """Poll `check` until it returns a truthy value; fail with the last value or error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (AssertionError, KeyError, IndexError, ValueError) as err:
            last = err
        time.sleep(interval)
    raise AssertionError(f"not {what or 'true'} after {timeout}s; last: {last!r}")


def binary_modules(pid: int) -> dict[str, str]:
    """The modules `go version -m` reads from a running process's binary (its main module and dependencies):
    {module path: version}."""
    out = subprocess.run(["go", "version", "-m", f"/proc/{pid}/exe"], capture_output=True, text=True, check=True)
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s+(?:mod|dep)\s+(\S+)\s+(\S+)", out.stdout, re.M)}


def control_plane_modules(kube: Kube) -> dict[str, str]:
    """knative.dev/serving of the process behind each webhook and controller pod (none terminating)."""
    out = {}
    for app in ("webhook", "controller"):
        for pod in kube.json("get", "pods", "-n", "knative-serving", "-l", f"app={app}")["items"]:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            (st,) = pod["status"].get("containerStatuses") or [{}]
            cid = st.get("containerID", "")
            if not cid.startswith("knfleet-runner://") or not st.get("ready"):
                return {}
            out[f"{app}/{pod['metadata']['name']}"] = binary_modules(int(cid.split("//")[1]))["knative.dev/serving"]
    return out
