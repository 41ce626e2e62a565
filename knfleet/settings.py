"""Install settings from pyinfra host/group data, checked before anything touches a cluster.

Each error names the data key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from knfleet import bundle, goduration

SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")
ACTIONS = ("install", "uninstall")
# The runbook's global column: keys of config-autoscaler knfleet lets group data set.
AUTOSCALER_KEYS = (
    "pod-autoscaler-class", "container-concurrency-target-percentage", "container-concurrency-target-default",
    "requests-per-second-target-default", "target-burst-capacity", "initial-scale", "allow-zero-initial-scale",
    "min-scale", "max-scale", "max-scale-limit", "scale-down-delay", "scale-to-zero-pod-retention-period",
    "scale-to-zero-grace-period", "panic-window-percentage", "panic-threshold-percentage", "stable-window",
    "enable-scale-to-zero", "max-scale-up-rate", "max-scale-down-rate", "activator-capacity",
)
DURATION_KEYS = {"scale-down-delay", "scale-to-zero-pod-retention-period", "scale-to-zero-grace-period",
                 "stable-window"}
DEPLOYMENT_KEYS = ("progress-deadline", "registries-skipping-tag-resolving", "digest-resolution-timeout",
                   "queue-sidecar-cpu-request", "queue-sidecar-memory-request")
DEFAULTS_KEYS = ("revision-timeout-seconds", "max-revision-timeout-seconds", "revision-response-start-timeout-seconds",
                 "revision-idle-timeout-seconds", "container-concurrency", "container-concurrency-max-limit",
                 "allow-container-concurrency-zero", "enable-service-links")


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
            raise SettingsError(f"{name}: unknown key {k!r}; allowed: {', '.join(allowed)}")
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
    ingress_class: str = "kourier.ingress.networking.knative.dev"
    autoscaler: dict[str, str] = field(default_factory=dict)
    features: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    deployment: dict[str, str] = field(default_factory=dict)
    kourier_service_type: str = "LoadBalancer"
    proxy_service_type: str = "NodePort"
    proxy_image: str = "nginx:1.27.3-alpine"
    wait_timeout: int = 300

    @property
    def max_revision_timeout(self) -> int:
        return int(self.defaults.get("max-revision-timeout-seconds", "600"))


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
    for k in DURATION_KEYS & autoscaler.keys():
        try:
            goduration.parse(autoscaler[k])
        except goduration.DurationError as err:
            raise SettingsError(f"knative_autoscaler.{k}: {err}; allowed: a Go duration such as \"60s\"") from None
    defaults = _str_map("knative_defaults", get("knative_defaults"), DEFAULTS_KEYS)
    for k in ("revision-timeout-seconds", "max-revision-timeout-seconds"):
        if k in defaults and not defaults[k].isdigit():
            raise SettingsError(f"knative_defaults.{k}: {defaults[k]!r} is not allowed; use whole seconds, e.g. 600")
    timeout = get("wait_timeout") or 300
    if not isinstance(timeout, int) or timeout <= 0:
        raise SettingsError(f"wait_timeout: {timeout!r} is not allowed; use a positive number of seconds")
    domain = get("knative_domain")
    if domain is not None and (not isinstance(domain, str) or not domain or " " in domain):
        raise SettingsError(f"knative_domain: {domain!r} is not allowed; use a DNS suffix such as example.com")
    return InstallSettings(
        action=_choice("action", get("action") or "install", ACTIONS),
        knative_version=version,
        bundle_dir=get("knative_bundle_dir") or None,
        optional_files=optional,
        domain=domain,
        autoscaler=autoscaler,
        features=_str_map("knative_features", get("knative_features"), None),
        defaults=defaults,
        deployment=_str_map("knative_deployment", get("knative_deployment"), DEPLOYMENT_KEYS),
        kourier_service_type=_choice("kourier_service_type", get("kourier_service_type") or "LoadBalancer",
                                     SERVICE_TYPES),
        proxy_service_type=_choice("proxy_service_type", get("proxy_service_type") or "NodePort", SERVICE_TYPES),
        proxy_image=str(get("proxy_image") or "nginx:1.27.3-alpine"),
        wait_timeout=timeout,
    )
