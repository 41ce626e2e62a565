"""Install settings from pyinfra host/group data, checked before anything touches a cluster.

Each error names the data key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from knfleet.desired import bundle, gostrconv, imageref, knconfig, ownership, releases
from knfleet.errors import InputError, shown

SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")
ACTIONS = ("install", "uninstall")
# The ConfigMap keys group data may set (knfleet owns exactly these; Knative's parsing of each is checked by
# knfleet.desired.knconfig). Go templates and selectors knfleet cannot check exactly are left out on purpose.
AUTOSCALER_KEYS = tuple(k for k, _ in knconfig.AUTOSCALER_PARSE)
DEFAULTS_KEYS = (
    "revision-timeout-seconds", "max-revision-timeout-seconds", "revision-response-start-timeout-seconds",
    "revision-idle-timeout-seconds", "container-concurrency", "container-concurrency-max-limit",
    "allow-container-concurrency-zero", "enable-service-links", *knconfig.DEFAULTS_QUANTITIES,
)
DEPLOYMENT_KEYS = (
    "progress-deadline", "registries-skipping-tag-resolving", "digest-resolution-timeout",
    *knconfig.DEPLOYMENT_QUANTITIES, "queue-sidecar-token-audiences", "default-affinity-type", "runtime-class-name",
)
FEATURES_KEYS = knconfig.FEATURE_FLAGS
NETWORK_KEYS = (
    "http-protocol", "rollout-duration", "external-domain-tls", "cluster-local-domain-tls", "system-internal-tls",
    "default-external-scheme", "autocreate-cluster-domain-claims", "enable-mesh-pod-addressability",
    "mesh-compatibility-mode", "certificate-class",
)
KOURIER_CLASS = "kourier.ingress.networking.knative.dev"
# What the release itself puts in the config ConfigMaps besides `_example` (1.17.x, 1.18.1: only the queue-proxy image).
RELEASE_CONFIG_STANDIN = {"config-deployment": {"queue-sidecar-image": "(the release's queue-proxy image)"}}


# Every key of group/host data knfleet reads (pyinfra's `cluster_name` is the @kube connector's). A key not here is
# refused, with the key meant when it looks misspelt: a typo must not silently leave a setting at its default.
# Keys starting with "_" are the user's own (pyinfra keeps them; knfleet ignores them).
DATA_KEYS = (
    "action", "knative_version", "knative_bundle_dir", "knative_optional_files", "knative_domain", "cluster_domain",
    "knative_autoscaler", "knative_features", "knative_defaults", "knative_deployment", "knative_network",
    "kourier_service_type", "proxy_service_type", "proxy_image", "wait_timeout", "models",
    "lock_ttl", "lock_wait", "request_timeout", "model_wait_timeout", "smoke", "smoke_url", "smoke_internal_url",
    "smoke_deadline", "smoke_cold", "force_uninstall", "kubeconfig", "kube_context", "rollout_wave", "cluster_name",
    "smoke_via", "smoke_proxy", "proxy_node_address", "gpu_preflight", "ha_replicas", "image_mirror",
    "image_pull_secrets", "knative_bundle_files", "envoy_image", "unreachable_registries",
    # progressive model rollouts (knfleet.desired.progressive)
    "prometheus_url", "rollback", "rollout_retry",
    # model services from the user's own Knative Service YAML (knfleet.desired.manifests)
    "model_manifests", "model_manifest_settings",
    # images pulled onto the GPU nodes before they are needed (knfleet.desired.prepull, docs/prepull.md)
    "prepull", "prepull_timeout",
    # ownership and transport (docs/security.md)
    "allow_insecure", "owner", "uninstall_foreign",
)


class Data(dict):
    """Host or group data as pyinfra hands it to deploy.py: a missing key reads as None."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, default)


class SettingsError(InputError):
    """Bad group/host data. Nothing was changed on any cluster."""


