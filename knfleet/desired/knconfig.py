"""Knative's `config-*` ConfigMaps, checked exactly as the target Knative Serving release (1.17, 1.18) parses them.
Pure: no cluster.

Knative's config webhook (`config.webhook.serving.knative.dev`) refuses a ConfigMap its constructor cannot
build, but on a fresh cluster the ConfigMaps are stored before that webhook exists, and a value it would
refuse then crash-loops the controllers ("Error initializing configuration"). So knfleet runs the same
parsing and the same cross-key rules before anything reaches a cluster:

- config-autoscaler: knative.dev/serving pkg/autoscaler/config (NewConfigFromMap, validate)
- config-defaults:   pkg/apis/config/defaults.go (NewDefaultsConfigFromMap)
- config-deployment: pkg/deployment/config.go (NewConfigFromMap)
- config-features:   pkg/apis/config/features.go (asFlag: never refuses; an unknown value is ignored)
- config-network:    knative.dev/networking pkg/config (NewConfigFromMap)
- config-domain:     pkg/reconciler/route/config/domain.go (NewDomainFromConfigMap)

An *error* is what Knative's webhook refuses; a *warning* is what it accepts but ignores or silently
replaces (a misspelt feature flag value). Messages name the group-data field, the key, the value and what
is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from knfleet.desired import gostrconv as go
from knfleet.desired import releases

# config map -> the group-data field that sets it
FIELD = {
    "config-autoscaler": "knative_autoscaler", "config-defaults": "knative_defaults",
    "config-deployment": "knative_deployment", "config-features": "knative_features",
    "config-network": "knative_network", "config-domain": "knative_domain",
}
TARGET_MIN = 0.01  # autoscaling.TargetMin
SECOND = 1_000_000_000  # durations are compared in nanoseconds, as Go's time.Duration
WINDOW_MIN, WINDOW_MAX = 6 * SECOND, 3600 * SECOND  # autoscaling.WindowMin, WindowMax
PANIC_WINDOW_MIN, PANIC_WINDOW_MAX = 1.0, 100.0
INT32_MAX = 2**31 - 1

# config-autoscaler: key -> parser, in Knative's parse order
AUTOSCALER_PARSE: tuple[tuple[str, str], ...] = (
    ("pod-autoscaler-class", "string"),
    ("enable-scale-to-zero", "bool"), ("allow-zero-initial-scale", "bool"),
    ("max-scale-up-rate", "float"), ("max-scale-down-rate", "float"),
    ("container-concurrency-target-percentage", "float"), ("container-concurrency-target-default", "float"),
    ("requests-per-second-target-default", "float"), ("target-burst-capacity", "float"),
    ("panic-window-percentage", "float"), ("activator-capacity", "float"), ("panic-threshold-percentage", "float"),
    ("initial-scale", "int32"), ("min-scale", "int32"), ("max-scale", "int32"), ("max-scale-limit", "int32"),
    ("stable-window", "duration"), ("scale-down-delay", "duration"), ("scale-to-zero-grace-period", "duration"),
    ("scale-to-zero-pod-retention-period", "duration"),
)
AUTOSCALER_DEFAULTS: dict[str, Any] = {
    "pod-autoscaler-class": "kpa.autoscaling.knative.dev", "enable-scale-to-zero": True,
    "allow-zero-initial-scale": False, "max-scale-up-rate": 1000.0, "max-scale-down-rate": 2.0,
    "container-concurrency-target-percentage": 0.7, "container-concurrency-target-default": 100.0,
    "requests-per-second-target-default": 200.0, "target-burst-capacity": 211.0, "panic-window-percentage": 10.0,
    "activator-capacity": 100.0, "panic-threshold-percentage": 200.0, "initial-scale": 1, "min-scale": 0,
    "max-scale": 0, "max-scale-limit": 0, "stable-window": 60 * SECOND, "scale-down-delay": 0,
    "scale-to-zero-grace-period": 30 * SECOND, "scale-to-zero-pod-retention-period": 0,
}
DEFAULTS_INT64 = ("revision-timeout-seconds", "max-revision-timeout-seconds", "revision-idle-timeout-seconds",
                  "container-concurrency", "container-concurrency-max-limit")
DEFAULTS_QUANTITIES = tuple(f"revision-{r}-{k}" for r in ("cpu", "memory", "ephemeral-storage")
                            for k in ("request", "limit"))
DEPLOYMENT_QUANTITIES = tuple(f"queue-sidecar-{r}-{k}" for r in ("cpu", "memory", "ephemeral-storage")
                              for k in ("request", "limit"))
AFFINITY_TYPES = ("none", "prefer-spread-revision-over-nodes")
# Every config-features flag of a supported release; each release parses its own (knfleet.desired.releases).
FEATURE_FLAGS = releases.ALL_FEATURE_FLAGS
FLAG_VALUES = ("Enabled", "Allowed", "Disabled")


@dataclass(frozen=True)
class ConfigProblem:
    severity: str  # "error" (Knative refuses it) | "warning" (Knative accepts, ignores or replaces it)
    configmap: str
    key: str
    value: str | None
    message: str

    @property
    def field(self) -> str:
        return f"{FIELD.get(self.configmap, self.configmap)}.{self.key}" if self.key else FIELD.get(
            self.configmap, self.configmap)

    def __str__(self) -> str:
        shown = "" if self.value is None else f" = {self.value!r}"
        return f"{self.field}{shown}: {self.message} ({self.configmap})"


class _Checker:
    def __init__(self, configmap: str, data: dict[str, str]) -> None:
        self.cm, self.data = configmap, data
        self.problems: list[ConfigProblem] = []

    def error(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem("error", self.cm, key, self.data.get(key), message))

    def warn(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem("warning", self.cm, key, self.data.get(key), message))

    def parse(self, key: str, kind: str, allowed: str, target: dict[str, Any]) -> None:
        """Parse data[key] as Knative's cm.As<kind> does; on failure record an error naming what is allowed."""
        if key not in self.data:
            return
        raw = self.data[key]
        try:
            target[key] = PARSERS[kind](raw)
        except go.GoParseError as err:
            self.error(key, f"{allowed}; Knative: failed to parse {key!r}: {err}")
            return
        if kind == "float" and math.isnan(target[key]):
            self.warn(key, "NaN is accepted by Knative but passes every range check meaninglessly; use a number")


PARSERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "bool": go.parse_bool,
    "float": go.parse_float,
    "int32": lambda s: go.parse_int(s, 32),
    "int64": lambda s: go.parse_int(s, 64),
    "int": go.atoi,
    "duration": go.parse_duration_ns,
    "quantity": go.parse_quantity,
}
ALLOWED = {
    "bool": "allowed: true or false (also 1, t, T, TRUE, True, 0, f, F, FALSE, False)",
    "float": "allowed: a number such as 0.7 or 100",
    "int32": f"allowed: a whole number from {-2**31} to {INT32_MAX}",
    "int64": "allowed: a whole number",
    "int": "allowed: a whole number",
    "duration": 'allowed: a Go duration such as "60s", "1m30s" or "0s"',
    "quantity": 'allowed: a Kubernetes quantity such as "100m", "1", "512Mi" or "2Gi"',
    "string": "",
}


def _fmt(ns: int) -> str:
    """A Go time.Duration (nanoseconds) as Go prints it, for messages."""
    if ns == 0:
        return "0s"
    total = ns
    sign = "-" if total < 0 else ""
    total = abs(total)
    if total < 1_000_000_000:
        for unit, ns in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if total >= ns:
                return f"{sign}{total / ns:g}{unit}"
    h, rem = divmod(total, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    s = rem / 1e9
    out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{s:g}s"
    return sign + out


def autoscaler(data: dict[str, str]) -> list[ConfigProblem]:
    c = _Checker("config-autoscaler", data)
    v: dict[str, Any] = {}
    for key, kind in AUTOSCALER_PARSE:
        c.parse(key, kind, ALLOWED[kind], v)
    if c.problems:
        return c.problems
    cfg = {**AUTOSCALER_DEFAULTS, **v}
    frac = cfg["container-concurrency-target-percentage"]
    if frac > 1.0:  # percentages above 1 are divided by 100 ("for legacy reasons" values in (0, 1] are fractions)
        frac /= 100.0
    rules: list[tuple[bool, str, str]] = [
        (cfg["scale-to-zero-grace-period"] <= 0, "scale-to-zero-grace-period", "must be positive"),
        (cfg["scale-down-delay"] < 0, "scale-down-delay", "cannot be negative"),
        (cfg["scale-down-delay"] % SECOND != 0, "scale-down-delay",
         "must be specified with at most second precision (whole seconds)"),
        (cfg["scale-to-zero-pod-retention-period"] < 0, "scale-to-zero-pod-retention-period", "cannot be negative"),
        (cfg["target-burst-capacity"] < 0 and cfg["target-burst-capacity"] != -1, "target-burst-capacity",
         "must be either non-negative or -1 (for unlimited)"),
        (frac <= 0 or frac > 1, "container-concurrency-target-percentage",
         "is outside of the valid range (0, 100]: use a percent above 0 and at most 100 (a value in (0, 1] is read "
         "as a fraction)"),
        (0 < frac <= 1 and frac * cfg["container-concurrency-target-default"] < TARGET_MIN,
         "container-concurrency-target-default",
         f"with container-concurrency-target-percentage yields a target concurrency below {TARGET_MIN}"),
        (cfg["requests-per-second-target-default"] < TARGET_MIN, "requests-per-second-target-default",
         f"must be at least {TARGET_MIN}"),
        (cfg["activator-capacity"] < 1, "activator-capacity", "must be at least 1"),
        (cfg["max-scale-up-rate"] <= 1.0, "max-scale-up-rate", "must be greater than 1.0"),
        (cfg["max-scale-down-rate"] <= 1.0, "max-scale-down-rate", "must be greater than 1.0"),
        (cfg["stable-window"] < WINDOW_MIN or cfg["stable-window"] > WINDOW_MAX, "stable-window",
         f"must be in [{_fmt(WINDOW_MIN)}; {_fmt(WINDOW_MAX)}] range"),
        (cfg["stable-window"] % SECOND != 0, "stable-window",
         "must be specified with at most second precision (whole seconds)"),
        (cfg["panic-window-percentage"] < PANIC_WINDOW_MIN or cfg["panic-window-percentage"] > PANIC_WINDOW_MAX,
         "panic-window-percentage",
         f"must be in [{PANIC_WINDOW_MIN:g}, {PANIC_WINDOW_MAX:g}] interval"),
        (cfg["initial-scale"] < 0 or (cfg["initial-scale"] == 0 and not cfg["allow-zero-initial-scale"]),
         "initial-scale", "must be at least 1 (or 0 with allow-zero-initial-scale: \"true\")"),
        (cfg["min-scale"] < 0, "min-scale", "must be at least 0"),
    ]
    limit = cfg["max-scale-limit"]
    low = 1 if limit > 0 else 0
    rules += [
        (cfg["max-scale"] < low or (limit > 0 and cfg["max-scale"] > limit), "max-scale",
         f"must be in [{low}, max-scale-limit({limit})] range"),
        (limit < 0, "max-scale-limit", "must be at least 0"),
        (cfg["min-scale"] > cfg["max-scale"] > 0, "min-scale",
         f"must be less than max-scale ({cfg['max-scale']})"),
    ]
    # Each rule is written as Go's own expression: a NaN compares false in both languages, so a NaN passes the
    # rules Knative writes as `x < low || x > high` and fails none of them.
    for bad, key, message in rules:
        if bad:
            c.error(key, message)
    return c.problems


def defaults(data: dict[str, str]) -> list[ConfigProblem]:
    c = _Checker("config-defaults", data)
    v: dict[str, Any] = {}
    c.parse("allow-container-concurrency-zero", "bool", ALLOWED["bool"], v)
    for key in DEFAULTS_INT64:
        c.parse(key, "int64", ALLOWED["int64"], v)
    for key in DEFAULTS_QUANTITIES:
        c.parse(key, "quantity", ALLOWED["quantity"], v)
    if "enable-service-links" in data and data["enable-service-links"].lower() not in ("true", "false"):
        c.warn("enable-service-links", "Knative ignores this value (uses the Kubernetes default); "
                                       "allowed: true or false")
    for key in ("container-name-template", "init-container-name-template"):
        if key in data:
            c.warn(key, "a Go template knfleet cannot check; Knative refuses it if it does not parse")
    if c.problems and any(p.severity == "error" for p in c.problems):
        return c.problems
    timeout = v.get("revision-timeout-seconds", 300)
    v.setdefault("revision-response-start-timeout-seconds", timeout)
    c.parse("revision-response-start-timeout-seconds", "int64", ALLOWED["int64"], v)
    if any(p.severity == "error" for p in c.problems):
        return c.problems
    max_timeout = v.get("max-revision-timeout-seconds", 600)
    start = v["revision-response-start-timeout-seconds"]
    idle = v.get("revision-idle-timeout-seconds", 0)
    cc_max = v.get("container-concurrency-max-limit", 1000)
    cc = v.get("container-concurrency", 0)
    if timeout > max_timeout:
        c.error("revision-timeout-seconds", f"cannot be greater than max-revision-timeout-seconds ({max_timeout})")
    if start > 0 and start > timeout:
        c.error("revision-response-start-timeout-seconds",
                f"cannot be greater than revision-timeout-seconds ({timeout})")
    if idle > 0 and idle > timeout:
        c.error("revision-idle-timeout-seconds", f"cannot be greater than revision-timeout-seconds ({timeout})")
    if cc_max < 1:
        c.error("container-concurrency-max-limit", f"expected 1 <= {cc_max} <= {INT32_MAX}")
    elif cc < 0 or cc > cc_max:
        c.error("container-concurrency", f"expected 0 <= {cc} <= {cc_max} (container-concurrency-max-limit)")
    return c.problems


def deployment(data: dict[str, str]) -> list[ConfigProblem]:
    c = _Checker("config-deployment", data)
    v: dict[str, Any] = {}
    # Knative parses the legacy camelCase keys first; the canonical ones win.
    for legacy, kind in (("progressDeadline", "duration"), ("digestResolutionTimeout", "duration"),
                         *((f"queueSidecar{r}{k}", "quantity") for r in ("CPU", "Memory", "EphemeralStorage")
                           for k in ("Request", "Limit"))):
        c.parse(legacy, kind, ALLOWED[kind], v)
    for key, kind in (("progress-deadline", "duration"), ("digest-resolution-timeout", "duration"),
                      *((q, "quantity") for q in DEPLOYMENT_QUANTITIES)):
        c.parse(key, kind, ALLOWED[kind], v)
    if c.problems:
        return c.problems
    image = data.get("queue-sidecar-image", data.get("queueSidecarImage", ""))
    deadline = v.get("progress-deadline", v.get("progressDeadline", 600 * SECOND))
    digest = v.get("digest-resolution-timeout", v.get("digestResolutionTimeout", 10 * SECOND))
    if not image:
        c.error("queue-sidecar-image", "cannot be empty or unset")
    if deadline <= 0:
        c.error("progress-deadline", "cannot be a non-positive duration; allowed: whole seconds above 0, e.g. 600s")
    elif deadline % SECOND != 0:
        c.error("progress-deadline", "must be rounded to a whole second")
    if digest <= 0:
        c.error("digest-resolution-timeout",
                "cannot be a non-positive duration; allowed: a Go duration above 0, e.g. 10s")
    if "default-affinity-type" in data and data["default-affinity-type"] not in AFFINITY_TYPES:
        c.error("default-affinity-type", f"unsupported value; allowed: {', '.join(AFFINITY_TYPES)}")
    if "runtime-class-name" in data:
        _runtime_classes(c, data["runtime-class-name"])
    return c.problems


def _runtime_classes(c: _Checker, raw: str) -> None:
    """runtime-class-name: YAML `<class>: {selector: {label: value}}`, class names DNS subdomains."""
    key = "runtime-class-name"
    try:
        parsed = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        c.error(key, f"cannot be parsed, please check the format: {str(err).splitlines()[0]}")
        return
    if parsed is None:
        return
    if not isinstance(parsed, dict):
        c.error(key, "cannot be parsed: expected a mapping of runtime class name to {selector: {label: value}}")
        return
    for cls, sel in parsed.items():
        if sel is not None and not isinstance(sel, dict):
            c.error(key, f"class {cls}: expected {{selector: {{label: value}}}}")
            continue
        selector = (sel or {}).get("selector")
        if selector is not None and (not isinstance(selector, dict) or not all(
                isinstance(k, str) and isinstance(x, str) for k, x in selector.items())):
            c.error(key, f"class {cls}: selector must map label names to string values")
            continue
        bad = go.is_dns1123_subdomain(str(cls))
        if bad:
            c.error(key, f"class {cls} is not a valid DNS subdomain: {'; '.join(bad)}")
        if selector:
            problems = go.valid_label_selector_map(selector)
            if problems:
                c.error(key, f"class {cls}: selector invalid: {'; '.join(problems)}")


def features(data: dict[str, str], release: str = releases.DEFAULT) -> list[ConfigProblem]:
    """Knative never refuses a config-features value (asFlag ignores what it cannot read), so a bad value is a
    warning; a flag of a later release than `release` is an error: that release ignores it, and the fields it would
    allow are refused."""
    c = _Checker("config-features", data)
    known = releases.feature_flags(release)
    for key, raw in data.items():
        if key.startswith("_") or key not in FEATURE_FLAGS:
            continue
        if key not in known:
            c.error(key, releases.not_in_release(key, release))
            continue
        if not any(raw.lower() == f.lower() for f in FLAG_VALUES):
            c.warn(key, "Knative ignores this value and keeps the flag's default; allowed: enabled, allowed, disabled")
    return c.problems


def network(data: dict[str, str]) -> list[ConfigProblem]:
    c = _Checker("config-network", data)
    v: dict[str, Any] = {}
    for key, kind in (("rolloutDuration", "int"), ("autocreateClusterDomainClaims", "bool"),
                      ("rollout-duration", "int"), ("autocreate-cluster-domain-claims", "bool"),
                      ("enable-mesh-pod-addressability", "bool"), ("internal-encryption", "bool")):
        c.parse(key, kind, ALLOWED[kind], v)
    if c.problems:
        return c.problems
    if v.get("rollout-duration", v.get("rolloutDuration", 0)) < 0:
        c.error("rollout-duration", "must be a positive integer (seconds)")
    for key in ("domain-template", "tag-template", "domainTemplate", "tagTemplate", "namespace-wildcard-cert-selector"):
        if key in data:
            c.warn(key, "a Go template / selector knfleet cannot check; Knative refuses it if it does not parse")
    protocol = data.get("http-protocol", data.get("httpProtocol", ""))
    if protocol.lower() not in ("", "enabled", "disabled", "redirected"):
        c.error("http-protocol", "is not supported; allowed: enabled, disabled, redirected")
    for key in ("system-internal-tls", "cluster-local-domain-tls"):
        if data.get(key, "").lower() not in ("", "enabled", "disabled"):
            c.error(key, "is not supported; allowed: enabled, disabled")
    for key, allowed in (("external-domain-tls", ("enabled", "disabled")),
                         ("mesh-compatibility-mode", ("enabled", "disabled", "auto"))):
        if key in data and data[key].lower() not in allowed:
            c.warn(key, f"Knative reads any other value as the default; allowed: {', '.join(allowed)}")
    return c.problems


def domain(data: dict[str, str]) -> list[ConfigProblem]:
    c = _Checker("config-domain", data)
    for key, raw in data.items():
        if key == "_example":
            continue
        try:
            parsed = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            c.error(key, f"the value must be empty or YAML {{selector: {{label: value}}}}: {str(err).splitlines()[0]}")
            continue
        if parsed is not None and not isinstance(parsed, dict):
            c.error(key, "the value must be empty or YAML {selector: {label: value}}")
        elif parsed and parsed.get("selector") is not None and not isinstance(parsed["selector"], dict):
            c.error(key, "selector must map label names to values")
    return c.problems


CHECKS: dict[str, Callable[[dict[str, str]], list[ConfigProblem]]] = {
    "config-autoscaler": autoscaler, "config-defaults": defaults, "config-deployment": deployment,
    "config-features": features, "config-network": network, "config-domain": domain,
}


def check(configmap: str, data: dict[str, str], release: str = releases.DEFAULT) -> list[ConfigProblem]:
    """Problems of one ConfigMap's data (the release's keys merged with knfleet's) as Knative Serving `release`
    parses it. Reading v0.45.1 (1.18.1) against v0.44.0 (1.17.0) found one difference in what knfleet checks: the
    two config-features flags 1.18 added (docs/upgrades.md)."""
    if configmap == "config-features":
        return features(data, release)
    fn = CHECKS.get(configmap)
    return fn(data) if fn else []
