"""Install settings from pyinfra host/group data, checked before anything touches a cluster.

Each error names the data key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from knfleet import bundle, gostrconv, knconfig

SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")
ACTIONS = ("install", "uninstall")
# The ConfigMap keys group data may set (knfleet owns exactly these; Knative's parsing of each is checked by
# knfleet.knconfig). Go templates and selectors knfleet cannot check exactly are left out on purpose.
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
# What the release itself puts in the config ConfigMaps besides `_example` (1.17.x: only the queue-proxy image).
RELEASE_CONFIG_STANDIN = {"config-deployment": {"queue-sidecar-image": "(the release's queue-proxy image)"}}


class Data(dict):
    """Host or group data as pyinfra hands it to deploy.py: a missing key reads as None."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, default)


class SettingsError(ValueError):
    """Bad group/host data. Nothing was changed on any cluster."""


def _str_map(name: str, value: Any, allowed: tuple[str, ...] | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SettingsError(f"{name}: expected a mapping of ConfigMap keys to values, got {value!r}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if allowed is not None and k not in allowed:
            close = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingsError(f"{name}: unknown key {k!r}{hint}; allowed: {', '.join(allowed)}")
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, (str, int, float)):
            raise SettingsError(f"{name}.{k}: expected a string or number, got {v!r}")
        out[str(k)] = str(v)
    return out


@dataclass(frozen=True)
class InstallSettings:
    action: str = "install"
    knative_version: str = "1.17.0"
    bundle_dir: str | None = None
    optional_files: tuple[str, ...] = ()
    domain: str | None = None
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


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SettingsError(f"{name}: {value!r} is not allowed; use one of {', '.join(allowed)}")
    return value


def from_data(data: Any) -> InstallSettings:
    """Build and check InstallSettings from pyinfra host data (anything with .get)."""
    get = data.get
    version = str(get("knative_version") or "1.17.0")
    if version not in bundle.PINS:
        raise SettingsError(f"knative_version: {version!r} is not supported; use one of {', '.join(bundle.PINS)}")
    optional = tuple(get("knative_optional_files") or ())
    for f in optional:
        _choice("knative_optional_files[]", f, ("serving-hpa.yaml",))
    autoscaler = _str_map("knative_autoscaler", get("knative_autoscaler"), AUTOSCALER_KEYS)
    defaults = _str_map("knative_defaults", get("knative_defaults"), DEFAULTS_KEYS)
    network = _str_map("knative_network", get("knative_network"), NETWORK_KEYS)
    timeout = get("wait_timeout") or 300
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise SettingsError(f"wait_timeout: {timeout!r} is not allowed; use a positive number of seconds")
    domain = get("knative_domain")
    if domain is not None and (not isinstance(domain, str) or gostrconv.is_dns1123_subdomain(domain)):
        raise SettingsError(f"knative_domain: {domain!r} is not allowed; use a DNS suffix such as example.com "
                            "(lowercase letters, digits, '-' and '.')")
    cfg = InstallSettings(
        action=_choice("action", get("action") or "install", ACTIONS),
        knative_version=version,
        bundle_dir=get("knative_bundle_dir") or None,
        optional_files=optional,
        domain=domain,
        network=network,
        autoscaler=autoscaler,
        features=_str_map("knative_features", get("knative_features"), FEATURES_KEYS),
        defaults=defaults,
        deployment=_str_map("knative_deployment", get("knative_deployment"), DEPLOYMENT_KEYS),
        kourier_service_type=_choice("kourier_service_type", get("kourier_service_type") or "LoadBalancer",
                                     SERVICE_TYPES),
        proxy_service_type=_choice("proxy_service_type", get("proxy_service_type") or "NodePort", SERVICE_TYPES),
        proxy_image=str(get("proxy_image") or "nginx:1.27.3-alpine"),
        wait_timeout=timeout,
    )
    errors = [str(p) for p in knative_problems(cfg.configmaps()) if p.severity == "error"]
    if errors:
        raise SettingsError("\n".join(errors))
    return cfg


def knative_problems(configmaps: dict[str, dict[str, str]]) -> list[knconfig.ConfigProblem]:
    """What Knative 1.17 would refuse (errors) or ignore (warnings) in the config ConfigMaps knfleet renders."""
    return [p for name, data in configmaps.items() for p in knconfig.check(name, data)]
