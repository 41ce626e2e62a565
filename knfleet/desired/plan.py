"""The run as one typed plan: (settings, verified bundle, models) -> an ordered list of steps. Pure: no cluster.

    Preflight -> Lock -> Apply(crds) -> Gate(crds) -> Apply(config) -> Apply(core) -> Gate(deployments)
    -> Gate(webhook) -> Apply(kourier) -> ... -> Apply(services) -> Prune -> Gate(services) -> Smoke

Everything is checked here, before any cluster is touched: the settings, Knative's verdict on the config
ConfigMaps, the bundle's checksums, and lint of the model services (rendered once; `knfleet lint`, the deploy,
`--dry` and `knfleet status` read the same objects). deploy.py turns each step into one pyinfra operation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from knfleet.desired import (
    bundle,
    capacity,
    ha,
    lint,
    manifests,
    mirror,
    models,
    ownership,
    prepull,
    progressive,
    releases,
    render,
    settings,
    upgrade,
)
from knfleet.errors import InputError

MANAGED = models.MANAGED
NAMESPACES = ("knative-serving", "kourier-system", "knative-nginx")
PROXY_NS = "knative-nginx"  # the public proxy (files/knative-nginx.yaml): Deployment and Service knative-nginx
LOCK_NAMESPACE = "kube-system"  # the Lease knfleet-lock and knfleet's notes (ConfigMap knfleet-state)


@dataclass(frozen=True, order=True)
class Right:
    """One thing the run's identity must be allowed: a SelfSubjectAccessReview's resource attributes."""

    verb: str
    group: str
    resource: str
    namespace: str = ""  # "" = cluster-wide (a cluster-scoped resource, or a list across namespaces)
    subresource: str = ""

    def __str__(self) -> str:
        what = f"{self.resource}{'/' + self.subresource if self.subresource else ''}"
        what += f".{self.group}" if self.group else ""
        return f"{self.verb} {what}" + (f" in {self.namespace}" if self.namespace else "")


IRREGULAR = {"Endpoints": "endpoints"}


def resource_of(kind: str) -> str:
    """A kind's resource name as Kubernetes' default REST mapper guesses it (meta.UnsafeGuessKindToResource),
    which every kind in Knative's and knfleet's manifests follows."""
    if kind in IRREGULAR:
        return IRREGULAR[kind]
    low = kind.lower()
    if low.endswith("s"):
        return low + "es"
    if low.endswith("y") and low[-2:-1] not in "aeiou":
        return low[:-1] + "ies"
    return low + "s"


def _rights_on(objects: Any, verbs: tuple[str, ...]) -> set[Right]:
    out = set()
    for o in objects:
        group = o["apiVersion"].rpartition("/")[0]
        ns = (o.get("metadata") or {}).get("namespace") or ""
        out |= {Right(v, group, resource_of(o["kind"]), ns) for v in verbs}
    return out


LOCK_RIGHTS = frozenset({
    *(Right(v, "coordination.k8s.io", "leases", LOCK_NAMESPACE) for v in ("get", "create", "update", "delete")),
    *(Right(v, "", "configmaps", LOCK_NAMESPACE) for v in ("get", "create", "patch")),
})


def install_rights(d: Desired) -> tuple[Right, ...]:
    """Every right an install run uses: create and patch (server-side apply) of each object it applies, `escalate`
    to create Knative's ClusterRoles (they grant rights the identity may not hold) and `bind` to bind them, the
    lock and the notes in kube-system, reads of what the gates look at, and delete of removed model services."""
    rights = set(LOCK_RIGHTS)
    for s in d.stages:
        rights |= _rights_on(s.objects, ("create", "patch"))
    rights |= {Right("escalate", "rbac.authorization.k8s.io", "clusterroles"),
               Right("bind", "rbac.authorization.k8s.io", "clusterroles")}
    rights |= {Right("list", g, r, ns) for ns in NAMESPACES for g, r in (("apps", "deployments"), ("", "pods"),
                                                                          ("", "events"))}
    # upgrades: the post-install Jobs, and deleting what the old release had (any object of the release's kinds)
    if d.jobs:
        rights |= {Right(v, "batch", "jobs", "knative-serving") for v in ("create", "get", "list")}
        rights |= {Right("list", "", "pods", "knative-serving")}
    release = [o for s in d.stages if s.name in RELEASE_STAGES for o in s.objects
               if o["kind"] != "CustomResourceDefinition"]
    rights |= _rights_on(release, ("list", "delete"))
    rights |= {Right("list", "", "nodes"), Right("list", "apiextensions.k8s.io", "customresourcedefinitions"),
               Right("list", "serving.knative.dev", "services"), Right("delete", "serving.knative.dev", "services")}
    if d.models:  # a missing model namespace is created (an existing one only read)
        rights |= {Right("create", "", "namespaces"), Right("get", "", "namespaces")}
    if any(s.name == "prepull" for s in d.stages):  # the pre-pull DaemonSets: pruned across namespaces; waited for
        rights |= {Right(v, "apps", "daemonsets") for v in ("list", "delete")}
        rights |= {Right("list", "", "nodes"), *(Right("list", g, r, ns) for ns in
                                                 {o["metadata"]["namespace"] for s in d.stages if s.name == "prepull"
                                                  for o in s.objects if o.get("kind") == "DaemonSet"}
                                                 for g, r in (("", "pods"), ("", "events")))}
    run = d.settings.run
    if d.models and run.smoke:
        rights |= {Right("get", g, r, m.namespace) for m in d.models
                   for g, r in (("serving.knative.dev", "services"), ("apps", "deployments"))}
        if not (run.smoke_url and run.smoke_internal_url):  # some go through kourier-internal
            if run.smoke_via == "exec":  # from inside the proxy's pod, as the runbook does
                rights |= {Right("list", "", "pods", PROXY_NS), Right("create", "", "pods", PROXY_NS, "exec")}
            else:  # by port-forward to a gateway pod behind kourier-internal
                rights |= {Right("get", "", "services", "kourier-system"),
                           Right("create", "", "pods", "kourier-system", "portforward")}
        if run.smoke_proxy and not run.smoke_url:  # the proxy's external address, when it has one
            rights.add(Right("get", "", "services", PROXY_NS))
    if gpu_needs(d) and run.gpu_preflight != "off":
        rights.add(Right("list", "", "pods"))  # what other pods hold of the GPUs
    for m in d.models:
        if m.rollout.progressive:  # its revisions' scale (surge by one, GPUs released), the GPUs free on the nodes
            rights |= {Right(v, g, r, m.namespace) for v in ("get", "list", "patch") for g, r in (
                ("serving.knative.dev", "revisions"), ("autoscaling.internal.knative.dev", "podautoscalers"))}
            rights |= {Right("get", "serving.knative.dev", "services", m.namespace), Right("list", "", "pods"),
                       Right("list", "", "nodes"), Right("list", "apps", "deployments", m.namespace)}
            if not (run.smoke_url and run.smoke_internal_url):
                rights |= {Right("get", "", "services", "kourier-system"),
                           Right("create", "", "pods", "kourier-system", "portforward")} \
                    if run.smoke_via != "exec" else {Right("list", "", "pods", PROXY_NS),
                                                     Right("create", "", "pods", PROXY_NS, "exec")}
    return tuple(sorted(rights))


# --- the Knative objects an uninstall deletes or waits for (knfleet.run.uninstall) ---------------------------------
# Made by users: an uninstall deletes knfleet's Services, and the others only with force_uninstall.
USER_KINDS = (("serving.knative.dev/v1", "Service"), ("serving.knative.dev/v1beta1", "DomainMapping"),
              ("serving.knative.dev/v1", "Route"), ("serving.knative.dev/v1", "Configuration"))
# What Knative's controllers make for a Knative Service, all labelled serving.knative.dev/service=<name>.
MADE_FOR_SERVICE = (("serving.knative.dev/v1", "Route"), ("serving.knative.dev/v1", "Configuration"),
                    ("serving.knative.dev/v1", "Revision"), ("networking.internal.knative.dev/v1alpha1", "Ingress"),
                    ("autoscaling.internal.knative.dev/v1alpha1", "PodAutoscaler"),
                    ("networking.internal.knative.dev/v1alpha1", "ServerlessService"))
# Whose deletion an uninstall waits for (listed cluster-wide) before Knative's controllers go.
STILL_DELETING_KINDS = (("serving.knative.dev/v1", "Service"), *MADE_FOR_SERVICE,
                        ("networking.internal.knative.dev/v1alpha1", "Certificate"),
                        ("serving.knative.dev/v1beta1", "DomainMapping"))  # a DomainMapping owns an Ingress too


def uninstall_rights(d: Desired) -> tuple[Right, ...]:
    """Delete of everything an uninstall removes, cluster-wide reads of the Knative objects it waits for, the dry
    run through Knative's webhook before deleting Services (webhook.PROBE_SERVICE), and the lock."""
    rights = set(LOCK_RIGHTS)
    for s in d.stages:
        rights |= _rights_on(s.objects, ("delete", "list"))
    rights |= {Right("list", k[0].rpartition("/")[0], resource_of(k[1])) for k in STILL_DELETING_KINDS}
    rights |= {Right("delete", k[0].rpartition("/")[0], resource_of(k[1])) for k in USER_KINDS}
    rights.add(Right("create", "serving.knative.dev", "services", "knative-serving"))  # a dry run only
    rights |= {Right(v, "apps", "daemonsets") for v in ("list", "delete")}  # knfleet's pre-pull DaemonSets
    return tuple(sorted(rights))


