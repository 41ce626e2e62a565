"""`knfleet doctor INVENTORY`: what a new user runs first. Per cluster, changing nothing, in the order a run needs
them: the kubeconfig (set, present, readable YAML), the context (named or current, present), the credential
plugin of its user (an `exec` command found on PATH: aws, gke-gcloud-auth-plugin, kubelogin, ...), the API server
(reachable, TLS, version >= the target release's minimum), the rights the install uses (the preflight's access
reviews), and the Knative release files (pinned checksums, offline folder or download cache). One line per
cluster; exit 0 when every cluster is ready for a run, 1 otherwise, 2 when the inventory itself cannot be read.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from knfleet.desired import plan, releases, settings
from knfleet.errors import InputError
from knfleet.fleet import inventory as inv
from knfleet.kube.client import Cluster, KubeError
from knfleet.run.connector import target_of


@dataclass
class Diagnosis:
    cluster: str
    ok: bool = False
    checks: list[str] = field(default_factory=list)  # what passed, in order
    problem: str = ""  # the first thing that stops a run, and what to do

    def line(self, width: int) -> str:
        head = f"{self.cluster:<{width}}  {'ok  ' if self.ok else 'FAIL'}  "
        return head + ("; ".join(self.checks) if self.ok else self.problem)


def _kubeconfig_problem(name: str, data: dict[str, Any]) -> tuple[str | None, list[str]]:
    """Offline checks of the kubeconfig, its context and its credential plugin: (problem or None, passed)."""
    done: list[str] = []
    try:
        target = target_of(name, data)
    except InputError as err:
        return str(err).split(": ", 1)[-1], done
    path = target.kubeconfig
    if not os.path.isfile(path):
        return f"kubeconfig {path} does not exist (host data 'kubeconfig'); copy it there or fix the path", done
    try:
        doc = yaml.safe_load(open(path, encoding="utf-8").read()) or {}  # noqa: SIM115 - small file
    except (OSError, yaml.YAMLError) as err:
        return f"kubeconfig {path} is not readable YAML: {str(err).splitlines()[0]}", done
    if not isinstance(doc, dict):
        return f"kubeconfig {path} is not a kubeconfig (no mapping at the top)", done
    done.append("kubeconfig")
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or [] if isinstance(c, dict)}
    wanted = target.context or doc.get("current-context")
    if not wanted:
        return (f"kubeconfig {path} has no current-context and host data names no kube_context "
                f"(contexts: {', '.join(map(str, contexts)) or 'none'})"), done
    if wanted not in contexts:
        return (f"context {wanted!r} is not in {path} (contexts: {', '.join(map(str, contexts)) or 'none'}); "
                "fix host data 'kube_context'"), done
    done.append(f"context {wanted}")
    users = {u.get("name"): u.get("user") or {} for u in doc.get("users") or [] if isinstance(u, dict)}
    user = users.get(contexts[wanted].get("user"), {})
    plugin = (user.get("exec") or {}).get("command") if isinstance(user, dict) else None
    if plugin:
        if not (os.path.isabs(plugin) and os.access(plugin, os.X_OK)) and not shutil.which(plugin):
            return (f"credential plugin {plugin!r} (user {contexts[wanted].get('user')!r}) is not on PATH "
                    f"({os.environ.get('PATH', '')}); install it, or set PATH (cron runs with a short one)"), done
        done.append(f"credential plugin {plugin}")
    return None, done


def diagnose(c: inv.Cluster) -> Diagnosis:
    d = Diagnosis(c.name)
    problem, d.checks = _kubeconfig_problem(c.name, c.data)
    if problem:
        d.problem = problem
        return d
    cluster = Cluster(target_of(c.name, c.data))
    try:
        cluster.connect()
        version = cluster.version()
    except InputError as err:
        d.problem = str(err)
        return d
    except KubeError as err:
        d.problem = f"API server not reachable: {err}"
        cluster.close()
        return d
    try:
        from knfleet.run.preflight import missing_rights  # the preflight's own

        try:
            desired = plan.desired(c.host, settings.Data({**c.data, "action": "install"}))
        except InputError as err:
            d.problem = f"desired state: {err}"
            return d
        step = plan.preflight((), desired.settings.knative_version)
        too_old = releases.kubernetes_too_old(version, step.min_kubernetes, step.release)
        if too_old:
            d.problem = too_old
            return d
        d.checks.append(f"Kubernetes {version}")
        d.checks.append(f"Knative {desired.settings.knative_version} release files")
        denied = missing_rights(cluster, plan.install_rights(desired))
        if denied:
            d.problem = f"the identity lacks {len(denied)} right(s) the install needs: {'; '.join(denied)}"
            return d
        d.checks.append("rights")
    except KubeError as err:
        d.problem = f"API server refused a check: {err}"
        return d
    finally:
        cluster.close()
    d.ok = True
    return d


def doctor(inventory: str, as_json: bool = False) -> int:
    try:
        clusters = inv.load(inventory)
    except inv.InventoryError as err:
        print(f"knfleet doctor: cannot read the inventory: {err}")
        return 2
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(clusters)))) as pool:
        found = list(pool.map(diagnose, clusters))
    if as_json:
        print(json.dumps({"schema": "knfleet.doctor/v1", "clusters": [asdict(x) for x in found]}, indent=2))
    else:
        width = max([len(x.cluster) for x in found] + [7])
        for x in found:
            print(x.line(width))
    return 0 if all(x.ok for x in found) else 1
