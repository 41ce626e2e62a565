"""Model services from group data, rendered as Knative Services. Pure: no cluster.

Group data `models` is a list of mappings; every key is optional and the defaults reproduce the
runbook's example (namespace knative-qwen7b, service knative-qwen7b-svc, served model qwen7b, 1 GPU,
initial-scale 1).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, fields
from typing import Any

from knfleet.desired import gostrconv, imageref, ownership, progressive
from knfleet.errors import InputError, shown

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED = f"{MANAGED_BY}=knfleet"
OWNER = ownership.OWNER
GPU = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
AUTOSCALING_KEYS = {
    "class": "class", "metric": "metric", "target": "target",
    "target_utilization_percentage": "target-utilization-percentage", "initial_scale": "initial-scale",
    "min_scale": "min-scale", "max_scale": "max-scale", "scale_down_delay": "scale-down-delay",
    "scale_to_zero_pod_retention_period": "scale-to-zero-pod-retention-period",
    "panic_window_percentage": "panic-window-percentage", "panic_threshold_percentage": "panic-threshold-percentage",
    "window": "window", "activation_scale": "activation-scale", "target_burst_capacity": "target-burst-capacity",
}
CLASS_SHORT = {"kpa": "kpa.autoscaling.knative.dev", "hpa": "hpa.autoscaling.knative.dev"}
SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL", re.I)
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ModelError(InputError):
    """Bad model data; nothing was changed on any cluster."""


@dataclass(frozen=True)
class Model:
    name: str = "knative-qwen7b-svc"
    namespace: str = "knative-qwen7b"
    image: str = "vllm/vllm-openai:v0.6.3"
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    served_model_name: str = "qwen7b"
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, dict[str, str]] = field(default_factory=dict)  # NAME: {secret, key}
    gpus: int = 1
    cpu: str | None = None
    memory: str | None = None
    port: int = 8000
    readiness_probe: dict[str, Any] | None = None
    startup_probe: dict[str, Any] | None = None
    timeout_seconds: int | None = None
    container_concurrency: int | None = None
    visibility: str = "public"  # public | cluster-local
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] | None = None  # None: the GPU toleration when gpus > 0
    runtime_class_name: str | None = None
    shm_size: str | None = None
    progress_deadline: str | None = None
    autoscaling: dict[str, Any] = field(default_factory=lambda: {"initial_scale": 1})
    smoke: str | bool | None = None  # always | when-warm | never (true = default, false = never); None: default
    rollout: progressive.Rollout = progressive.REPLACE  # how a new version reaches traffic (desired.progressive)
    adopt: bool = False  # take over an existing Knative Service of this name that knfleet did not create
    prepull: bool | None = None  # its image pulled onto its GPU nodes before it is needed; None: group data `prepull`

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def deadline_s(self, cluster_default: str = "600s") -> float:
        """The revision's effective progress deadline in seconds (its own, the GPU default, or the cluster's)."""
        return deadline_s(self.progress_deadline or (GPU_PROGRESS_DEADLINE if self.gpus > 0 else None),
                          cluster_default)

    @property
    def can_scale_to_zero(self) -> bool:
        low = self.autoscaling.get("min_scale")
        return low is None or str(low).strip() in ("", "0")

    @property
    def smoke_policy(self) -> str:
        return smoke_policy(self.smoke, self.can_scale_to_zero)

    @property
    def cluster_local(self) -> bool:
        return self.visibility == "cluster-local"


def smoke_policy(smoke: str | bool | None, can_scale_to_zero: bool) -> str:
    """When the smoke test sends its request: `when-warm` (the default for a service that can scale to zero:
    one at zero is reported, not woken, so an idle GPU stays free), `always`, or `never`."""
    if smoke is False:
        return "never"
    if smoke in (None, True):
        return "when-warm" if can_scale_to_zero else "always"
    return str(smoke)


def deadline_s(progress_deadline: str | None, cluster_default: str = "600s") -> float:
    """A revision's progress deadline in seconds (its own, else the cluster's; 600 s when unparsable: lint has
    reported the bad value before any run gets here)."""
    from knfleet.desired import goduration

    try:
        return goduration.parse(progress_deadline or cluster_default)
    except goduration.DurationError:
        return goduration.parse("600s")


def _err(where: str, key: str, value: Any, allowed: str) -> ModelError:
    return ModelError(f"{where}: {key} = {shown(value)} is not allowed; {allowed}")


def _hidden(key: str, value: Any) -> Any:
    """What an error may quote of a value: env's string values stay hidden (one may be a token put there by
    mistake), the types of the others show what is wrong."""
    if key == "env" and isinstance(value, dict):
        return {k: "<hidden>" if isinstance(v, str) else v for k, v in value.items()}
    return value


# What each key's value must be: a checker returning an error text (None when fine).
def _is_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _is_int(v: Any, low: int, high: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)


def _str_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, (str, int, float)) and
                                       not isinstance(x, bool) for k, x in v.items())


SCALARS: dict[str, tuple[Any, str]] = {
    "name": (_is_str, "use a DNS label: lowercase letters, digits and '-' (at most 63)"),
    "namespace": (_is_str, "use a DNS label: lowercase letters, digits and '-' (at most 63)"),
    "image": (imageref.is_reference, "use an image reference such as vllm/vllm-openai@sha256:… (lowercase path, no "
                                     "spaces or newlines)"),
    "model": (_is_str, "use the model to load, e.g. Qwen/Qwen2.5-7B-Instruct"),
    "served_model_name": (_is_str, "use the name clients ask for, e.g. qwen7b"),
    "args": (lambda v: isinstance(v, (list, tuple)) and all(isinstance(a, str) for a in v),
             "use a list of strings"),
    "env": (_str_dict, "use a mapping of variable names to strings"),
    "secret_env": (lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
                   "use {NAME: {secret: <existing Secret>, key: <key in it>}}"),
    "gpus": (lambda v: _is_int(v, 0), "use a whole number >= 0"),
    "cpu": (lambda v: v is None or isinstance(v, (str, int, float)) and not isinstance(v, bool),
            "use a CPU quantity such as \"8\" or \"500m\""),
    "memory": (lambda v: v is None or isinstance(v, str), "use a memory quantity such as \"32Gi\""),
    "port": (lambda v: _is_int(v, 1, 65535), "use a port number 1-65535"),
    "readiness_probe": (lambda v: v is None or isinstance(v, dict), "use a Kubernetes probe mapping"),
    "startup_probe": (lambda v: v is None or isinstance(v, dict), "use a Kubernetes probe mapping"),
    "timeout_seconds": (lambda v: v is None or _is_int(v, 0), "use whole seconds >= 0"),
    "container_concurrency": (lambda v: v is None or _is_int(v, 0), "use a whole number >= 0 (0: unlimited)"),
    "visibility": (lambda v: v in ("public", "cluster-local"), "use public or cluster-local"),
    "node_selector": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str)
                                                            for k, x in v.items()),
                      "use a mapping of node label names to values"),
    "tolerations": (lambda v: v is None or isinstance(v, (list, tuple)) and all(isinstance(t, dict) for t in v),
                    "use a list of Kubernetes toleration mappings"),
    "runtime_class_name": (lambda v: v is None or _is_str(v), "use a RuntimeClass name such as nvidia"),
    "shm_size": (lambda v: v is None or _is_str(v), "use a size such as \"8Gi\""),
    "progress_deadline": (lambda v: v is None or _is_str(v), "use a Go duration such as \"1800s\""),
    "autoscaling": (lambda v: isinstance(v, dict), f"use a mapping with keys {', '.join(AUTOSCALING_KEYS)}"),
    "rollout": (lambda v: v is None or isinstance(v, dict),
                "use a mapping: {strategy: progressive, steps: [5, 25, 50, 100], bake: 60s, checks: {...}}"),
    "adopt": (lambda v: isinstance(v, bool), "use true (take over an existing Knative Service of this name that "
                                             "knfleet did not create) or false"),
    "prepull": (lambda v: v is None or isinstance(v, bool),
                "use true (pull the image onto every GPU node the model may run on before it is needed, with a "
                "DaemonSet) or false; unset: group data `prepull`"),
    "smoke": (lambda v: v is None or isinstance(v, bool) or v in SMOKE_POLICIES,
              "use always, when-warm or never (true: the default, when-warm for a service that can scale to zero; "
              "false: never)"),
}


SMOKE_POLICIES = ("always", "when-warm", "never")
# A GPU revision's first start pulls a vLLM image (about 10 GB) and downloads the model (15 GB for a 7B model in
# bf16) before the readiness probe can pass: at 50 MB/s that is over 8 minutes, before loading weights into the
# GPU. Knative's default progress deadline (600 s) fails such a revision, and a failed revision stays failed until
# its template changes; GPU services get 30 minutes unless `progress_deadline` says otherwise.
GPU_PROGRESS_DEADLINE = "1800s"


def from_data(items: Any, where: str = "group data models") -> list[Model]:
    """Check and build the models; errors name the model, the key, the value and what is allowed. Any value of
    any type gets an error, never a traceback."""
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        raise ModelError(f"{where}: expected a list of model mappings, got {shown(items)}")
    known = {f.name for f in fields(Model)}
    out: list[Model] = []
    seen: set[str] = set()
    for i, raw in enumerate(items):
        if not isinstance(raw, dict):
            raise ModelError(f"{where}[{i}]: expected a mapping, got {shown(raw)}")
        label = f"{where}[{i}] ({str(raw.get('name', Model.name))[:70]})"
        unknown = sorted(str(k) for k in set(raw) - known)
        if unknown:
            hints = [f"{k} (did you mean {c[0]}?)" if (c := difflib.get_close_matches(k, sorted(known), n=1)) else k
                     for k in unknown]
            raise ModelError(f"{label}: unknown key(s) {', '.join(hints)}; allowed: {', '.join(sorted(known))}")
        for key, value in raw.items():
            ok, allowed = SCALARS[key]
            if not ok(value):
                raise _err(label, key, _hidden(key, value), allowed)
        kw = dict(raw)
        for key in ("args", "tolerations"):
            if key in kw and kw[key] is not None:
                kw[key] = tuple(kw[key])
        if "autoscaling" in kw:
            auto = dict(kw["autoscaling"])
            bad = sorted(str(k) for k in set(auto) - set(AUTOSCALING_KEYS))
            if bad:
                raise ModelError(f"{label}: autoscaling key(s) {', '.join(bad)} unknown; allowed: "
                                 f"{', '.join(AUTOSCALING_KEYS)}")
            for k, v in auto.items():
                if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int, float))):
                    raise _err(label, f"autoscaling.{k}", v, "use a string or a number")
            kw["autoscaling"] = auto
        kw["rollout"] = progressive.from_data(label, kw.get("rollout"), kw.get("autoscaling"))
        m = Model(**kw)
        for key in ("name", "namespace"):
            if not NAME.match(getattr(m, key)) or len(getattr(m, key)) > 63:
                raise _err(label, key, getattr(m, key), "use a DNS label: lowercase letters, digits and '-'")
        if ownership.reserved_namespace(m.namespace):
            raise _err(label, "namespace", m.namespace, f"use a namespace of your own: {ownership.reserved_text()} "
                                                        "belong to Kubernetes and Knative (an uninstall deletes the "
                                                        "last three)")
        _check_names(label, m)
        if m.rollout.progressive and len(m.name) > progressive.MAX_SERVICE_NAME:
            raise _err(label, "name", m.name, f"a progressive rollout names each revision <name>-<hash>: use a name of "
                                              f"at most {progressive.MAX_SERVICE_NAME} characters")
        for name in m.env:
            if SECRETISH.search(name):
                raise _err(label, f"env.{name}", "<hidden>", "secrets are never inline: use secret_env "
                                                             f"{{{name}: {{secret: <Secret name>, key: <key>}}}}")
        for name, ref in m.secret_env.items():
            if not isinstance(ref, dict) or set(ref) != {"secret", "key"} or not all(
                    _is_str(x) for x in ref.values()):
                raise _err(label, f"secret_env.{name}", ref, "use {secret: <existing Secret>, key: <key in it>}")
        if m.ref in seen:
            raise _err(label, "name", m.name, f"{m.ref} is defined twice")
        seen.add(m.ref)
        out.append(m)
    return out


# Kubernetes' validation.IsEnvVarName (as Knative's webhook applies it) and a Secret's data key.
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _check_names(label: str, m: Model) -> None:
    """Names and quantities Kubernetes would refuse, refused here (before any cluster is touched)."""
    for key in ("env", "secret_env"):
        for name in getattr(m, key):
            if not ENV_NAME.match(name):
                raise _err(label, f"{key} name", name, "use an environment variable name: letters, digits, '_', "
                                                       "'-' and '.', not starting with a digit")
    for name, ref in m.secret_env.items():
        if isinstance(ref, dict) and _is_str(ref.get("secret")) and gostrconv.is_dns1123_subdomain(ref["secret"]):
            raise _err(label, f"secret_env.{name}.secret", ref["secret"],
                       "use a Secret name: lowercase letters, digits, '-' and '.' (at most 253)")
        if isinstance(ref, dict) and _is_str(ref.get("key")) and (
                not SECRET_KEY.match(ref["key"]) or len(ref["key"]) > 253):
            raise _err(label, f"secret_env.{name}.key", ref["key"],
                       "use a key of the Secret: letters, digits, '-', '_' and '.' (at most 253)")
    for k, v in m.node_selector.items():
        problems = gostrconv.is_qualified_name(k) + gostrconv.is_valid_label_value(v)
        if problems:
            raise _err(label, f"node_selector.{k[:70]}", v, f"use a node label and value ({'; '.join(problems)})")
    for key in ("cpu", "memory", "shm_size"):
        value = getattr(m, key)
        if value is None:
            continue
        try:
            q = gostrconv.parse_quantity(str(value))
        except gostrconv.GoParseError:
            q = None
        if q is None or q <= 0:
            raise _err(label, key, value, "use a positive Kubernetes quantity such as \"8\", \"500m\" or \"32Gi\"")


def needed_features(models: list[Model]) -> dict[str, str]:
    """config-features flags the models' fields need."""
    flags: dict[str, str] = {}
    for m in models:
        if m.node_selector:
            flags["kubernetes.podspec-nodeselector"] = "enabled"
        if m.tolerations or (m.tolerations is None and m.gpus > 0):
            flags["kubernetes.podspec-tolerations"] = "enabled"
        if m.runtime_class_name:
            flags["kubernetes.podspec-runtimeclassname"] = "enabled"
    return flags


