"""Lint Knative Services before they reach a cluster.

Errors are exactly what the target Knative Serving release's admission webhook rejects (1.17: ../shared/knative/
NOTES.md §4, §5; 1.18 adds CSI volumes and volumeMounts[].mountPropagation, each behind a config-features flag), and
what it accepts but makes a revision whose Deployment Kubernetes refuses (it can never start); warnings are what
Knative accepts but will hurt a GPU service. Pure: no cluster.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from knfleet.desired import goduration, releases

PREFIX = "autoscaling.knative.dev/"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
INT32_MAX = 2147483647
RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
PORT_NAMES = {"", "http1", "h2c"}
ACTIVATOR_GRACE_SECONDS = 600
# canonical key -> legacy camelCase alias (the canonical key wins when both are present)
ALIASES = {
    "target-utilization-percentage": "targetUtilizationPercentage",
    "target-burst-capacity": "targetBurstCapacity",
    "initial-scale": "initialScale",
    "min-scale": "minScale",
    "max-scale": "maxScale",
    "scale-down-delay": "scaleDownDelay",
    "scale-to-zero-pod-retention-period": "scaleToZeroPodRetentionPeriod",
    "panic-window-percentage": "panicWindowPercentage",
    "panic-threshold-percentage": "panicThresholdPercentage",
    "metric-aggregation-algorithm": "metricAggregationAlgorithm",
}
KNOWN = ("class", "metric", "target", "window", "activation-scale", *ALIASES, *ALIASES.values())
# pod spec field -> config-features flag it needs
FEATURE_FIELDS = {
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "tolerations": "kubernetes.podspec-tolerations",
    "affinity": "kubernetes.podspec-affinity",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "securityContext": "kubernetes.podspec-securitycontext",
    "initContainers": "kubernetes.podspec-init-containers",
    "schedulerName": "kubernetes.podspec-schedulername",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "hostIPC": "kubernetes.podspec-hostipc",
    "hostPID": "kubernetes.podspec-hostpid",
    "hostNetwork": "kubernetes.podspec-hostnetwork",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
}
VOLUME_FEATURES = {
    "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
    "hostPath": "kubernetes.podspec-volumes-hostpath",
    "emptyDir": "kubernetes.podspec-volumes-emptydir",
}
# 1.18: volumes[].csi (knfleet.desired.releases.CSI_FLAG); a volume kind needs its flag "enabled" ("allowed" lets the
# field through the field mask, but k8s_validation.go validateVolume still refuses it).
NEW_VOLUME_KINDS = {"csi": releases.CSI_FLAG}
NEW_FIELD_NAMES = {releases.CSI_FLAG: "CSI volumes (volumes[].csi)",
                   releases.MOUNT_PROPAGATION_FLAG: "volumeMounts[].mountPropagation"}
# Volumes whose mounts may be writable (k8s_validation.go validateVolumeMounts); every other mount must be readOnly.
WRITABLE_VOLUMES = ("emptyDir", "persistentVolumeClaim")
MOUNT_PROPAGATION = ("None", "HostToContainer")
DEFAULT_FEATURES = {"kubernetes.podspec-volumes-emptydir": "enabled"}
DEFAULT_SKIP_REGISTRIES = "kind.local,ko.local,dev.local"  # config-deployment's default


@dataclass(frozen=True)
class ClusterConfig:
    """The ConfigMaps that change the webhook's verdict (Knative's defaults when absent)."""

    autoscaler: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    features: dict[str, str] = field(default_factory=dict)
    deployment: dict[str, str] = field(default_factory=dict)
    max_gpus_per_node: int | None = None  # known when linting against a real cluster
    proxy_timeout_seconds: int | None = None
    release: str = releases.DEFAULT  # the Knative Serving release whose webhook decides

    def feature(self, flag: str) -> str:
        """The flag as Knative reads it: enabled, allowed or disabled (any case; anything else: the default)."""
        value = str({**DEFAULT_FEATURES, **self.features}.get(flag, "disabled")).lower()
        return value if value in ("enabled", "allowed", "disabled") else \
            DEFAULT_FEATURES.get(flag, "disabled")

    def feature_on(self, flag: str) -> bool:
        return self.feature(flag) in ("enabled", "allowed")

    @property
    def pod_autoscaler_class(self) -> str:
        return self.autoscaler.get("pod-autoscaler-class", KPA)

    @property
    def allow_zero_initial_scale(self) -> bool:
        return self.autoscaler.get("allow-zero-initial-scale", "false").lower() == "true"

    @property
    def max_scale_limit(self) -> int:
        return int(self.autoscaler.get("max-scale-limit", "0"))

    @property
    def max_revision_timeout(self) -> int:
        return int(self.defaults.get("max-revision-timeout-seconds", "600"))

    @property
    def container_concurrency_max(self) -> int:
        return int(self.defaults.get("container-concurrency-max-limit", "1000"))

    @property
    def allow_cc_zero(self) -> bool:
        return self.defaults.get("allow-container-concurrency-zero", "true").lower() == "true"

    @classmethod
    def from_configmaps(cls, docs: list[dict[str, Any]], **extra: Any) -> ClusterConfig:
        """From ConfigMap objects (config-autoscaler, config-defaults, config-features, config-deployment)."""
        data: dict[str, dict[str, str]] = {}
        for d in docs:
            if isinstance(d, dict) and d.get("kind") == "ConfigMap":
                data[d["metadata"]["name"]] = {k: str(v) for k, v in (d.get("data") or {}).items()
                                               if not k.startswith("_")}
        return cls(autoscaler=data.get("config-autoscaler", {}), defaults=data.get("config-defaults", {}),
                   features=data.get("config-features", {}), deployment=data.get("config-deployment", {}), **extra)


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" | "warning"
    file: str
    service: str
    path: str
    value: Any
    message: str

    def __str__(self) -> str:
        shown = "" if self.value is None else f" = {self.value!r}"
        return f"{self.file}: {self.severity}: {self.service}: {self.path}{shown}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Collector:
    def __init__(self, file: str, service: str) -> None:
        self.file, self.service = file, service
        self.problems: list[Problem] = []

    def error(self, path: str, value: Any, message: str) -> None:
        self.problems.append(Problem("error", self.file, self.service, path, value, message))

    def warn(self, path: str, value: Any, message: str) -> None:
        self.problems.append(Problem("warning", self.file, self.service, path, value, message))


def _ann_path(where: str, key: str) -> str:
    return f"{where}[{key}]"


def _float(c: _Collector, path: str, raw: str) -> float | None:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        c.error(path, raw, "invalid value: not a number")
        return None
    if math.isnan(v):
        # Knative's ParseFloat accepts NaN and it slips through every range check: accepted, but meaningless.
        c.warn(path, raw, "NaN is accepted by Knative but disables this setting's range checks; use a number")
        return None
    return v


def _int(c: _Collector, path: str, raw: str) -> int | None:
    text = str(raw).strip()
    if not (text.lstrip("+-").isdigit()):
        c.error(path, raw, "invalid value: not an integer")
        return None
    return int(text)


def _duration(c: _Collector, path: str, raw: str, low: float, high: float, whole_seconds: bool) -> float | None:
    try:
        secs = goduration.parse(str(raw))
    except goduration.DurationError as err:
        c.error(path, raw, f"{err}; allowed: a Go duration between {goduration.format_seconds(low)} "
                           f"and {goduration.format_seconds(high)}")
        return None
    if secs < low or secs > high:
        c.error(path, raw, f"out of range: allowed {goduration.format_seconds(low)} "
                           f"to {goduration.format_seconds(high)}")
        return None
    if whole_seconds and secs != int(secs):
        c.error(path, raw, "must be specified with at most second precision (whole seconds)")
        return None
    return secs


def _lookup(ann: dict[str, str], key: str, where: str, c: _Collector) -> tuple[str | None, str | None]:
    """(value, path) of the canonical key, else its alias; warn when both are set and disagree."""
    canonical, alias = PREFIX + key, PREFIX + ALIASES[key] if key in ALIASES else None
    if canonical in ann:
        if alias and alias in ann and ann[alias] != ann[canonical]:
            c.warn(_ann_path(where, alias), ann[alias],
                   f"ignored: {canonical} is also set ({ann[canonical]!r}) and wins over the legacy alias")
        return ann[canonical], _ann_path(where, canonical)
    if alias and alias in ann:
        return ann[alias], _ann_path(where, alias)
    return None, None


def _check_annotations(ann: dict[str, str], where: str, cfg: ClusterConfig, c: _Collector) -> dict[str, Any]:
    got: dict[str, Any] = {}
    cls, p = _lookup(ann, "class", where, c)
    if cls is not None and cls.endswith(".knative.dev") and cls not in (KPA, HPA):
        c.error(p, cls, f"invalid value: allowed {KPA}, {HPA} or a custom class not ending in .knative.dev")
    effective_class = cls or cfg.pod_autoscaler_class
    metric, p = _lookup(ann, "metric", where, c)
    if metric is not None:
        if effective_class == KPA and metric not in ("concurrency", "rps"):
            c.error(p, metric, "invalid value for the KPA class: allowed concurrency, rps")
        elif effective_class == HPA and not metric:
            c.error(p, metric, "must not be empty for the HPA class (e.g. cpu, memory)")
    raw, p = _lookup(ann, "target", where, c)
    if raw is not None and (v := _float(c, p, raw)) is not None and v < 0.01:
        c.error(p, raw, "target should be at least 0.01")
    for key, low, high in (("target-utilization-percentage", 1, 100), ("panic-window-percentage", 1, 100),
                           ("panic-threshold-percentage", 110, 1000)):
        raw, p = _lookup(ann, key, where, c)
        if raw is not None and (v := _float(c, p, raw)) is not None and not low <= v <= high:
            c.error(p, raw, f"out of range: allowed {low} to {high}")
    raw, p = _lookup(ann, "target-burst-capacity", where, c)
    if raw is not None and (v := _float(c, p, raw)) is not None and v < 0 and v != -1:
        c.error(p, raw, "out of range: allowed >= 0, or -1 (unlimited)")
    raw, p = _lookup(ann, "initial-scale", where, c)
    if raw is not None and (v := _int(c, p, raw)) is not None:
        if v < 0:
            c.error(p, raw, "out of range: allowed >= 0")
        elif v == 0 and not cfg.allow_zero_initial_scale:
            c.error(p, raw, "=0 not allowed by cluster (config-autoscaler allow-zero-initial-scale is false)")
        else:
            got["initial"] = (v, p)
    raw, p = _lookup(ann, "min-scale", where, c)
    if raw is not None and (v := _int(c, p, raw)) is not None:
        if not 0 <= v <= INT32_MAX:
            c.error(p, raw, f"out of range: allowed 0 to {INT32_MAX}")
        else:
            got["min"] = (v, p)
    raw, p = _lookup(ann, "max-scale", where, c)
    if raw is not None and (v := _int(c, p, raw)) is not None:
        limit = cfg.max_scale_limit
        if not 0 <= v <= INT32_MAX:
            c.error(p, raw, f"out of range: allowed 0 to {INT32_MAX}")
        elif limit > 0 and not 1 <= v <= limit:
            c.error(p, raw, f"out of range: allowed 1 to {limit} (config-autoscaler max-scale-limit)")
        else:
            got["max"] = (v, p)
            if v != 0 and "min" in got and v < got["min"][0]:
                c.error(p, raw, f"max-scale={v} is less than min-scale={got['min'][0]}")
    raw, p = _lookup(ann, "activation-scale", where, c)
    if raw is not None and (v := _int(c, p, raw)) is not None:
        if v < 2:
            c.error(p, raw, "activation-scale must be greater than 1")
        if "min" in got and v < got["min"][0]:
            c.error(p, raw, f"activation-scale={v} is less than min-scale={got['min'][0]}")
        if "max" in got and got["max"][0] != 0 and v > got["max"][0]:
            c.error(p, raw, f"activation-scale={v} is greater than max-scale={got['max'][0]}")
    raw, p = _lookup(ann, "scale-down-delay", where, c)
    if raw is not None:
        _duration(c, p, raw, 0, 3600, whole_seconds=True)
    raw, p = _lookup(ann, "scale-to-zero-pod-retention-period", where, c)
    if raw is not None:
        _duration(c, p, raw, 0, 3600, whole_seconds=False)
    raw, p = _lookup(ann, "window", where, c)
    if raw is not None:
        _duration(c, p, raw, 6, 3600, whole_seconds=True)
    raw, p = _lookup(ann, "metric-aggregation-algorithm", where, c)
    if raw is not None and cls == KPA and raw not in ("linear", "weighted-exponential", "weightedExponential"):
        c.error(p, raw, "invalid value: allowed linear, weighted-exponential, weightedExponential")
    # Knative accepts it, but it will hurt: the service starts above its ceiling.
    if "initial" in got and "max" in got and got["max"][0] != 0 and got["initial"][0] > got["max"][0]:
        c.warn(got["initial"][1], got["initial"][0], f"initial-scale is above max-scale={got['max'][0]}")
    _ignored_keys(ann, where, c)
    return got


@functools.lru_cache(maxsize=4096)
def _ignored_key(key: str) -> str | None:
    """Why an annotation key looks like an autoscaling setting Knative ignores (None when it does not). Cached:
    the services of a fleet share their keys, and the fuzzy match is the costly part of lint."""
    candidates = [PREFIX + k for k in KNOWN]
    if key.startswith(PREFIX):
        if key[len(PREFIX):] in KNOWN:
            return None
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.8)
        return "not an autoscaling setting Knative knows; it is ignored" + (
            f" (did you mean {close[0]}?)" if close else "")
    lowered = key.lower()
    if "scaling" in lowered or "autoscal" in lowered or difflib.get_close_matches(key, candidates, n=1, cutoff=0.85):
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        return "looks like an autoscaling setting but Knative ignores it" + (
            f" (did you mean {close[0]}?)" if close else "")
    return None


def _ignored_keys(ann: dict[str, str], where: str, c: _Collector) -> None:
    """Autoscaling-looking keys Knative will silently ignore, with the key they probably meant."""
    for key, value in ann.items():
        why = _ignored_key(key)
        if why:
            c.warn(_ann_path(where, key), value, why)


def _check_container(ctr: dict[str, Any], i: int, port_name: str, c: _Collector) -> None:
    base = f"spec.template.spec.containers[{i}]"
    if ctr.get("name") == "queue-proxy":
        c.error(f"{base}.name", "queue-proxy", "reserved container name")
    if "lifecycle" in ctr:
        c.error(f"{base}.lifecycle", None, "must not set the field(s): lifecycle")
    for j, env in enumerate(ctr.get("env") or []):
        if env.get("name") in RESERVED_ENV:
            c.error(f"{base}.env[{j}].name", env.get("name"), f"reserved environment variable; reserved: "
                                                               f"{', '.join(sorted(RESERVED_ENV))}")
        if "value" in env and any(s in env.get("name", "").upper() for s in ("TOKEN", "SECRET", "PASSWORD", "KEY")):
            c.warn(f"{base}.env[{j}].value", "<hidden>", "looks like a secret given inline; use valueFrom.secretKeyRef")
    for j, port in enumerate(ctr.get("ports") or []):
        number = port.get("containerPort")
        if number in RESERVED_PORTS:
            c.error(f"{base}.ports[{j}].containerPort", number,
                    f"reserved port; reserved: {', '.join(map(str, sorted(RESERVED_PORTS)))}")
        if port.get("name", "") not in PORT_NAMES:
            c.error(f"{base}.ports[{j}].name", port.get("name"), "invalid port name: allowed empty, http1 or h2c")
    for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = ctr.get(probe_name)
        if not probe:
            continue
        for handler in ("httpGet", "tcpSocket"):
            # Knative 1.17 checks only a *named* probe port (k8s_validation.go validateProbe): it must be the
            # container port's name. A number is accepted as it is.
            h = probe.get(handler) or {}
            if isinstance(h.get("port"), str) and h["port"] != port_name:
                c.error(f"{base}.{probe_name}.{handler}.port", h["port"],
                        f"Probe port must match container port: a named port must be {port_name!r}"
                        if port_name else "Probe port must match container port: the container port has no name; "
                                          "use its number or omit the port")
            # Knative 1.17 points readiness probes at the queue-proxy and fills the user port into liveness probes
            # (revision/resources/deploy.go rewriteUserLivenessProbe), not into startup probes: one without a port
            # reaches the Deployment as port 0, which Kubernetes refuses (the revision stays Deploying, an
            # InternalError event says why).
            if probe_name == "startupProbe" and handler in probe and h.get("port") in (None, 0, "", "0"):
                c.error(f"{base}.startupProbe.{handler}.port", h.get("port"),
                        "a startup probe needs its port: Knative fills it into readiness and liveness probes only, "
                        "and Kubernetes refuses the revision's Deployment with port 0 (the revision never starts); "
                        "set it to the container port, e.g. 8000")
        if probe_name == "readinessProbe" and probe.get("periodSeconds") == 0:
            for bad in ("failureThreshold", "timeoutSeconds"):
                if bad in probe:
                    c.error(f"{base}.readinessProbe.{bad}", probe[bad],
                            "must not be set when periodSeconds is 0 (aggressive probing)")


def _check_volumes(vols: list[dict[str, Any]], cfg: ClusterConfig, c: _Collector) -> dict[str, str]:
    """Each volume kind that needs a config-features flag (a kind of a later release is refused naming it); returns
    volume name -> its kind."""
    kinds: dict[str, str] = {}
    for i, vol in enumerate(vols):
        if not isinstance(vol, dict):
            continue
        kinds[str(vol.get("name"))] = next((k for k in vol if k != "name"), "")
        for kind, flag in {**VOLUME_FEATURES, **NEW_VOLUME_KINDS}.items():
            if kind not in vol:
                continue
            path = f"spec.template.spec.volumes[{i}].{kind}"
            if not releases.has_flag(cfg.release, flag):
                c.error(path, None, releases.field_not_in_release(NEW_FIELD_NAMES[flag], flag, cfg.release))
            elif cfg.feature(flag) != "enabled":
                c.error(path, None, f"{kind} volume support is disabled, but found {kind} volume {vol.get('name')} "
                                    f"(set config-features {flag} to enabled; \"{cfg.feature(flag)}\" is not enough "
                                    "for volumes)")
    return kinds


def _check_mounts(mounts: list[dict[str, Any]], base: str, volumes: dict[str, str], cfg: ClusterConfig,
                  c: _Collector) -> None:
    """readOnly where Knative requires it, and mountPropagation (1.18 and later, behind its flag)."""
    flag = releases.MOUNT_PROPAGATION_FLAG
    for j, m in enumerate(mounts):
        if not isinstance(m, dict):
            continue
        kind = volumes.get(str(m.get("name")))
        if kind is not None and kind not in WRITABLE_VOLUMES and not m.get("readOnly"):
            c.error(f"{base}[{j}].readOnly", m.get("readOnly"),
                    f"volume mount should be readOnly for this type of volume ({kind or 'no source'})")
        if "mountPropagation" not in m:
            continue
        path, value = f"{base}[{j}].mountPropagation", m["mountPropagation"]
        if not releases.has_flag(cfg.release, flag):
            c.error(path, value, releases.field_not_in_release(NEW_FIELD_NAMES[flag], flag, cfg.release))
            continue
        if cfg.feature(flag) != "enabled":
            c.error(path, value, f"Volume Mount Propagation support is disabled, but found volume mount "
                                 f"{m.get('name')} with mount propagation (set config-features {flag} to enabled)")
        if value not in MOUNT_PROPAGATION:
            c.error(path, value, "mount propagation should be set to None or HostToContainer")


def image_registry(image: str) -> str:
    """The registry Knative contacts to resolve a tag (go-containerregistry's rule: the first path part when it
    holds a '.' or ':', else Docker Hub, `index.docker.io`; `docker.io` is an alias of it)."""
    name = image.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first):
        return "index.docker.io" if first == "docker.io" else first
    return "index.docker.io"


def _check_tag_resolution(ctr: dict[str, Any], i: int, skipping: set[str], c: _Collector) -> None:
    image = str(ctr.get("image") or "")
    if not image or "@sha256:" in image:
        return
    registry = image_registry(image)
    if registry not in skipping:
        c.warn(f"spec.template.spec.containers[{i}].image", image,
               f"Knative resolves this tag to a digest by asking {registry}; where the cluster cannot reach it "
               f"the revision fails (ContainerMissing). Use a digest, or add {registry} to "
               "knative_deployment.registries-skipping-tag-resolving")


def _progress_deadline(ann: dict[str, str], cfg: ClusterConfig, c: _Collector) -> float | None:
    raw = ann.get("serving.knative.dev/progress-deadline")
    if raw is not None:
        return _duration(c, "spec.template.metadata.annotations[serving.knative.dev/progress-deadline]", raw,
                         1, 10 ** 9, whole_seconds=True)
    try:
        return goduration.parse(cfg.deployment.get("progress-deadline", "600s"))
    except goduration.DurationError:
        return 600.0


def lint_service(obj: dict[str, Any], cfg: ClusterConfig, file: str = "<input>") -> list[Problem]:
    """Problems of one Knative Service object."""
    meta = obj.get("metadata") or {}
    c = _Collector(file, f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}")
    if obj.get("apiVersion") != "serving.knative.dev/v1" or obj.get("kind") != "Service":
        return []
    for key in meta.get("annotations") or {}:
        if key.startswith(PREFIX):
            c.error(f"metadata.annotations[{key}]", meta["annotations"][key],
                    'autoscaling annotations must be put under "spec.template.metadata.annotations" to work')
    template = (obj.get("spec") or {}).get("template") or {}
    ann = {k: str(v) for k, v in ((template.get("metadata") or {}).get("annotations") or {}).items()}
    _check_annotations(ann, "spec.template.metadata.annotations", cfg, c)
    spec = template.get("spec") or {}
    cc = spec.get("containerConcurrency")
    if cc is not None:
        low = 0 if cfg.allow_cc_zero else 1
        if not isinstance(cc, int) or not low <= cc <= cfg.container_concurrency_max:
            c.error("spec.template.spec.containerConcurrency", cc,
                    f"out of range: allowed {low} to {cfg.container_concurrency_max}")
    timeout = spec.get("timeoutSeconds")
    if timeout is not None:
        if not isinstance(timeout, int) or not 0 <= timeout <= cfg.max_revision_timeout:
            c.error("spec.template.spec.timeoutSeconds", timeout,
                    f"out of range: allowed 0 to {cfg.max_revision_timeout} "
                    "(config-defaults max-revision-timeout-seconds)")
        elif cfg.proxy_timeout_seconds is not None and cfg.proxy_timeout_seconds < timeout:
            c.warn("spec.template.spec.timeoutSeconds", timeout,
                   f"the public proxy times out first ({cfg.proxy_timeout_seconds}s)")
    if cfg.max_revision_timeout >= ACTIVATOR_GRACE_SECONDS + 1:
        c.warn("config-defaults.max-revision-timeout-seconds", cfg.max_revision_timeout,
               f"not below the activator's terminationGracePeriodSeconds ({ACTIVATOR_GRACE_SECONDS}): requests "
               "can be cut when the activator restarts; raise its grace period too")
    for fld, flag in FEATURE_FIELDS.items():
        if fld in spec and not cfg.feature_on(flag):
            c.error(f"spec.template.spec.{fld}", None, f"must not set the field(s): {fld} "
                                                       f"(enable config-features {flag})")
    volumes = _check_volumes(spec.get("volumes") or [], cfg, c)
    containers = spec.get("containers") or []
    ports = [(i, p) for i, ctr in enumerate(containers) for p in ctr.get("ports") or []]
    if len(ports) > 1:
        c.error("spec.template.spec.containers[*].ports", len(ports), "exactly one container port is allowed "
                                                                      "across all containers")
    if len(containers) > 1 and not ports:
        c.error("spec.template.spec.containers[*].ports", 0, "with several containers exactly one must name its port")
    port_name = str(ports[0][1].get("name") or "") if len(ports) == 1 else ""
    gpus = 0
    startup_budget = 0.0
    skipping = {r.strip() for r in cfg.deployment.get("registries-skipping-tag-resolving",
                                                       DEFAULT_SKIP_REGISTRIES).split(",")}
    for i, ctr in enumerate(containers):
        _check_container(ctr, i, port_name, c)
        _check_mounts(ctr.get("volumeMounts") or [], f"spec.template.spec.containers[{i}].volumeMounts", volumes,
                      cfg, c)
        _check_tag_resolution(ctr, i, skipping, c)
        limits = (ctr.get("resources") or {}).get("limits") or {}
        gpus += int(str(limits.get("nvidia.com/gpu", 0)) or 0)
        sp = ctr.get("startupProbe")
        if sp:
            startup_budget = max(startup_budget, sp.get("initialDelaySeconds", 0)
                                 + sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3))
    deadline = _progress_deadline(ann, cfg, c)
    if deadline is not None and startup_budget > deadline:
        c.warn("spec.template.metadata.annotations[serving.knative.dev/progress-deadline]", f"{int(deadline)}s",
               f"shorter than the startup probe allows ({int(startup_budget)}s): a slow model load will be "
               "reported as ProgressDeadlineExceeded")
    if cfg.max_gpus_per_node is not None and gpus > cfg.max_gpus_per_node:
        c.warn("spec.template.spec.containers[*].resources.limits[nvidia.com/gpu]", gpus,
               f"more GPUs than any node of the cluster has ({cfg.max_gpus_per_node}): the pod will stay Pending")
    return c.problems


@dataclass(frozen=True)
class Measured:
    """A service's slowest cold start in saved reports (`knfleet lint --reports`): its seconds, the cluster and
    report it was seen in, every report read, and the deadline `knfleet advise` derives from it."""

    seconds: float
    cluster: str
    report: str
    reports: tuple[str, ...]
    advised_s: int


def below_measured(objs: list[dict[str, Any]], cfg: ClusterConfig, file: str,
                   measured: Mapping[str, Measured] | None) -> list[Problem]:
    """A warning for each Service whose progress deadline (its annotation, else the cluster's) is below the slowest
    cold start measured for it: a start that slow would fail the revision (ProgressDeadlineExceeded)."""
    out: list[Problem] = []
    for o in objs if measured else []:
        meta = o.get("metadata") or {}
        ref = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
        m = measured.get(ref) if measured else None
        if m is None or o.get("kind") != "Service":
            continue
        ann = {k: str(v) for k, v in ((((o.get("spec") or {}).get("template") or {}).get("metadata") or {})
                                      .get("annotations") or {}).items()}
        deadline = _progress_deadline(ann, cfg, _Collector(file, ref))  # a bad value: lint_service says so
        if deadline is None or deadline >= m.seconds:
            continue
        path = "spec.template.metadata.annotations[serving.knative.dev/progress-deadline]" if \
            "serving.knative.dev/progress-deadline" in ann else "config-deployment.progress-deadline (the cluster's)"
        out.append(Problem("warning", file, ref, path, f"{int(deadline)}s", (
            f"below the slowest cold start measured, {m.seconds:.1f} s (cluster {m.cluster} in {m.report}; reports "
            f"{', '.join(m.reports)}): a start that slow fails the revision (ProgressDeadlineExceeded); knfleet "
            f"advise derives {m.advised_s}s from these reports")))
    return out


def lint_objects(objs: list[dict[str, Any]], cfg: ClusterConfig, file: str) -> list[Problem]:
    out: list[Problem] = []
    for o in objs:
        if isinstance(o, dict):
            out += lint_service(o, cfg, file)
    return out


def has_errors(problems: list[Problem], strict: bool = False) -> bool:
    return any(p.severity == "error" or (strict and p.severity == "warning") for p in problems)