def _str_map(name: str, value: Any, allowed: tuple[str, ...] | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SettingsError(f"{name}: expected a mapping of ConfigMap keys to values, got {shown(value)}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if allowed is not None and k not in allowed:
            close = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingsError(f"{name}: unknown key {shown(k)}{hint}; allowed: {', '.join(allowed)}")
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, (str, int, float)):
            raise SettingsError(f"{name}.{k}: expected a string or number, got {shown(v)}")
        out[str(k)] = str(v)
    return out


@dataclass(frozen=True)
class InstallSettings:
    action: str = "install"
    knative_version: str = releases.DEFAULT
    bundle_dir: str | None = None
    optional_files: tuple[str, ...] = ()
    domain: str | None = None
    cluster_domain: str = "cluster.local"
    ingress_class: str = KOURIER_CLASS
    network: dict[str, str] = field(default_factory=dict)
    autoscaler: dict[str, str] = field(default_factory=dict)
    features: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    deployment: dict[str, str] = field(default_factory=dict)
    kourier_service_type: str = "LoadBalancer"
    proxy_service_type: str = "NodePort"
    proxy_image: str = "nginx:1.27.3-alpine"
    wait_timeout: int = 300
    ha_replicas: int | None = None  # replicas of the control plane (knfleet.desired.ha); None: as released
    image_mirror: str | None = None  # registry[/path] every release image moves to (digests kept)
    image_pull_secrets: tuple[str, ...] = ()
    envoy_image: str | None = None  # pins kourier.yaml's floating Envoy tag
    unreachable_registries: tuple[str, ...] = ()  # what `knfleet lint` and the run report images still pointing at
    bundle_files: tuple[tuple[str, str, str], ...] = ()  # (release file, vendor file name, sha256)
    owner: str = ownership.DEFAULT_OWNER  # the knfleet.dev/owner label of the model services (one per inventory)
    prepull: bool = False  # every model's image pulled onto its GPU nodes first, unless the model says otherwise
    run: RunSettings = field(default_factory=lambda: RunSettings())

    def owned_config(self) -> dict[str, dict[str, str]]:
        """ConfigMap name -> the keys knfleet owns in it (and only those)."""
        data: dict[str, dict[str, str]] = {
            "config-network": {**self.network, "ingress-class": self.ingress_class},
            "config-autoscaler": dict(self.autoscaler),
            "config-features": dict(self.features),
            "config-defaults": dict(self.defaults),
            "config-deployment": dict(self.deployment),
        }
        if self.domain:
            data["config-domain"] = {self.domain: ""}
        return data

    def configmaps(self) -> dict[str, dict[str, str]]:
        """The config ConfigMaps' data as installed, with a stand-in for the release's own keys (for checks made
        without the bundle at hand; plan.check_config checks again with the release's real data)."""
        return {name: {**RELEASE_CONFIG_STANDIN.get(name, {}), **keys} for name, keys in self.owned_config().items()}

    @property
    def max_revision_timeout(self) -> int:
        """config-defaults max-revision-timeout-seconds as Knative reads it (600 when unset or unparsable)."""
        try:
            return gostrconv.parse_int(self.defaults.get("max-revision-timeout-seconds", "600"), 64)
        except gostrconv.GoParseError:
            return 600


@dataclass(frozen=True)
class RunSettings:
    """How a run behaves on each cluster (host data): the lock, timeouts, smoke tests, uninstall's force."""

    lock_ttl: int = 60
    lock_wait: int = 0
    request_timeout: int = 30
    model_wait_timeout: int | None = None  # None: the longest progress deadline of the models + 60 s
    prepull_timeout: int | None = None  # how long the pre-pull may take; None: as model_wait_timeout
    smoke: bool = True
    smoke_url: str | None = None
    smoke_internal_url: str | None = None
    smoke_deadline: int = 120  # a warm service; one woken from zero gets its progress deadline
    smoke_cold: bool = False
    smoke_via: str = "port-forward"  # how the runner reaches kourier-internal: port-forward | exec (the runbook's)
    smoke_proxy: bool = True  # also through the proxy's external address (load balancer / node port), if any
    proxy_node_address: str | None = None  # a node address to reach the proxy's NodePort at
    force_uninstall: bool = False
    uninstall_foreign: str = "refuse"  # refuse | delete: objects knfleet did not create in the release namespaces
    gpu_preflight: str = "refuse"  # refuse | warn | off: the GPU capacity preflight (knfleet.desired.capacity)
    prometheus_url: str | None = None  # where the rollout's real-traffic checks query (progressive rollouts)
    rollback: str | None = None  # a model service (name or namespace/name) to put back on its previous version
    rollout_retry: tuple[str, ...] = ()  # model services whose rolled-back version may be rolled out again


TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def boolean(name: str, value: Any, default: bool) -> bool:
    """The one boolean rule for data: true/false (any case), yes/no, on/off, 1/0; unset is the default."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise SettingsError(f"{name}: {shown(value)} is not allowed; use true or false")


def seconds(name: str, value: Any, default: Any, minimum: int = 1) -> Any:
    """A whole number of seconds (an int or its digits); unset is the default."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingsError(f"{name}: {shown(value)} is not allowed; use a whole number of seconds >= {minimum}")
    return value


def url(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name}: {shown(value)} is not allowed; use an http:// or https:// URL")
    return value


SMOKE_VIA = ("port-forward", "exec")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*$")


def address(name: str, value: Any) -> str | None:
    """A host name or an IP address (no scheme, no port); unset is None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            if _HOSTNAME.match(value):
                return value
    raise SettingsError(f"{name}: {value!r} is not allowed; use a host name or an IP address (no scheme, no port)")


def run_settings(get: Any) -> RunSettings:
    return RunSettings(
        lock_ttl=seconds("lock_ttl", get("lock_ttl"), 60, minimum=3),
        lock_wait=seconds("lock_wait", get("lock_wait"), 0, minimum=0),
        request_timeout=seconds("request_timeout", get("request_timeout"), 30),
        model_wait_timeout=seconds("model_wait_timeout", get("model_wait_timeout"), None),
        prepull_timeout=seconds("prepull_timeout", get("prepull_timeout"), None),
        smoke=boolean("smoke", get("smoke"), True),
        smoke_url=url("smoke_url", get("smoke_url")),
        smoke_internal_url=url("smoke_internal_url", get("smoke_internal_url")),
        smoke_deadline=seconds("smoke_deadline", get("smoke_deadline"), 120),
        smoke_cold=boolean("smoke_cold", get("smoke_cold"), False),
        smoke_via=_choice("smoke_via", get("smoke_via") or "port-forward", SMOKE_VIA),
        smoke_proxy=boolean("smoke_proxy", get("smoke_proxy"), True),
        proxy_node_address=address("proxy_node_address", get("proxy_node_address")),
        force_uninstall=boolean("force_uninstall", get("force_uninstall"), False),
        uninstall_foreign=_choice("uninstall_foreign", get("uninstall_foreign") or "refuse",
                                  ownership.UNINSTALL_FOREIGN),
        gpu_preflight=_choice("gpu_preflight", get("gpu_preflight") or "refuse", ("refuse", "warn", "off")),
        prometheus_url=url("prometheus_url", get("prometheus_url")),
        rollback=_service_name("rollback", get("rollback")),
        rollout_retry=tuple(n for n in (_service_name("rollout_retry[]", v) for v in _names_or_one(
            "rollout_retry", get("rollout_retry"))) if n),
    )


SERVICE_REF = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _service_name(name: str, value: Any) -> str | None:
    """A model service named by its name or namespace/name; unset is None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not SERVICE_REF.match(value):
        raise SettingsError(f"{name}: {shown(value)} is not allowed; use a model service's name or namespace/name "
                            "(e.g. qwen or knative-qwen7b/qwen)")
    return value


def _names_or_one(name: str, value: Any) -> tuple[Any, ...]:
    """A list, or one comma-separated string (as --data gives it)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise SettingsError(f"{name}: {shown(value)} is not allowed; use a list of model service names")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SettingsError(f"{name}: {shown(value)} is not allowed; use one of {', '.join(allowed)}")
    return value


def data_keys(data: Any) -> list[str]:
    """The keys of host data (pyinfra's HostData, or a mapping)."""
    if hasattr(data, "dict") and not isinstance(data, dict):
        return list(data.dict())
    return list(data) if isinstance(data, dict) else []


def check_keys(data: Any) -> None:
    """Refuse a key knfleet does not know, naming the key it probably meant."""
    for key in data_keys(data):
        if not isinstance(key, str):
            raise SettingsError(f"group/host data: key {shown(key)} is not allowed; keys are names such as "
                                f"knative_domain; allowed: {', '.join(DATA_KEYS)}")
        if key.startswith("_") or key in DATA_KEYS:
            continue
        close = difflib.get_close_matches(key, DATA_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SettingsError(f"group/host data: unknown key {shown(key)}{hint}; allowed: {', '.join(DATA_KEYS)} "
                            "(a key starting with '_' is yours and ignored)")


def from_data(data: Any) -> InstallSettings:
    """Build and check InstallSettings from pyinfra host data (anything with .get)."""
    check_keys(data)
    get = data.get
    version = str(get("knative_version") or releases.DEFAULT)
    if not isinstance(get("knative_version") or "", str):
        raise SettingsError(f"knative_version: {shown(get('knative_version'))} is not allowed; use a string such as "
                            '"1.17.0"')
    if version not in bundle.PINS:
        raise SettingsError(f"knative_version: {shown(version)} is not supported; use one of {', '.join(bundle.PINS)}")
    raw_optional = get("knative_optional_files") or ()
    if not isinstance(raw_optional, (list, tuple)):
        raise SettingsError(f"knative_optional_files: {shown(raw_optional)} is not allowed; use a list such as "
                            '["serving-hpa.yaml"]')
    optional = tuple(raw_optional)
    for f in optional:
        _choice("knative_optional_files[]", f, ("serving-hpa.yaml",))
    autoscaler = _str_map("knative_autoscaler", get("knative_autoscaler"), AUTOSCALER_KEYS)
    defaults = _str_map("knative_defaults", get("knative_defaults"), DEFAULTS_KEYS)
    network = _str_map("knative_network", get("knative_network"), NETWORK_KEYS)
    timeout = seconds("wait_timeout", get("wait_timeout"), 300)
    domain = get("knative_domain")
    if domain is not None and (not isinstance(domain, str) or gostrconv.is_dns1123_subdomain(domain)):
        raise SettingsError(f"knative_domain: {shown(domain)} is not allowed; use a DNS suffix such as example.com "
                            "(lowercase letters, digits, '-' and '.')")
    cluster_domain = get("cluster_domain") or "cluster.local"
    if not isinstance(cluster_domain, str) or gostrconv.is_dns1123_subdomain(cluster_domain):
        raise SettingsError(f"cluster_domain: {shown(cluster_domain)} is not allowed; use the cluster's DNS domain "
                            "(kubelet --cluster-domain), such as cluster.local")
    cfg = InstallSettings(
        action=_choice("action", get("action") or "install", ACTIONS),
        knative_version=version,
        bundle_dir=bundle_folder(get("knative_bundle_dir"), version),
        optional_files=optional,
        domain=domain,
        cluster_domain=cluster_domain,
        network=network,
        autoscaler=autoscaler,
        features=_str_map("knative_features", get("knative_features"), FEATURES_KEYS),
        defaults=defaults,
        deployment=_str_map("knative_deployment", get("knative_deployment"), DEPLOYMENT_KEYS),
        kourier_service_type=_choice("kourier_service_type", get("kourier_service_type") or "LoadBalancer",
                                     SERVICE_TYPES),
        proxy_service_type=_choice("proxy_service_type", get("proxy_service_type") or "NodePort", SERVICE_TYPES),
        proxy_image=image("proxy_image", get("proxy_image")) or "nginx:1.27.3-alpine",
        wait_timeout=timeout,
        ha_replicas=_replicas(get("ha_replicas")),
        image_mirror=_registry("image_mirror", get("image_mirror")),
        image_pull_secrets=_names("image_pull_secrets", get("image_pull_secrets")),
        envoy_image=image("envoy_image", get("envoy_image")),
        unreachable_registries=tuple(_registry("unreachable_registries[]", r) or ""
                                     for r in _list("unreachable_registries", get("unreachable_registries"))),
        bundle_files=_bundle_files(get("knative_bundle_files")),
        owner=owner(get("owner")),
        prepull=boolean("prepull", get("prepull"), False),
        run=run_settings(get),
    )
    errors = [str(p) for p in knative_problems(cfg.configmaps(), version) if p.severity == "error"]
    if errors:
        raise SettingsError("\n".join(errors))
    return cfg


def _replicas(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise SettingsError(f"ha_replicas: {value!r} is not allowed; use a whole number of replicas from 1 to 100")
    return value


def _list(name: str, value: Any) -> tuple[Any, ...]:
    if value is None or value == "":
        return ()
    if not isinstance(value, (list, tuple)):
        raise SettingsError(f"{name}: {value!r} is not allowed; use a list")
    return tuple(value)


def _registry(name: str, value: Any) -> str | None:
    """A registry host with an optional path (registry.corp.example:5000/knative), no scheme."""
    if value is None or value == "":
        return None
    ok = isinstance(value, str) and "://" not in value and " " not in value and not value.startswith("/") \
        and re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?", value.rstrip("/"))
    if not ok:
        raise SettingsError(f"{name}: {value!r} is not allowed; use a registry host with an optional path, such as "
                            "registry.corp.example:5000/knative (no scheme)")
    return value.rstrip("/")


def _names(name: str, value: Any) -> tuple[str, ...]:
    out = tuple(_list(name, value))
    for v in out:
        if not isinstance(v, str) or gostrconv.is_dns1123_subdomain(v):
            raise SettingsError(f"{name}[]: {v!r} is not allowed; use the name of a Secret (DNS-1123 subdomain)")
    return out


def _bundle_files(value: Any) -> tuple[tuple[str, str, str], ...]:
    """knative_bundle_files: {release file: {"file": vendor file name, "sha256": pin}} for a vendor bundle whose
    files are renamed or changed."""
    if value is None or value == {}:
        return ()
    if not isinstance(value, dict):
        raise SettingsError(f"knative_bundle_files: {value!r} is not allowed; use a mapping such as "
                            '{"serving-core.yaml": {"file": "serving-core-v1.17.0.yaml", "sha256": "<64 hex>"}}')
    out = []
    for release, spec in value.items():
        if release not in (*bundle.REQUIRED, *bundle.OPTIONAL):
            raise SettingsError(f"knative_bundle_files: {release!r} is not a release file; use one of "
                                f"{', '.join((*bundle.REQUIRED, *bundle.OPTIONAL))}")
        if not isinstance(spec, dict) or set(spec) != {"file", "sha256"}:
            raise SettingsError(f"knative_bundle_files.{release}: {spec!r} is not allowed; name the file and pin "
                                'its sha256: {"file": "…", "sha256": "<64 hex digits>"}')
        f, digest = spec["file"], spec["sha256"]
        if not isinstance(f, str) or not f or "/" in f:
            raise SettingsError(f"knative_bundle_files.{release}.file: {f!r} is not allowed; use a file name in the "
                                "bundle folder")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise SettingsError(f"knative_bundle_files.{release}.sha256: {digest!r} is not allowed; use the file's "
                                "sha256 (64 lowercase hex digits, `sha256sum FILE`)")
        out.append((release, f, digest))
    return tuple(sorted(out))


def bundle_folder(value: Any, version: str) -> str | None:
    """knative_bundle_dir, where `{version}` stands for knative_version (one folder per release, so an upgrade is
    `--data knative_version=1.18.1` alone)."""
    folder = _optional_str("knative_bundle_dir", value)
    if folder is None or "{" not in folder:
        return folder
    if folder.replace("{version}", "").count("{") or folder.replace("{version}", "").count("}"):
        raise SettingsError(f"knative_bundle_dir: {folder!r} is not allowed; the only placeholder is {{version}}")
    return folder.replace("{version}", version)


def owner(value: Any) -> str:
    """The owner label's value (a Kubernetes label value); unset is `default`."""
    if value is None or value == "":
        return ownership.DEFAULT_OWNER
    if not isinstance(value, str) or len(value) > 63 or not ownership.LABEL_VALUE.match(value):
        raise SettingsError(f"owner: {shown(value)} is not allowed; use a label value naming this inventory or group "
                            "(at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or "
                            "digit), such as team-a")
    return value


def image(name: str, value: Any) -> str | None:
    """An image reference (the distribution reference grammar); unset is None. A value that is not one (a newline,
    YAML, a second document) is refused here, before it could reach an object."""
    if value is None or value == "":
        return None
    why = imageref.problem(value)
    if why:
        raise SettingsError(f"{name}: {shown(value)} is not allowed ({why}); use {imageref.ALLOWED}")
    return value


def _optional_str(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SettingsError(f"{name}: {shown(value)} is not allowed; use a string")
    return value


def knative_problems(configmaps: dict[str, dict[str, str]], release: str) -> list[knconfig.ConfigProblem]:
    """What Knative Serving `release` would refuse (errors) or ignore (warnings) in the config ConfigMaps knfleet
    renders."""
    return [p for name, data in configmaps.items() for p in knconfig.check(name, data, release)]