def _annotations(m: Model) -> dict[str, str]:
    ann: dict[str, str] = {}
    for key, value in m.autoscaling.items():
        if value is None:
            continue
        if key == "class":
            value = CLASS_SHORT.get(str(value), value)
        ann[f"autoscaling.knative.dev/{AUTOSCALING_KEYS[key]}"] = str(value)
    deadline = m.progress_deadline or (GPU_PROGRESS_DEADLINE if m.gpus > 0 else None)
    if deadline:
        ann["serving.knative.dev/progress-deadline"] = str(deadline)
    return ann


def with_port(probe: dict[str, Any], port: int) -> dict[str, Any]:
    """A startup probe with the container port where it names none: Knative fills it into readiness and liveness
    probes only, and a startup probe's port 0 makes a Deployment Kubernetes refuses."""
    out = dict(probe)
    for handler in ("httpGet", "tcpSocket"):
        if isinstance(out.get(handler), dict) and out[handler].get("port") in (None, 0, "", "0"):
            out[handler] = {**out[handler], "port": port}
    return out


def render_service(m: Model, owner: str | None = None) -> dict[str, Any]:
    """The Knative Service of a model, in the runbook's shape; labelled with its owner (knfleet.dev/owner) when
    given."""
    args = ["--model", m.model, "--served-model-name", m.served_model_name, "--port", str(m.port), *m.args]
    resources: dict[str, dict[str, str]] = {"limits": {}, "requests": {}}
    if m.gpus:
        resources["limits"][GPU] = resources["requests"][GPU] = str(m.gpus)
    if m.cpu:
        resources["requests"]["cpu"] = str(m.cpu)
    if m.memory:
        resources["limits"]["memory"] = resources["requests"]["memory"] = str(m.memory)
    container: dict[str, Any] = {
        "name": "vllm",
        "image": m.image,
        "args": args,
        "ports": [{"containerPort": m.port}],
        "resources": {k: v for k, v in resources.items() if v},
        "readinessProbe": m.readiness_probe or {"httpGet": {"path": "/health"}, "periodSeconds": 10,
                                                "timeoutSeconds": 5, "failureThreshold": 3},
    }
    env = [{"name": k, "value": str(v)} for k, v in sorted(m.env.items())]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": r["secret"], "key": r["key"]}}}
            for k, r in sorted(m.secret_env.items())]
    if env:
        container["env"] = env
    if m.startup_probe:
        container["startupProbe"] = with_port(m.startup_probe, m.port)
    spec: dict[str, Any] = {"containers": [container]}
    if m.shm_size:
        container["volumeMounts"] = [{"name": "shm", "mountPath": "/dev/shm"}]
        spec["volumes"] = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": m.shm_size}}]
    if m.timeout_seconds is not None:
        spec["timeoutSeconds"] = m.timeout_seconds
    if m.container_concurrency is not None:
        spec["containerConcurrency"] = m.container_concurrency
    tolerations = list(m.tolerations) if m.tolerations is not None else ([GPU_TOLERATION] if m.gpus else [])
    if tolerations:
        spec["tolerations"] = tolerations
    if m.node_selector:
        spec["nodeSelector"] = dict(m.node_selector)
    if m.runtime_class_name:
        spec["runtimeClassName"] = m.runtime_class_name
    labels = {MANAGED_BY: "knfleet", "knfleet.dev/model": m.name}
    if owner:
        labels[OWNER] = owner
    if m.cluster_local:
        labels["networking.knative.dev/visibility"] = "cluster-local"
    ksvc = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": m.name, "namespace": m.namespace, "labels": labels},
        "spec": {"template": {"metadata": {"annotations": _annotations(m)}, "spec": spec}},
    }
    # a progressive rollout names its revisions (<name>-<hash of the template>); its traffic is the run's
    return progressive.named(ksvc) if m.rollout.progressive else ksvc


def render_manifest(models: list[Model], owner: str | None = None) -> list[dict[str, Any]]:
    """The services, for one server-side apply of all of a cluster's models (their namespaces are not applied: a
    missing one is created, an existing one used as it is: knfleet.run's ownership step)."""
    return [render_service(m, owner) for m in models]


def namespace_object(name: str) -> dict[str, Any]:
    """A model namespace knfleet creates when it is missing (created, never applied over an existing one)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {MANAGED_BY: "knfleet"}}}