class LintFailed(InputError):
    """A model service would be rejected by Knative's webhook; nothing was changed on any cluster."""


# --- what a gate waits for (evaluated by knfleet.kube.readiness) -----------------------------------------------
@dataclass(frozen=True)
class CrdsEstablished:
    selector: str = "knative.dev/crd-install=true"


@dataclass(frozen=True)
class DeploymentsAvailable:
    namespace: str


@dataclass(frozen=True)
class ReplicasReady:
    """Every Deployment in these namespaces has at least `replicas` Ready pods (ha_replicas: HPAs scale theirs up
    to the raised minimum after the apply)."""

    namespaces: tuple[str, ...]
    replicas: int


@dataclass(frozen=True)
class WebhookServing:
    """Knative's webhook answers: CA bundle and rules written by it, and a dry-run create passes through it."""


@dataclass(frozen=True)
class PodsReady:
    namespaces: tuple[str, ...]


@dataclass(frozen=True)
class ServicesReady:
    refs: tuple[str, ...]


@dataclass(frozen=True)
class ImagesPulled:
    """Every node each pre-pull DaemonSet ("ns/name") should run on has its pod Ready for the DaemonSet's current
    generation: its init container ran the image, so the kubelet has it (knfleet.desired.prepull)."""

    daemonsets: tuple[str, ...]


