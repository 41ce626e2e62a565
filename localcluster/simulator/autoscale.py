"""Knative's scale decisions as the simulator makes them (KPA with the activator).

Settings come from the revision's annotations (canonical key first, then the legacy camelCase alias)
and config-autoscaler, with Knative 1.17's defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from knfleet.desired import goduration

PREFIX = "autoscaling.knative.dev/"
ALIASES = {
    "min-scale": "minScale", "max-scale": "maxScale", "initial-scale": "initialScale",
    "scale-down-delay": "scaleDownDelay", "scale-to-zero-pod-retention-period": "scaleToZeroPodRetentionPeriod",
    "target-utilization-percentage": "targetUtilizationPercentage",
}
DEFAULTS = {
    "enable-scale-to-zero": "true", "container-concurrency-target-percentage": "70",
    "container-concurrency-target-default": "100", "stable-window": "60s", "scale-to-zero-grace-period": "30s",
    "scale-to-zero-pod-retention-period": "0s", "scale-down-delay": "0s", "initial-scale": "1",
    "allow-zero-initial-scale": "false", "min-scale": "0", "max-scale": "0",
}


def annotation(annotations: dict[str, str], key: str) -> str | None:
    for k in (key, ALIASES.get(key)):
        if k and PREFIX + k in annotations:
            return annotations[PREFIX + k]
    return None


@dataclass(frozen=True)
class Settings:
    initial: int
    min: int
    max: int  # 0 = unlimited
    target: float  # concurrency per pod, before utilization
    utilization: float  # percent
    idle_seconds: float  # how long without a request before scale to zero (uncompressed)
    scale_to_zero: bool


def settings(annotations: dict[str, str], config: dict[str, str]) -> Settings:
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}

    def pick(key: str, global_key: str | None = None) -> str:
        return annotation(annotations, key) or cfg[global_key or key]

    window = goduration.parse(annotation(annotations, "window") or cfg["stable-window"])
    idle = (
        window
        + goduration.parse(cfg["scale-to-zero-grace-period"])
        + goduration.parse(pick("scale-to-zero-pod-retention-period"))
        + goduration.parse(pick("scale-down-delay"))
    )
    return Settings(
        initial=int(pick("initial-scale")),
        min=int(pick("min-scale")),
        max=int(pick("max-scale")),
        target=float(annotation(annotations, "target") or cfg["container-concurrency-target-default"]),
        utilization=float(pick("target-utilization-percentage", "container-concurrency-target-percentage")),
        idle_seconds=idle,
        scale_to_zero=cfg["enable-scale-to-zero"].lower() == "true",
    )


def clamp(n: int, s: Settings) -> int:
    n = max(n, s.min)
    return min(n, s.max) if s.max > 0 else n


def initial_replicas(s: Settings) -> int:
    return clamp(s.initial, s)


def desired_replicas(s: Settings, current: int, peak_concurrency: int, idle_for: float, time_factor: float,
                     ever_ready: bool) -> int:
    """Replicas the autoscaler wants now.

    Before a revision is first Ready it keeps its initial scale. Afterwards: enough pods for the peak
    concurrency seen in the stable window, at least min-scale, and zero once the service has been idle
    for the whole idle window (if min-scale is 0 and scale to zero is enabled).
    """
    if not ever_ready:
        return max(current, initial_replicas(s))
    per_pod = max(s.target * s.utilization / 100.0, 0.01)
    want = math.ceil(peak_concurrency / per_pod) if peak_concurrency else 0
    if want == 0 and current > 0 and idle_for < s.idle_seconds * time_factor:
        want = current  # not idle long enough: keep what runs
    if want == 0 and not (s.scale_to_zero and s.min == 0):
        want = max(current, 1)
    return clamp(want, s)
