"""knfleet's pyinfra operations: apply, wait, delete and verify, each against one cluster (one host).

Like pyinfra's own operations: a fact tells whether the cluster already matches; the operation yields
commands only when it does not, and otherwise reports no change (`host.noop`). Waits first look
(read-only); they only wait, and count as a change, when something is not ready yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation

from knfleet import kubectl, lock, readiness, smoke, summary, waits
from knfleet.errors import KnfleetError, NotReadyError, StuckError
from knfleet.facts import CanI, KubeJson, ManifestDiff, ServerVersion
from knfleet.kubectl import KubectlError, Target

MIN_KUBERNETES = (1, 30)
INSTALL_RIGHTS = (  # (verb, API group, resource), checked cluster-wide
    ("create", "apiextensions.k8s.io", "customresourcedefinitions"), ("create", "", "namespaces"),
    ("create", "rbac.authorization.k8s.io", "clusterroles"),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
    ("create", "admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("create", "apps", "deployments"), ("patch", "", "configmaps"),
)


def guarded(what: str, fn: Callable[..., Any], *args: Any) -> FunctionCommand:
    """A command running fn(*args) on this machine; a knfleet error fails the host with a clean message."""
    def run(state, host):  # noqa: ANN001 - pyinfra passes its State and Host
        try:
            fn(*args)
        except (KnfleetError, KubectlError, FileNotFoundError) as err:
            summary.record_error(host.name, what, str(err))
            host.log_styled(f"{what} failed: {err}", fg="red", log_func=logger.error)
            return False
        return True
    run.__name__ = what.replace(" ", "_")
    return FunctionCommand(run, (), {})


def _fail(what: str, message: str) -> FunctionCommand:
    """A command that fails the host with `message` (a check found a problem while generating)."""
    def raise_it() -> None:
        raise KnfleetError(message)
    return guarded(what, raise_it)


def _no_ksvc_crd(target: Target) -> bool:
    return "error" in host.get_fact(KubeJson, target=target, args=("crd", "services.serving.knative.dev"))


def parse_version(text: str) -> tuple[int, int]:
    core = text.lstrip("v").split("-")[0].split("+")[0].split(".")
    return int(core[0]), int("".join(ch for ch in core[1] if ch.isdigit()) or 0)


@operation()
def preflight(target: Target, need_rights: bool = True):
    """Check the cluster before changing it: API reachable, Kubernetes >= 1.30, the rights the install needs.

    + target: the cluster (kubeconfig, context)
    + need_rights: check the install's rights with SelfSubjectAccessReviews
    """
    version = host.get_fact(ServerVersion, target=target)
    if "error" in version:
        yield _fail("preflight", f"API server not reachable with {target.kubeconfig}: {version['error']}")
        return
    if parse_version(version["version"]) < MIN_KUBERNETES:
        yield _fail("preflight", f"Kubernetes {version['version']} is too old: Knative Serving 1.17 needs >= v1.30.0")
        return
    if need_rights:
        missing = host.get_fact(CanI, target=target, checks=INSTALL_RIGHTS)
        if missing:
            yield _fail("preflight", f"the identity in {target.kubeconfig} may not: {', '.join(missing)} "
                                     "(cluster-wide); use a cluster-admin kubeconfig")
            return
    host.noop(f"cluster reachable, Kubernetes {version['version']}, rights ok")


@operation()
def apply_manifest(target: Target, path: str, stage: str):
    """Server-side apply (field manager knfleet) of a rendered manifest, only when the cluster differs.

    + target: the cluster
    + path: the rendered manifest (one desired state per object)
    + stage: its name, for messages
    """
    diff = host.get_fact(ManifestDiff, target=target, path=path)
    if diff["in_sync"]:
        host.noop(f"{stage}: in sync")
        return
    if diff["objects"]:
        logger.info(f"{host.print_prefix}{stage}: {len(diff['objects'])} object(s) differ: "
                    + ", ".join(diff["objects"][:8]) + (" …" if len(diff["objects"]) > 8 else ""))
    yield target.command(*kubectl.apply_args(path))


CONFIG_WEBHOOK = "config.webhook.serving.knative.dev"


def apply_config_repairing(target: Target, path: str, log: Callable[[str], None]) -> None:
    """Apply the config ConfigMaps. When Knative's config webhook cannot be called (its pods crash-loop, for
    example on a value stored before that webhook existed), the rules that route ConfigMaps to it are taken off:
    they are Knative's (its webhook writes them at start-up and puts them back once it runs again), and without
    this no corrected ConfigMap could ever be stored. The values themselves were checked as Knative parses them."""
    proc = kubectl.run(target, *kubectl.apply_args(path), check=False)
    if proc.returncode == 0:
        return
    err = (proc.stderr or proc.stdout).strip()
    if f'failed calling webhook "{CONFIG_WEBHOOK}"' not in err:
        raise KubectlError(target.argv(*kubectl.apply_args(path)), proc.returncode, err)
    log(f"Knative's config webhook does not answer ({err.splitlines()[-1][:200]}); taking its rules off "
        f"{CONFIG_WEBHOOK} so the corrected ConfigMaps can be stored (Knative's webhook restores them when it runs)")
    kubectl.run(target, "patch", "validatingwebhookconfiguration", CONFIG_WEBHOOK, "--type=json",
                "-p", json.dumps([{"op": "replace", "path": "/webhooks/0/rules", "value": []}]))
    kubectl.run(target, *kubectl.apply_args(path))


@operation()
def apply_config(target: Target, path: str):
    """Server-side apply of the `config-*` ConfigMaps, only when the cluster differs; repairs a cluster whose
    Knative webhook crash-loops on a stored configuration (see apply_config_repairing).

    + target: the cluster
    + path: the rendered config stage
    """
    diff = host.get_fact(ManifestDiff, target=target, path=path)
    if diff["in_sync"]:
        host.noop("config: in sync")
        return
    if diff["objects"]:
        logger.info(f"{host.print_prefix}config: {len(diff['objects'])} object(s) differ: "
                    + ", ".join(diff["objects"][:8]) + (" …" if len(diff["objects"]) > 8 else ""))
    yield guarded("apply the config ConfigMaps", apply_config_repairing, target, path,
                  lambda m: logger.warning(f"{host.print_prefix}{m}"))


def _items(fact: Any) -> list[dict[str, Any]] | None:
    return None if "error" in fact else fact.get("items", [])


@operation()
def crds_established(target: Target, selector: str = "knative.dev/crd-install=true", timeout: int = 120):
    """Wait until every CRD with the label is Established."""
    crds = _items(host.get_fact(KubeJson, target=target, args=("crd", "-l", selector)))
    if crds and all(readiness.is_true(c, "Established") for c in crds):
        host.noop(f"{len(crds)} CRDs Established")
        return
    yield guarded("wait for CRDs", waits.crds_established, target, selector, timeout)


@operation()
def deployments_available(target: Target, namespace: str, timeout: int = 300):
    """Wait until every Deployment in the namespace is Available; on timeout say why, pod by pod."""
    deps = _items(host.get_fact(KubeJson, target=target, args=("deployments", "-n", namespace)))
    if deps and all(readiness.deployment_available(d) for d in deps):
        host.noop(f"{len(deps)} deployments Available in {namespace}")
        return
    yield guarded(f"wait for deployments in {namespace}", waits.deployments_available, target, namespace, timeout)


@operation()
def webhook_answers(target: Target, timeout: int = 120):
    """Check that the Knative webhook answers (server-side dry-run patch), retrying while it starts."""
    try:
        waits.webhook_answers(target, 0)
        host.noop("webhook answers")
        return
    except (NotReadyError, KubectlError):
        pass
    yield guarded("wait for the Knative webhook", waits.webhook_answers, target, timeout)


@operation()
def pods_ready(target: Target, namespaces: tuple[str, ...], timeout: int = 300):
    """Wait until every pod (Job pods aside) in the namespaces is Ready; on timeout say why."""
    ready = True
    for ns in namespaces:
        pods = _items(host.get_fact(KubeJson, target=target, args=("pods", "-n", ns)))
        pods = [p for p in pods or [] if not readiness.is_job_pod(p)]
        ready = ready and bool(pods) and all(readiness.pod_ready(p) for p in pods)
    if ready:
        host.noop(f"all pods Ready in {', '.join(namespaces)}")
        return
    yield guarded("wait for pods", waits.pods_ready, target, namespaces, timeout)


@operation()
def delete_manifest(target: Target, path: str, stage: str, timeout: int = 300):
    """Delete what a manifest declares (not-found ignored), only if any of it exists."""
    existing = host.get_fact(KubeJson, target=target, args=("-f", path, "--ignore-not-found"))
    if "error" not in existing and not existing.get("items"):
        host.noop(f"{stage}: nothing to delete")
        return
    yield target.command(*kubectl.delete_args(path, wait=True, timeout=f"{timeout}s"))


# What Knative's controllers make for a Knative Service, all labelled serving.knative.dev/service=<name>.
OWNED_BY_SERVICE = ("routes.serving.knative.dev,configurations.serving.knative.dev,revisions.serving.knative.dev,"
                    "ingresses.networking.internal.knative.dev,podautoscalers.autoscaling.internal.knative.dev,"
                    "serverlessservices.networking.internal.knative.dev")


def service_selectors(refs: list[str]) -> dict[str, str]:
    """namespace -> a selector of the objects Knative made for these services ("ns/name")."""
    by_ns: dict[str, list[str]] = {}
    for ref in refs:
        ns, name = ref.split("/", 1)
        by_ns.setdefault(ns, []).append(name)
    return {ns: f"serving.knative.dev/service in ({','.join(sorted(names))})" for ns, names in by_ns.items()}


KNATIVE_USER_KINDS = ("ksvc,domainmappings.serving.knative.dev,routes.serving.knative.dev,"
                      "configurations.serving.knative.dev")


def _left(items: list[dict[str, Any]]) -> list[str]:
    out = []
    for o in items:
        fins = o["metadata"].get("finalizers") or []
        out.append(f"{o['kind']} {readiness.name_of(o)}" + (f" (finalizers {fins})" if fins else ""))
    return out


def wait_services_gone(target: Target, refs: list[str], everything: bool, timeout: float) -> None:
    """The services, and every route, configuration, revision, ingress, PA and SKS Knative made for them, are gone
    (Revisions carry serving.knative.dev/service, not the Service's own labels). With `everything`, no Knative
    object made by anyone remains either."""
    selectors = service_selectors(refs)

    def check() -> tuple[bool, str]:
        left: list[str] = []
        for ns, selector in selectors.items():
            names = {r.split("/", 1)[1] for r in refs if r.startswith(f"{ns}/")}
            made = kubectl.run(target, "get", OWNED_BY_SERVICE, "-n", ns, "-l", selector, "-o", "json",
                               "--ignore-not-found").stdout
            left += _left(json.loads(made or '{"items": []}').get("items", []))
            left += _left([o for o in kubectl.get_json(target, "ksvc", "-n", ns)["items"]
                           if o["metadata"]["name"] in names])
        if everything:
            left += _left(kubectl.get_json(target, f"{KNATIVE_USER_KINDS},{OWNED_BY_SERVICE}", "-A")["items"])
        return not left, "still present: " + ", ".join(sorted(set(left)))
    waits.poll(check, timeout)


@operation()
def delete_services(target: Target, selector: str, timeout: int = 300, force: bool = False):
    """Delete the Knative Services matching the selector (with `force`: every Knative Service, DomainMapping,
    Route and Configuration) and wait until they and everything Knative made for them are gone, while the
    controllers still run, so that their finalizers complete. Knative's webhook admits these deletes: it must
    answer first."""
    if _no_ksvc_crd(target):
        host.noop("no Knative Service CRD: nothing to delete")
        return
    found = _items(host.get_fact(KubeJson, target=target, args=("ksvc", "-A", "-l", selector))) or []
    foreign = foreign_objects(_items(host.get_fact(KubeJson, target=target, args=(KNATIVE_USER_KINDS, "-A")))
                              or [], selector) if force else []
    if not found and not foreign:
        host.noop("no Knative Services to delete")
        return
    refs = sorted(readiness.name_of(o) for o in found)
    yield guarded("Knative's webhook answers (it admits deletes of Knative objects)", waits.webhook_answers,
                  target, timeout)
    if found:
        yield target.command("delete", "ksvc", "-A", "-l", selector, "--wait=false", f"--timeout={timeout}s")
    if foreign:
        yield target.command("delete", KNATIVE_USER_KINDS, "--all", "-A", "--wait=false", f"--timeout={timeout}s")
    yield guarded("wait for the services, routes, revisions and ingresses to go", wait_services_gone, target, refs,
                  bool(foreign), timeout)


KNATIVE_FINALIZED = ("routes.serving.knative.dev", "ingresses.networking.internal.knative.dev",
                     "domainmappings.serving.knative.dev", "certificates.networking.internal.knative.dev")


def leftovers(target: Target) -> list[str]:
    """Knative CRDs, objects holding a finalizer, webhook configurations and namespaces still present."""
    left: list[str] = []
    crds = [c for c in kubectl.get_json(target, "crd")["items"] if c["metadata"]["name"].endswith(".knative.dev")]
    for c in crds:
        fin = c["metadata"].get("finalizers") or []
        left.append(f"CRD {c['metadata']['name']}" + (f" (finalizers {fin})" if fin else ""))
    present = {c["metadata"]["name"] for c in crds}
    kinds = [k for k in KNATIVE_FINALIZED if k in present]
    if kinds:
        proc = kubectl.run(target, "get", ",".join(kinds), "-A", "-o", "json", "--ignore-not-found", check=False)
        for o in json.loads(proc.stdout or '{"items": []}').get("items", []) if proc.returncode == 0 else []:
            fins = o["metadata"].get("finalizers") or []
            if fins:
                left.append(f"{o['kind']} {readiness.name_of(o)} holds finalizers {fins}")
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        for w in kubectl.get_json(target, kind)["items"]:
            if "knative" in w["metadata"]["name"]:
                left.append(f"{kind} {w['metadata']['name']}")
    for obj in kubectl.get_json(target, "namespaces")["items"]:
        ns = obj["metadata"]["name"]
        if ns in ("knative-serving", "kourier-system", "knative-nginx"):
            left.append(f"namespace {ns} ({obj.get('status', {}).get('phase', '?')}"
                        + (f", finalizers {obj['spec'].get('finalizers')}" if obj.get("spec") else "") + ")")
    return left


@operation()
def verify_removed(target: Target, timeout: int = 300):
    """No Knative CRD, webhook configuration or namespace remains; name what is stuck if any does."""
    try:
        if not leftovers(target):
            host.noop("nothing of Knative remains")
            return
    except KubectlError:
        pass

    def wait_clean() -> None:
        try:
            waits.poll(lambda: (not (left := leftovers(target)), "\n".join(left)), timeout, interval=2)
        except NotReadyError as err:
            raise StuckError(f"uninstall left objects behind (remove their finalizers by hand if they stay): {err}") \
                from None
    yield guarded("verify uninstall", wait_clean)


def foreign_objects(everything: list[dict[str, Any]], selector: str) -> list[str]:
    """Knative objects an uninstall would destroy that knfleet did not create: Services without its label,
    DomainMappings, and Routes or Configurations made directly (not by a Knative Service)."""
    key, _, value = selector.partition("=")
    out = []
    for o in everything:
        kind, meta = o.get("kind"), o["metadata"]
        owned_by_service = any(r.get("kind") == "Service" and r.get("apiVersion", "").startswith("serving.knative.dev")
                               for r in meta.get("ownerReferences") or [])
        if kind == "Service" and (meta.get("labels") or {}).get(key) != value:
            out.append(f"Knative Service {readiness.name_of(o)}")
        elif kind == "DomainMapping":
            out.append(f"DomainMapping {readiness.name_of(o)}")
        elif kind in ("Route", "Configuration") and not owned_by_service:
            out.append(f"{kind} {readiness.name_of(o)} (created directly)")
    return sorted(out)


@operation()
def no_foreign_services(target: Target, selector: str, force: bool = False):
    """Refuse to go on when Knative objects knfleet did not create exist (Services, DomainMappings, Routes and
    Configurations made directly): deleting the CRDs would delete them too. `force_uninstall=true` overrides."""
    if _no_ksvc_crd(target):
        host.noop("no Knative Service CRD")
        return
    everything = _items(host.get_fact(KubeJson, target=target, args=(
        "ksvc,domainmappings.serving.knative.dev,routes.serving.knative.dev,configurations.serving.knative.dev",
        "-A"))) or []
    foreign = foreign_objects(everything, selector)
    if not foreign or force:
        host.noop("no Knative object outside knfleet's" if not foreign
                  else f"force_uninstall: {len(foreign)} Knative object(s) not made by knfleet will be deleted "
                       "with the CRDs")
        return
    yield _fail("uninstall guard", f"Knative objects not made by knfleet exist ({', '.join(foreign)}); "
                                   "deleting Knative would delete them. Remove them first or run with "
                                   "--data force_uninstall=true")


@operation()
def prune_services(target: Target, keep: tuple[str, ...], selector: str, timeout: int = 300):
    """Delete the Knative Services knfleet deployed ("ns/name" with its label) that group data no longer has.
    Services knfleet does not manage are never touched."""
    if _no_ksvc_crd(target):
        host.noop("no Knative Service CRD")
        return
    managed = _items(host.get_fact(KubeJson, target=target, args=("ksvc", "-A", "-l", selector))) or []
    gone = sorted(readiness.name_of(o) for o in managed if readiness.name_of(o) not in keep)
    if not gone:
        host.noop("no removed model service to delete")
        return
    for ref in gone:
        ns, name = ref.split("/", 1)
        yield target.command("delete", "ksvc", name, "-n", ns, "--ignore-not-found", "--wait=true",
                             f"--timeout={timeout}s")


@operation()
def services_ready(target: Target, refs: tuple[str, ...], timeout: int = 600):
    """Wait until each Knative Service is Ready for its generation, with the newest revision serving;
    on giving up, report Knative's reason (IngressNotConfigured, Unschedulable, ProgressDeadlineExceeded, …)."""
    found = _items(host.get_fact(KubeJson, target=target, args=("ksvc", "-A"))) or []
    by_ref = {readiness.name_of(o): o for o in found}
    if refs and all(r in by_ref and readiness.service_ready(by_ref[r]) for r in refs):
        host.noop(f"{len(refs)} model service(s) Ready")
        return
    if not refs:
        host.noop("no model services")
        return
    yield guarded("wait for model services", waits.services_ready, target, refs, timeout)


def _revision_at_zero(target: Target, ns: str, revision: str | None) -> bool:
    if not revision:
        return False
    proc = kubectl.run(target, "get", "deployment", f"{revision}-deployment", "-n", ns, "-o", "json", check=False)
    if proc.returncode != 0:
        return False
    status = json.loads(proc.stdout).get("status") or {}
    return int(status.get("readyReplicas") or 0) == 0


@operation()
def smoke_test(target: Target, services: tuple[tuple[str, str, str, bool], ...], internal_url: str | None,
               public_url: str | None, deadline: int = 120):
    """The runbook's chat request to every model service, with its Host header, through the entry point the
    host data names (`smoke_url`: the public proxy; `smoke_internal_url`: kourier-internal). Checks 200, an
    OpenAI-shaped body and the model name; records latency and, for a service at zero, the cold start.
    A check, not a change: it reports no change when every service answers, and fails the cluster otherwise.

    + services: (ns/name, served model, host, cluster_local) per service
    """
    if not host.state.is_executing:
        host.noop("smoke tests run with the deploy (not in --dry)")
        return
    failures = []
    for ref, model, hostname, cluster_local in services:
        url = internal_url if cluster_local or not public_url else public_url
        if not url:
            failures.append(f"{ref}: no entry point: set host data smoke_url (public proxy) or smoke_internal_url")
            continue
        ns, name = ref.split("/", 1)
        svc = kubectl.get_json(target, "ksvc", name, "-n", ns)
        at_zero = _revision_at_zero(target, ns, (svc.get("status") or {}).get("latestReadyRevisionName"))
        result = smoke.chat(ref, url, hostname, model, deadline, at_zero)
        summary.record_smoke(host.name, result)
        logger.info(f"{host.print_prefix}smoke {result.line()}")
        if not result.ok:
            failures.append(result.line())
    if failures:
        yield _fail("smoke test", "; ".join(failures))
        return
    host.noop(f"{len(services)} service(s) answered")


@operation()
def cluster_lock(target: Target, ttl: int = 1800, wait: int = 0):
    """Take the cluster's lock (Lease kube-system/knfleet-lock) before anything changes it; released when the
    run ends. Bookkeeping, not a change of the cluster's desired state: it reports no change."""
    if not host.state.is_executing:
        host.noop("the lock is taken when the run executes")
        return
    try:
        how = lock.acquire(target, ttl=ttl, wait=wait,
                           log=lambda m: logger.warning(f"{host.print_prefix}{m}"))
    except (lock.LockedError, KubectlError) as err:
        yield _fail("lock", str(err))
        return
    lock.HELD[host.name] = target
    host.noop(how)


@operation()
def gpu_capacity(target: Target, services: tuple[tuple[str, int], ...]):
    """Warn (no change) when a model asks for more GPUs than any node of this cluster has.

    + services: (ns/name, GPUs per pod) per model service
    """
    nodes = _items(host.get_fact(KubeJson, target=target, args=("nodes",))) or []
    most = max((int(str(((n.get("status") or {}).get("allocatable") or {}).get("nvidia.com/gpu", 0)) or 0)
                for n in nodes), default=0)
    too_big = [f"{ref} asks for {gpus}" for ref, gpus in services if gpus > most]
    if too_big:
        logger.warning(f"{host.print_prefix}lint warning: more GPUs than any node has (at most {most} per node): "
                       + "; ".join(too_big) + ": the pod will stay Pending (Unschedulable)")
    host.noop(f"largest GPU node: {most} GPU(s)")
    yield from ()  # a check: never a command