Check = CrdsEstablished | DeploymentsAvailable | ReplicasReady | WebhookServing | PodsReady | ServicesReady \
    | ImagesPulled


# --- the steps ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preflight:
    rights: tuple[Right, ...]
    release: str = releases.DEFAULT  # the Knative Serving release the run installs (or removes)
    min_kubernetes: str = releases.RELEASES[releases.DEFAULT].min_kubernetes  # that release's minimum Kubernetes
    task: str = "run"
    title: str = "Preflight: API, version >= 1.30, rights"


def preflight(rights: tuple[Right, ...], release: str) -> Preflight:
    """The preflight of a run for Knative Serving `release`: the operation compares the API server's version with
    the minimum given here (1.30.0 for 1.17, 1.31.0 for 1.18)."""
    minimum = releases.get(release).min_kubernetes
    return Preflight(rights, release, minimum, title=f"Preflight: API, version >= {minimum.rsplit('.', 1)[0]}, rights")


@dataclass(frozen=True)
class Capacity:
    """GPU capacity preflight: the model services' GPUs (initial/min scale plus one pod each for a rollout) against
    what the nodes can allocate, honouring nodeSelector and tolerations; refuse (or warn) before any change."""

    needs: tuple[capacity.Need, ...]
    mode: str  # refuse | warn
    owner: str = ownership.DEFAULT_OWNER  # whose other services' pods the run prunes (not competition)
    task: str = "run"
    title: str = "GPU capacity preflight (initial/min scale + one rollout pod per service)"


@dataclass(frozen=True)
class Lock:
    ttl: int
    wait: int
    task: str = "run"
    title: str = "Lock the cluster (Lease kube-system/knfleet-lock)"


@dataclass(frozen=True)
class Version:
    """Read the installed Knative Serving version before anything is applied; refuse a downgrade or a jump of
    more than one minor version (nothing changed); note an upgrade in progress (kube-system/knfleet-upgrade)."""

    target: str
    jobs: bool  # the bundle has serving-post-install-jobs.yaml (an upgrade needs it)
    task: str = "run"
    title: str = "Installed Knative version (upgrade path)"


@dataclass(frozen=True)
class Obsolete:
    """On an upgrade: delete what the old release had and the new one does not (knative.dev CRDs excepted)."""

    target: str
    desired: tuple[dict[str, Any], ...]
    kinds: tuple[tuple[str, str], ...]
    timeout: int
    task: str = "knative"
    title: str = "Delete objects of the old release that the new one does not have"


@dataclass(frozen=True)
class PostInstall:
    """On an upgrade: create the post-install Jobs (generateName), wait for them to complete, then note the upgrade
    done."""

    target: str
    jobs: tuple[dict[str, Any], ...]
    timeout: int
    task: str = "knative"
    title: str = "Post-install Jobs (serving-post-install-jobs.yaml: storage-version migration, cleanup)"


@dataclass(frozen=True)
class Apply:
    stage: str
    objects: tuple[dict[str, Any], ...]
    task: str
    title: str
    repair_config: bool = False  # the config stage: repairs a cluster whose Knative webhook crash-loops on it
    webhook_retry: float = 0  # seconds to keep retrying while Knative's webhook (re)starts
    # (apiVersion, kind, namespace) lists to read at once, concurrently, before this step: the first apply reads
    # everything the whole run looks at, so a converged run costs one round of parallel reads
    prefetch: tuple[tuple[str, str, str | None], ...] = ()
    notes: tuple[tuple[str, str], ...] = ()  # (object ref, a line said when it is applied): what knfleet adds


@dataclass(frozen=True)
class Gate:
    check: Check
    timeout: int
    task: str
    title: str


@dataclass(frozen=True)
class Prune:
    """Delete this owner's model services that group data no longer has (only those knfleet's field manager
    applied). Planned only when group data has `models`; `remove_all` when it is an empty list."""

    selector: str
    keep: tuple[str, ...]
    timeout: int
    owner: str = ownership.DEFAULT_OWNER
    remove_all: bool = False
    task: str = "services"
    title: str = "Delete model services removed from group data"


@dataclass(frozen=True)
class PrunePrepull:
    """Delete knfleet's pre-pull DaemonSets (of this owner; of every owner on uninstall) that the models no longer
    want (a model removed, or its prepull turned off), each only when knfleet's field manager applied it."""

    selector: str
    keep: tuple[str, ...]  # "ns/name" of the DaemonSets the run applies
    timeout: int
    task: str = "services"
    title: str = "Delete pre-pull DaemonSets no model needs any more"


