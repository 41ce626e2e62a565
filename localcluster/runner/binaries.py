"""Which pods the runner backs with a real process, and how the process learns its ports.

A pod is run for real when one of its containers' images names a binary below (any registry, tag or
digest: a mirrored or upgraded release is recognised the same way). kwok still schedules such a pod
and gives it an IP, but leaves its containers' status to the runner (see nodes.kwok_config).

Knative's binaries are the builds of their release (releases.pick); knfleet's own image (the Containerfile at the
repository root) is this checkout: its console script from the venv the runner runs from, its WORKDIR /knfleet
this repository (see pods.py and podspec.py).
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
    # True: a Knative binary, run as the build of the image's release; False: knfleet's own image (this checkout)
    knative: bool = True
    # What the image's filesystem holds at these paths (its entrypoint, its WORKDIR) and what stands for them here:
    # a pod's `command` must name one of `commands`; a path below a key of `image_dirs` is rewritten to its folder.
    commands: tuple[str, ...] = ()
    workdir: str | None = None  # the image's WORKDIR (None: the pod's own folder)
    # the image's ENV (its PATH and HOME are pods.image_path and the pod's folder here)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def entrypoints(self) -> tuple[str, ...]:
        """The names a pod's `command[0]` may give this image's entrypoint (Knative's images: /ko-app/<name>)."""
        return self.commands or (f"/ko-app/{self.name}",)


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
    # knfleet's image (`knfleet jobs`: the CronJob's and the rollout's shards and coordinator): ENTRYPOINT knfleet,
    # WORKDIR /knfleet. Any registry, tag or digest whose repository's last path component is `knfleet`.
    Binary(name="knfleet", image=re.compile(r"(^|/)knfleet[:@]"), knative=False,
           commands=("knfleet", "/opt/venv/bin/knfleet"), workdir="/knfleet",
           env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}),
)

# The jq expression kwok's stages use to leave these pods' container status to the runner (a regex of kwok's jq).
KWOK_IMAGE_TEST = ("(knative.dev/(serving/cmd/(webhook|controller)|pkg/apiextensions/storageversion/cmd/migrate"
                   "|serving/pkg/cleanup/cmd/cleanup)[@:]|(^|/)knfleet[:@])")


def for_image(image: str) -> Binary | None:
    return next((b for b in BINARIES if b.image.search(image or "")), None)
