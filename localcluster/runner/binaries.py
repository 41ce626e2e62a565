"""Which pods the runner backs with a real process, and how the process learns its ports.

A pod is run for real when one of its containers' images names a binary below (any registry, tag or
digest: a mirrored or upgraded release is recognised the same way). kwok still schedules such a pod
and gives it an IP, but leaves its containers' status to the runner (see nodes.kwok_config).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Binary:
    name: str  # file name in the Knative bin folder
    image: re.Pattern[str]  # matches the container image it stands for
    # env var -> the container port it sets; each gets a free local port (ports are per process here,
    # not per pod IP, so two clusters never collide)
    port_env: dict[str, int] = field(default_factory=dict)


# Knative reads its metrics port as a 16-bit signed value (knative.dev/pkg metrics/config.go): <= 32767.
METRICS_PORT_MAX = 32767

BINARIES: tuple[Binary, ...] = (
    Binary(
        name="webhook",
        image=re.compile(r"knative\.dev/serving/cmd/webhook[@:]"),
        port_env={"WEBHOOK_PORT": 8443, "METRICS_PROMETHEUS_PORT": 9090, "PROFILING_PORT": 8008},
    ),
    Binary(
        name="controller",
        image=re.compile(r"knative\.dev/serving/cmd/controller[@:]"),
        # Our controller main serves Knative's health probes on KNFLEET_PROBES_PORT instead of :8080.
        port_env={"KNFLEET_PROBES_PORT": 8080, "METRICS_PROMETHEUS_PORT": 9090, "PROFILING_PORT": 8008},
    ),
    # The post-install Jobs' containers: run to completion (restartPolicy OnFailure), the pod then Succeeded or
    # Failed as the process exited (kwok's own completion stage leaves them to the runner).
    Binary(name="migrate", image=re.compile(r"knative\.dev/pkg/apiextensions/storageversion/cmd/migrate[@:]")),
    Binary(name="cleanup", image=re.compile(r"knative\.dev/serving/pkg/cleanup/cmd/cleanup[@:]")),
)

# The jq expression kwok's stages use to leave these pods' container status to the runner.
KWOK_IMAGE_TEST = ("knative.dev/(serving/cmd/(webhook|controller)|pkg/apiextensions/storageversion/cmd/migrate"
                   "|serving/pkg/cleanup/cmd/cleanup)[@:]")


def for_image(image: str) -> Binary | None:
    return next((b for b in BINARIES if b.image.search(image or "")), None)