@dataclass(frozen=True)
class Prepulled:
    """The gate of the pre-pull: every pre-pull DaemonSet Ready on all its nodes (knfleet.kube.readiness
    `images_pulled`), or, at the timeout, the cluster fails with PrepullFailed naming each node and the kubelet's
    reason; the nodes that have each image are said and kept in the report."""

    check: ImagesPulled
    timeout: int
    task: str = "services"
    title: str = "Pre-pulled images on every eligible node (DaemonSets Ready)"


@dataclass(frozen=True)
class Own:
    """Before the model services are applied: refuse to take over a Knative Service knfleet did not create (or
    another owner's), naming it and its manager, unless its model says `adopt: true`; create the model namespaces
    that are missing (an existing namespace is used as it is, never relabelled)."""

    owner: str
    services: tuple[str, ...]
    adopt: tuple[str, ...]
    namespaces: tuple[str, ...]
    task: str = "services"
    title: str = "Model services: namespaces, and no service knfleet does not own"


@dataclass(frozen=True)
class SmokeTarget:
    ref: str
    model: str
    host: str
    cluster_local: bool
    policy: str = "always"  # always | when-warm (never: no target)
    cold_deadline: float = 600  # seconds a service woken from zero may take: its revision's progress deadline


@dataclass(frozen=True)
class Smoke:
    services: tuple[SmokeTarget, ...]
    internal_url: str | None
    public_url: str | None
    deadline: int
    cold: bool = False  # wake services at zero on purpose (--smoke-cold) and report the cold start
    via: str = "port-forward"  # how kourier-internal is reached: port-forward | exec (from the proxy's pod)
    proxy: bool = True  # public services also through the proxy's external address, when it has one
    proxy_node_address: str | None = None  # where the proxy's NodePort is reached (host data)
    cluster_domain: str = "cluster.local"
    before_upgrade: str | None = None  # a target version: only while upgrading to it, before anything is applied
    task: str = "smoke"
    title: str = "Smoke test: POST /v1/chat/completions"


@dataclass(frozen=True)
class Rollout:
    """A model service whose new versions roll out progressively (knfleet.desired.progressive): its first version
    deployed as `stable`; a changed one checked dark, then step by step against the running one, promoted or
    rolled back; an unchanged one left alone."""

    service: dict[str, Any]  # the rendered Knative Service, its template named <service>-<hash>
    settings: progressive.Rollout
    model: str  # the served model name the check requests ask for
    cluster_local: bool
    entry: Smoke  # how the checks reach the tag hosts: the smoke test's ways (kourier-internal, exec, URLs)
    wait: int  # how long a new revision may take to be Ready (its progress deadline and a minute)
    gpus_per_pod: int = 0
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[dict[str, Any], ...] = ()
    retry: bool = False  # rollout_retry: a version rolled back before may be rolled out again
    prometheus_url: str | None = None
    gpu_preflight: str = "refuse"
    task: str = "services"
    title: str = ""
    notes: str = ""  # a service of model_manifests: what knfleet adds to it (said when it rolls out)

    @property
    def ref(self) -> str:
        return f"{self.service['metadata']['namespace']}/{self.service['metadata']['name']}"


@dataclass(frozen=True)
class Rollback:
    """Put a progressive model service back on its previous version (tag `previous`) at 100 % (`--data
    rollback=<service>`, `knfleet rollback`)."""

    ref: str
    task: str = "services"
    title: str = ""


@dataclass(frozen=True)
class Guard:
    selector: str
    force: bool
    foreign: str = "refuse"  # uninstall_foreign: refuse | delete (objects knfleet did not create in NAMESPACES)
    release: tuple[dict[str, Any], ...] = ()  # what the uninstall deletes (its own objects in those namespaces)
    task: str = "uninstall"
    title: str = "No Knative object knfleet did not make would be lost"


@dataclass(frozen=True)
class DeleteServices:
    selector: str
    force: bool
    timeout: int
    task: str = "uninstall"
    title: str = "Delete knfleet's Knative Services (controllers still running)"


@dataclass(frozen=True)
class Delete:
    stage: str
    objects: tuple[dict[str, Any], ...]
    timeout: int
    task: str = "uninstall"
    title: str = ""


@dataclass(frozen=True)
class Removed:
    timeout: int
    task: str = "uninstall"
    title: str = "Nothing of Knative remains"


Step = Preflight | Capacity | Lock | Version | Apply | Gate | Obsolete | PostInstall | Prune | Own | Smoke | Rollout \
    | Rollback | Guard | DeleteServices | Delete | Removed | Prepulled | PrunePrepull


