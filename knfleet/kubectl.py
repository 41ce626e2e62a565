"""The one place that builds kubectl command lines (for pyinfra commands and for direct runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from pyinfra.api.command import QuoteString, StringCommand

FIELD_MANAGER = "knfleet"


@dataclass(frozen=True)
class Target:
    """How to reach one cluster: its kubeconfig, optionally a context, and the kubectl binary."""

    kubeconfig: str
    context: str | None = None
    kubectl: str = "kubectl"

    @classmethod
    def from_host_data(cls, data: Any) -> Target:
        kubeconfig = data.get("kubeconfig") if hasattr(data, "get") else getattr(data, "kubeconfig", None)
        if not kubeconfig:
            raise ValueError("host data 'kubeconfig' is required: the path of this cluster's kubeconfig")
        get = data.get if hasattr(data, "get") else lambda k, d=None: getattr(data, k, d)
        return cls(
            kubeconfig=os.path.expanduser(str(kubeconfig)),
            context=get("kube_context") or None,
            kubectl=get("kubectl") or os.environ.get("KNFLEET_KUBECTL") or "kubectl",
        )

    def argv(self, *args: str) -> list[str]:
        base = [self.kubectl, f"--kubeconfig={self.kubeconfig}"]
        if self.context:
            base.append(f"--context={self.context}")
        return [*base, *args]

    def command(self, *args: str) -> StringCommand:
        """The same command line as a pyinfra StringCommand (every part quoted)."""
        return StringCommand(*(QuoteString(a) for a in self.argv(*args)))


def apply_args(path: str, dry_run: bool = False) -> list[str]:
    args = ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", path]
    return [*args, "--dry-run=server"] if dry_run else args


def diff_args(path: str) -> list[str]:
    return ["diff", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", path]


def delete_args(path: str, wait: bool = True, timeout: str = "300s") -> list[str]:
    return ["delete", "--ignore-not-found", f"--wait={'true' if wait else 'false'}", f"--timeout={timeout}", "-f", path]


class KubectlError(RuntimeError):
    def __init__(self, argv: list[str], code: int, stderr: str) -> None:
        self.argv, self.code, self.stderr = argv, code, stderr.strip()
        shown = " ".join(a for a in argv if not a.startswith("--kubeconfig="))
        super().__init__(f"{shown} exited {code}: {self.stderr}")


def run(target: Target, *args: str, stdin: str | None = None, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = target.argv(*args)
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        raise FileNotFoundError(f"kubectl not found ({argv[0]}): put it on PATH or set host data 'kubectl'")
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise KubectlError(argv, -1, f"timed out after {timeout}s") from err
    if check and proc.returncode != 0:
        raise KubectlError(argv, proc.returncode, proc.stderr or proc.stdout)
    return proc


def get_json(target: Target, *args: str, timeout: float = 60) -> Any:
    return json.loads(run(target, "get", *args, "-o", "json", timeout=timeout).stdout)
