"""pyinfra facts about a cluster, read through kubectl. They never fail: errors come back as data.

Each fact appends the exit code of kubectl (`__rc=N`) so that "differs" (kubectl diff exits 1),
"unreachable" and "in sync" are told apart by `process`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pyinfra.api import FactBase
from pyinfra.api.command import QuoteString, StringCommand

from knfleet import kubectl
from knfleet.kubectl import Target

RC = re.compile(r"^__rc=(\d+)$")


def _with_rc(cmd: StringCommand) -> StringCommand:
    return StringCommand(cmd, "2>&1;", "echo", "__rc=$?")


def split_rc(lines: list[str]) -> tuple[int, list[str]]:
    if lines and (m := RC.match(lines[-1].strip())):
        return int(m.group(1)), lines[:-1]
    return 255, lines


def diff_objects(lines: list[str]) -> list[str]:
    """Objects named in `kubectl diff` output: 'diff -u -N /tmp/LIVE-1/apps.v1.Deployment.ns.name /tmp/MERGED…'."""
    found: list[str] = []
    for line in lines:
        if line.startswith("diff ") and "/LIVE-" in line:
            path = line.split()[-2]
            found.append(_pretty(path.rsplit("/", 1)[-1]))
    return found


def _pretty(name: str) -> str:
    # <group>.<version>.<Kind>.<namespace>.<name>; the group may hold dots, the kind starts upper-case.
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p[:1].isupper():
            kind, ns, rest = p, parts[i + 1], ".".join(parts[i + 2:])
            return f"{kind}/{ns}/{rest}" if ns else f"{kind}/{rest}"
    return name


class ManifestDiff(FactBase):
    """Does the cluster match a manifest? Server-side dry-run diff under knfleet's field manager.

    Returns {"in_sync": bool, "objects": [changed objects], "error": str | None}.
    """

    def command(self, target: Target, path: str) -> StringCommand:  # type: ignore[override]
        return _with_rc(target.command(*kubectl.diff_args(path)))

    def process(self, output: list[str]) -> dict[str, Any]:
        rc, lines = split_rc(output)
        if rc == 0:
            return {"in_sync": True, "objects": [], "error": None}
        if rc == 1:
            return {"in_sync": False, "objects": diff_objects(lines), "error": None}
        return {"in_sync": False, "objects": [], "error": "\n".join(lines[-8:]).strip() or f"kubectl exited {rc}"}

    @staticmethod
    def default() -> dict[str, Any]:
        return {"in_sync": False, "objects": [], "error": "no output from kubectl diff"}


class KubeJson(FactBase):
    """`kubectl get … -o json` as data; {"error": …} when kubectl fails (not found, unreachable)."""

    def command(self, target: Target, args: tuple[str, ...]) -> StringCommand:  # type: ignore[override]
        return _with_rc(target.command("get", *args, "-o", "json"))

    def process(self, output: list[str]) -> Any:
        rc, lines = split_rc(output)
        text = "\n".join(lines)
        if rc != 0:
            return {"error": text.strip() or f"kubectl exited {rc}"}
        if not text.strip():  # --ignore-not-found with nothing found prints nothing
            return {"items": []}
        try:
            return json.loads(text)
        except ValueError:
            return {"error": f"unexpected kubectl output: {text[:200]}"}

    @staticmethod
    def default() -> Any:
        return {"error": "no output from kubectl"}


class ServerVersion(FactBase):
    """The cluster's version ("v1.32.5"), or {"error": …} when the API is unreachable."""

    def command(self, target: Target) -> StringCommand:  # type: ignore[override]
        return _with_rc(target.command("version", "-o", "json", "--request-timeout=10s"))

    def process(self, output: list[str]) -> Any:
        rc, lines = split_rc(output)
        text = "\n".join(lines)
        try:
            data = json.loads(text[text.index("{"):]) if "{" in text else {}
        except ValueError:
            data = {}
        version = (data.get("serverVersion") or {}).get("gitVersion")
        if not version:
            return {"error": text.strip() or f"kubectl exited {rc}"}
        return {"version": version}

    @staticmethod
    def default() -> Any:
        return {"error": "no output from kubectl version"}


class CanI(FactBase):
    """Which (verb, resource) pairs the identity may NOT do, cluster-wide: SelfSubjectAccessReviews,
    all created by one kubectl call."""

    @staticmethod
    def reviews(checks: tuple[tuple[str, str, str], ...]) -> str:
        items = [{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource}}}
                 for verb, group, resource in checks]
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})

    def command(self, target: Target, checks: tuple[tuple[str, str, str], ...]) -> StringCommand:  # type: ignore
        return _with_rc(StringCommand("echo", QuoteString(self.reviews(checks)), "|",
                                      target.command("create", "-f", "-", "-o", "json")))

    def process(self, output: list[str]) -> list[str]:
        rc, lines = split_rc(output)
        text = "\n".join(lines).strip()
        items: list[dict[str, Any]] = []
        decoder, pos = json.JSONDecoder(), 0
        try:
            while pos < len(text):  # kubectl prints one JSON object per created review
                obj, end = decoder.raw_decode(text, pos)
                items += obj.get("items", [obj]) if isinstance(obj, dict) else []
                pos = end
                while pos < len(text) and text[pos].isspace():
                    pos += 1
        except ValueError:
            return [f"(access review failed: {text[:300] or f'kubectl exited {rc}'})"]
        if rc != 0 or not items:
            return [f"(access review failed: {text[:300] or f'kubectl exited {rc}'})"]
        denied = []
        for item in items:
            attrs = item.get("spec", {}).get("resourceAttributes", {})
            if not item.get("status", {}).get("allowed"):
                denied.append(f"{attrs.get('verb')} {attrs.get('resource')}")
        return denied

    @staticmethod
    def default() -> list[str]:
        return ["(no answer to the access reviews)"]