@dataclass(frozen=True)
class Desired:
    """Everything a run wants on one cluster, checked: the input of the plan."""

    settings: settings.InstallSettings
    bundle: bundle.Bundle
    models: tuple[models.Model | manifests.ManifestService, ...]  # group data `models`, then `model_manifests`
    stages: tuple[render.Stage, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    jobs: tuple[dict[str, Any], ...] = ()  # serving-post-install-jobs.yaml's Jobs (created on upgrades)
    models_given: bool = True  # group data has `models` (absent: no prune at all; [] removes every service)

    @property
    def action(self) -> str:
        return self.settings.action


# --- checks shared with `knfleet lint` ------------------------------------------------------------------------------
def with_model_features(cfg: settings.InstallSettings, found: list[models.Model]) -> settings.InstallSettings:
    """The config-features flags the models need turned on, unless group data sets the flag itself (then an
    explicit `disabled` stays, and lint reports the model field it refuses)."""
    return dataclasses.replace(cfg, features={**models.needed_features(found), **cfg.features})


def cluster_config(cfg: settings.InstallSettings) -> lint.ClusterConfig:
    """The cluster configuration a run installs, as lint sees it (one function for the deploy and `knfleet lint`)."""
    return lint.ClusterConfig(autoscaler=cfg.autoscaler, defaults=cfg.defaults, features=cfg.features,
                              deployment=cfg.deployment, proxy_timeout_seconds=render.proxy_timeout(cfg),
                              release=cfg.knative_version)


def lint_models(where: str, cfg: settings.InstallSettings, found: list[models.Model]) -> list[lint.Problem]:
    return [p for m in found for p in lint.lint_service(models.render_service(m), cluster_config(cfg), where)]


def check_models(host_name: str, cfg: settings.InstallSettings, found: list[models.Model]) -> list[str]:
    """Lint the rendered services with the configuration knfleet installs: errors stop the run; the warnings."""
    problems = lint_models(f"group data of {host_name} (models)", cfg, found)
    errors = [str(p) for p in problems if p.severity == "error"]
    if errors:
        raise LintFailed("lint found errors Knative would reject:\n  " + "\n  ".join(errors))
    return [str(p) for p in problems]


def check_config(cfg: settings.InstallSettings, b: bundle.Bundle) -> list[str]:
    """Knative's config webhook verdict on the ConfigMaps as installed: errors stop the run; the warnings."""
    problems = settings.knative_problems(render.config_maps(b, cfg), cfg.knative_version)
    errors = [str(p) for p in problems if p.severity == "error"]
    if errors:
        raise settings.SettingsError("\n".join(errors))
    return [f"warning: {p}" for p in problems]


def with_manifests(cfg: settings.InstallSettings, data: Any, found: list[models.Model]
                   ) -> tuple[settings.InstallSettings, manifests.Manifests]:
    """Group data `model_manifests` read (once) and checked as `knfleet lint FILE` checks each file, with the
    config-features flag what knfleet adds to them needs (the GPU toleration; none where group data disables it)."""
    files = manifests.documents(data.get("model_manifests"))
    flags = manifests.needed_features(files)
    cfg = dataclasses.replace(cfg, features={**flags, **cfg.features})
    return cfg, manifests.load(files, data.get("model_manifest_settings"), cluster_config(cfg), found)


def desired(host_name: str, data: Any, bundle_loader: Any = bundle.load) -> Desired:
    """Check the data, verify the bundle, lint and render; raise an InputError before any change when anything is
    wrong."""
    cfg = settings.from_data(data)
    found = models.from_data(data.get("models"))
    given = data.get("models") is not None
    cfg = with_model_features(cfg, found)
    mine = manifests.Manifests()
    if cfg.action == "install":
        cfg, mine = with_manifests(cfg, data, found)
    b = bundle_loader(cfg.knative_version, cfg.bundle_dir, cfg.optional_files, None, cfg.bundle_files) \
        if cfg.bundle_files else bundle_loader(cfg.knative_version, cfg.bundle_dir, cfg.optional_files)
    jobs: tuple[dict[str, Any], ...] = ()
    if cfg.action == "install":
        warnings = check_config(cfg, b) + check_models(host_name, cfg, found) + list(mine.warnings)
        stages = render.install_stages(b, cfg)
        if found or mine.services:
            stages.append(render.Stage("services", tuple(owned_stage(models.render_manifest(found, cfg.owner), mine,
                                                                     cfg.owner))))
            stages += prepull_stage(cfg, stages, (*found, *mine.services))
        if upgrade.JOBS_FILE in b.files:
            jobs = tuple(render.images(j, cfg) for j in
                         upgrade.post_install_jobs(render.load_docs(b.text(upgrade.JOBS_FILE))))
        warnings += image_warnings(cfg, stages, found)
        warnings += ha.pdb_warnings([o for s in stages for o in s.objects], cfg.ha_replicas)
    else:
        warnings = []
        stages = render.uninstall_stages(b, cfg)
    given = given or data.get("model_manifests") is not None
    d = Desired(cfg, b, (*found, *mine.services), tuple(stages), tuple(warnings), jobs, given)
    if cfg.action == "install" and cfg.run.rollback:
        rollback_model(d)
    for name in cfg.run.rollout_retry:
        if not any(name in (m.name, m.ref) and m.rollout.progressive for m in d.models):
            raise InputError(f"rollout_retry: {name!r} is not allowed; use a model service of this cluster whose "
                             "rollout strategy is progressive")
    return d


# --- the plans -------------------------------------------------------------------------------------------------------
STAGE_TITLES = {
    "crds": ("knative", "Knative CRDs (serving-crds.yaml)"),
    "config": ("knative", "Knative configuration (config-* ConfigMaps)"),
    "core": ("knative", "Knative Serving core (serving-core.yaml)"),
    "kourier": ("kourier", "Kourier (kourier.yaml)"),
    "proxy": ("proxy", "knative-nginx proxy"),
    "services": ("services", "Model services (Knative Services)"),
    "prepull": ("services", "Pre-pull images on the GPU nodes (DaemonSets)"),
}


RELEASE_STAGES = ("crds", "config", "core", "kourier")


def prepulls(m: models.Model | manifests.ManifestService, cfg: settings.InstallSettings) -> bool:
    """Whether a model service's image is pulled first: its own `prepull`, else group data's."""
    return cfg.prepull if m.prepull is None else m.prepull


def prepull_stage(cfg: settings.InstallSettings, stages: list[render.Stage],
                  found: tuple[models.Model | manifests.ManifestService, ...]) -> list[render.Stage]:
    """The pre-pull DaemonSets (knfleet.desired.prepull) of the model services with prepull on, made from their
    rendered Knative Services, and the queue-proxy image's from the config stage as installed."""
    wanted = {m.ref for m in found if prepulls(m, cfg)}
    by_ref = {readiness_ref(o): o for s in stages if s.name == "services" for o in s.objects
              if o.get("kind") == "Service"}
    services = [by_ref[r] for r in by_ref if r in wanted]
    if not services:
        return []
    queue = prepull.queue_image(next((s.objects for s in stages if s.name == "config"), ()))
    daemonsets = prepull.objects(services, queue, cfg.owner, cfg.image_mirror, cfg.image_pull_secrets)
    # a namespace model_manifests declare is applied with the services, after the pre-pull: applied here first too
    # (the same object under the same field manager: the two applies agree)
    wanted_ns = {o["metadata"]["namespace"] for o in daemonsets}
    declared = [o for s in stages if s.name == "services" for o in s.objects
                if o.get("kind") == "Namespace" and o["metadata"]["name"] in wanted_ns]
    return [render.Stage("prepull", tuple(declared + daemonsets))]


def prepull_wait(d: Desired) -> int:
    """How long the pre-pull may take: host data `prepull_timeout`, else as long as the model services may take."""
    return d.settings.run.prepull_timeout or model_wait(d)


def image_warnings(cfg: settings.InstallSettings, stages: list[render.Stage], found: list[models.Model]) -> list[str]:
    """A floating Envoy tag left unpinned, and images that still point at a registry listed as unreachable."""
    out = []
    objects = [o for s in stages for o in s.objects]
    for o in objects:
        for where, image in mirror.images_of(o):
            if cfg.image_mirror and mirror.floating(image):
                out.append(f"warning: {render.ref(o)} {where}: {image} is a floating tag (it moves, and a mirror "
                           "copies one moment of it); pin it (envoy_image for Kourier's Envoy: a tag with a digest)")
    if cfg.unreachable_registries:
        services = [models.render_service(m) for m in found]
        for name, where, image in mirror.unreachable([*objects, *services], cfg.unreachable_registries):
            out.append(f"warning: {name} {where}: {image} points at {mirror.registry_of(image)}, which "
                       "unreachable_registries lists (set image_mirror, or the service's image)")
    return out


def gpu_needs(d: Desired) -> tuple[capacity.Need, ...]:
    """The model services' GPU needs, from the rendered services (initial-scale default: the cluster's)."""
    try:
        initial = int(d.settings.autoscaler.get("initial-scale", "1"))
    except ValueError:
        initial = 1
    needs = tuple(capacity.need_of(o, initial) for s in d.stages if s.name == "services" for o in s.objects
                  if o.get("kind") == "Service")
    return tuple(n for n in needs if n.gpus_per_pod > 0)


def smoke_targets(d: Desired) -> tuple[SmokeTarget, ...]:
    domain, local = d.settings.domain, d.settings.cluster_domain
    return tuple(
        SmokeTarget(m.ref, m.served_model_name,
                    f"{m.name}.{m.namespace}.svc.{local}" if m.cluster_local or not domain
                    else f"{m.name}.{m.namespace}.{domain}", m.cluster_local, m.smoke_policy,
                    m.deadline_s(d.settings.deployment.get("progress-deadline", "600s")))
        for m in d.models if m.smoke_policy != "never")


def model_wait(d: Desired) -> int:
    """How long the model services may take to be Ready: host data `model_wait_timeout`, else a minute more than
    the longest progress deadline of the models (after it, Knative itself reports the revision failed)."""
    if d.settings.run.model_wait_timeout is not None:
        return d.settings.run.model_wait_timeout
    cluster_default = d.settings.deployment.get("progress-deadline", "600s")
    return int(max((m.deadline_s(cluster_default) for m in d.models), default=540)) + 60


GATE_READS: tuple[tuple[str, str, str | None], ...] = (
    *((v, k, ns) for ns in NAMESPACES for v, k in (("apps/v1", "Deployment"), ("v1", "Pod"))),
    ("v1", "Node", None), ("serving.knative.dev/v1", "Service", None),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", None),
)


def prefetch(d: Desired) -> tuple[tuple[str, str, str | None], ...]:
    """Every list a converged install run reads: its objects' kinds per namespace, and the gates' reads."""
    reads = {(o["apiVersion"], o["kind"], (o.get("metadata") or {}).get("namespace")) for s in d.stages
             for o in s.objects}
    return tuple(sorted(reads | set(GATE_READS), key=lambda r: (r[0], r[1], r[2] or "")))


def install(d: Desired) -> list[Step]:
    cfg, run = d.settings, d.settings.run
    t = cfg.wait_timeout
    stage = {s.name: s for s in d.stages}

    def apply(name: str, **kw: Any) -> Apply:
        task, title = STAGE_TITLES[name]
        return Apply(name, stage[name].objects, task, title, **kw)

    targets = smoke_targets(d)
    steps: list[Step] = [preflight(install_rights(d), cfg.knative_version)]
    needs = gpu_needs(d)
    if needs and run.gpu_preflight != "off":
        steps.append(Capacity(needs, run.gpu_preflight, cfg.owner))
    steps += [
        Lock(run.lock_ttl, run.lock_wait),
        Version(cfg.knative_version, bool(d.jobs)),
    ]
    if d.models and run.smoke and targets:
        steps.append(Smoke(targets, run.smoke_internal_url, run.smoke_url, run.smoke_deadline, run.smoke_cold,
                           run.smoke_via, run.smoke_proxy, run.proxy_node_address, d.settings.cluster_domain,
                           before_upgrade=cfg.knative_version, title="Smoke test before the upgrade"))
    release = tuple(o for s in d.stages if s.name in RELEASE_STAGES for o in s.objects)
    steps += [
        apply("crds", prefetch=prefetch(d)),
        Gate(CrdsEstablished(), t, "knative", "Knative CRDs Established"),
        apply("config", repair_config=True, webhook_retry=float(t)),
        apply("core"),
        Gate(DeploymentsAvailable("knative-serving"), t, "knative", "knative-serving Deployments Available"),
        Gate(WebhookServing(), t, "knative", "Knative webhook answers (CA bundle, rules, dry-run create of a Service)"),
        # Kourier and the proxy both applied, then both waited for (as the runbook does): their pods start together
        apply("kourier"),
        apply("proxy"),
        Gate(DeploymentsAvailable("kourier-system"), t, "proxy", "kourier-system Deployments Available"),
        Gate(DeploymentsAvailable("knative-nginx"), t, "proxy", "knative-nginx Deployments Available"),
        Gate(DeploymentsAvailable("knative-serving"), t, "run", "knative-serving Deployments Available (with Kourier)"),
    ]
    if cfg.ha_replicas:
        steps.append(Gate(ReplicasReady(("knative-serving", "kourier-system"), cfg.ha_replicas), t, "run",
                          f"Control plane at {cfg.ha_replicas} Ready replicas (ha_replicas)"))
    steps += [
        Gate(PodsReady(NAMESPACES), t, "run", "Every pod Ready (knative-serving, kourier-system, knative-nginx)"),
        Obsolete(cfg.knative_version, release, tuple(sorted({(o["apiVersion"], o["kind"]) for o in release})), t),
        PostInstall(cfg.knative_version, d.jobs, t),
    ]
    refs = tuple(m.ref for m in d.models)
    plain = tuple(m.ref for m in d.models if not m.rollout.progressive)
    if d.models:  # knfleet's own only; then the services a new version replaces at once (progressive ones roll out)
        steps.append(Own(cfg.owner, refs, tuple(m.ref for m in d.models if m.adopt), own_namespaces(d)))
        if "prepull" in stage:  # the images on the GPU nodes before any revision (or rollout) needs them
            steps += [apply("prepull"), Prepulled(ImagesPulled(prepull_refs(d)), prepull_wait(d))]
        task, title = STAGE_TITLES["services"]
        steps.append(Apply("services", tuple(o for o in stage["services"].objects if not progressive_service(d, o)),
                           task, title, webhook_retry=float(t), notes=manifest_notes(d)))
    if d.models_given:  # no `models` in group data: nothing is pruned (an empty list removes every service)
        steps.append(Prune(f"{MANAGED},{ownership.OWNER}={cfg.owner}", refs, model_wait(d), cfg.owner,
                           remove_all=not d.models))
        steps.append(PrunePrepull(prepull.selector(cfg.owner), prepull_refs(d), t))
    if plain:
        steps.append(Gate(ServicesReady(plain), model_wait(d), "services",
                          "Model services Ready (observedGeneration, latest revision)"))
    steps += rollouts(d)
    if d.models and run.smoke and targets:
        steps.append(smoke_step(d, targets))
    return steps


def prepull_refs(d: Desired) -> tuple[str, ...]:
    """The pre-pull DaemonSets ("ns/name") the run applies."""
    return tuple(readiness_ref(o) for s in d.stages if s.name == "prepull" for o in s.objects
                 if o.get("kind") == "DaemonSet")


def owned_stage(model_objects: list[dict[str, Any]], mine: manifests.Manifests, owner: str) -> list[dict[str, Any]]:
    """The services stage: the Namespaces the manifests themselves hold (applied as their users wrote them), then
    every model service with the owner label (knfleet.dev/owner). Namespaces knfleet would make for the services are
    not applied: the Own step creates a missing one and leaves an existing one as it is."""
    declared = {ns["metadata"]["name"] for ns in mine.namespaces}
    out = []
    for o in manifests.stage_objects(model_objects, mine):
        meta = o["metadata"]
        if o.get("kind") == "Namespace":
            if meta["name"] in declared:
                out.append(o)
            continue
        labels = meta.get("labels") or {}
        if labels.get(ownership.OWNER, owner) != owner:
            raise InputError(f"model_manifests: Service {meta.get('namespace')}/{meta['name']}: metadata.labels"
                             f"[{ownership.OWNER}] = {labels[ownership.OWNER]!r} is not allowed; knfleet sets it to "
                             f"the owner ({owner!r}, group data `owner`): remove the label or set `owner` to it")
        out.append({**o, "metadata": {**meta, "labels": {**labels, ownership.OWNER: owner}}})
    return out


def own_namespaces(d: Desired) -> tuple[str, ...]:
    """The namespaces the Own step creates when missing: the model services' own, but not those a manifest holds
    (applied with the services) nor `default`."""
    declared = {o["metadata"]["name"] for s in d.stages if s.name == "services" for o in s.objects
                if o.get("kind") == "Namespace"}
    return tuple(sorted({m.namespace for m in d.models} - declared - set(manifests.ALWAYS_THERE)))


def manifest_notes(d: Desired) -> tuple[tuple[str, str], ...]:
    """What knfleet adds to each service of `model_manifests` (said when the service is applied or rolled out)."""
    return tuple((f"Service/{m.ref}", m.note()) for m in d.models if isinstance(m, manifests.ManifestService))


def smoke_step(d: Desired, targets: tuple[SmokeTarget, ...]) -> Smoke:
    run = d.settings.run
    return Smoke(targets, run.smoke_internal_url, run.smoke_url, run.smoke_deadline, run.smoke_cold, run.smoke_via,
                 run.smoke_proxy, run.proxy_node_address, d.settings.cluster_domain)


def progressive_service(d: Desired, obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    return obj.get("kind") == "Service" and any(
        m.rollout.progressive and m.name == meta.get("name") and m.namespace == meta.get("namespace") for m in d.models)


def rollouts(d: Desired) -> list[Step]:
    """One Rollout step per progressive model service, in group data's order."""
    run, out = d.settings.run, []
    services = {readiness_ref(o): o for s in d.stages if s.name == "services" for o in s.objects
                if o.get("kind") == "Service"}
    for m in d.models:
        if not m.rollout.progressive:
            continue
        r = m.rollout
        need = capacity.need_of(services[m.ref])
        out.append(Rollout(
            services[m.ref], r, m.served_model_name, m.cluster_local, smoke_step(d, ()), model_wait(d),
            need.gpus_per_pod, tuple(sorted(need.node_selector.items())), need.tolerations,
            retry=m.name in run.rollout_retry or m.ref in run.rollout_retry, prometheus_url=run.prometheus_url,
            gpu_preflight=run.gpu_preflight, notes=m.note() if isinstance(m, manifests.ManifestService) else "",
            title=f"Roll out {m.ref} progressively ({', '.join(f'{p} %' for p in r.steps)}; bake "
                  f"{r.bake_s:g}s)"))
    return out


def readiness_ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def rollback(d: Desired) -> list[Step]:
    """Preflight, lock, the previous version back at 100 %, and its smoke test."""
    run = d.settings.run
    target = rollback_model(d)
    steps: list[Step] = [preflight(install_rights(d), d.settings.knative_version), Lock(run.lock_ttl, run.lock_wait),
                         Rollback(target.ref, title=f"Roll back {target.ref} to its previous version")]
    smoke = tuple(s for s in smoke_targets(d) if s.ref == target.ref)
    if run.smoke and smoke:
        steps.append(smoke_step(d, smoke))
    return steps


def rollback_model(d: Desired) -> models.Model | manifests.ManifestService:
    """The model service `rollback` names: a progressive one of this cluster's group data (bad input otherwise)."""
    wanted = d.settings.run.rollback or ""
    found = [m for m in d.models if wanted in (m.name, m.ref)]
    if not found or not found[0].rollout.progressive:
        names = ", ".join(m.ref for m in d.models if m.rollout.progressive) or "none"
        raise InputError(f"rollback: {wanted!r} is not allowed; use a model service of this cluster whose rollout "
                         f"strategy is progressive (here: {names})")
    return found[0]


def uninstall(d: Desired) -> list[Step]:
    t, force = d.settings.wait_timeout, d.settings.run.force_uninstall
    steps: list[Step] = [
        preflight(uninstall_rights(d), d.settings.knative_version),
        Lock(d.settings.run.lock_ttl, d.settings.run.lock_wait),
        Guard(MANAGED, force, d.settings.run.uninstall_foreign,
              tuple(o for s in d.stages for o in s.objects if (o.get("metadata") or {}).get("namespace")
                    in NAMESPACES)),
        DeleteServices(MANAGED, force, t, title=(
            "Delete every Knative Service, DomainMapping, Route, Configuration (force_uninstall)" if force
            else DeleteServices.title)),
    ]
    steps.append(PrunePrepull(prepull.selector(None), (), t, task="uninstall",
                              title="Delete knfleet's pre-pull DaemonSets"))
    steps += [Delete(s.name, s.objects, t, title=f"Delete {s.name}") for s in d.stages]
    steps.append(Removed(t))
    return steps


def plan(d: Desired) -> list[Step]:
    if d.action != "install":
        return uninstall(d)
    return rollback(d) if d.settings.run.rollback else install(d)
