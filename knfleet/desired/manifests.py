"""Model services from the Knative Service YAML a user already has (group data `model_manifests`). Pure: no cluster.

    model_manifests = ["manifests/*.yaml", "/srv/llm/qwen.yaml"]   # relative to the deploy's directory, or absolute
    model_manifest_settings = {"knative-qwen7b-svc": {"smoke": "always", "rollout": {"strategy": "progressive"}}}

Each file holds Knative Services (`serving.knative.dev/v1` `Service`) and the Namespaces they need (`v1`
`Namespace`); any other kind is refused naming the file, the document and the kind. A file is checked by one
function, `check_documents` (`knfleet lint FILE` and the deploy call it, so they give the same verdict on the same
file): Knative 1.17's own rules and knfleet's warnings (knfleet.desired.lint, on the Service as written), the
names, and knfleet's own annotations on the Service's metadata:

    knfleet.dev/served-model-name   the name the smoke test asks for, when no container has --served-model-name
    knfleet.dev/smoke               always | when-warm | never (true: the default, false: never)
    knfleet.dev/rollout-strategy    replace | progressive                      (knfleet.desired.progressive.Rollout)
    knfleet.dev/rollout-steps       5,25,50,100 (or a JSON list)
    knfleet.dev/rollout-bake        60s
    knfleet.dev/rollout-checks      a JSON mapping: {"requests": 20, "max_latency_ratio": 1.2, "prompts": [...]}

A group data entry keyed by the service's name (or namespace/name) sets the same: `served_model_name`, `smoke`,
`rollout` (the mapping of group-data models); what it sets wins over the annotation (a rollout key by key).

What knfleet adds to a Service, only where the manifest does not say (never overriding what the user wrote):
the label app.kubernetes.io/managed-by=knfleet (prune and uninstall touch only what carries it), the namespace
`default` when none is named (as kubectl does), for a service asking for GPUs the GPU toleration (no
`tolerations` written) and a progress deadline of 1800s (no `serving.knative.dev/progress-deadline` written), and
for a progressive rollout the revision name `<name>-<hash of the template>`. Namespaces the services need and no
file holds are made as for group-data models.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from knfleet.desired import lint, models, ownership, progressive, render
from knfleet.errors import InputError, shown

KSVC = ("serving.knative.dev/v1", "Service")
NAMESPACE = ("v1", "Namespace")
ALLOWED = "serving.knative.dev/v1 Service (a model service) and v1 Namespace (the namespaces the services need)"
PREFIX = "knfleet.dev/"
ANNOTATIONS = ("served-model-name", "smoke", "rollout-strategy", "rollout-steps", "rollout-bake", "rollout-checks")
ENTRY_KEYS = ("served_model_name", "smoke", "rollout", "adopt", "prepull")
SMOKE_VALUES = {"always": "always", "when-warm": "when-warm", "never": "never", "true": True, "false": False}
# What `kubectl get -o yaml` adds and a manifest must not carry: applied back, they conflict or mean nothing.
EXPORTED = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink",
            "deletionTimestamp")
ALWAYS_THERE = ("default",)  # namespaces every cluster has: never made (nor labelled) by knfleet
SCALE = "autoscaling.knative.dev/"
TOLERATIONS = "kubernetes.podspec-tolerations"  # the config-features flag the GPU toleration needs


class ManifestError(InputError):
    """A model manifest refused; nothing was changed on any cluster."""


@dataclass(frozen=True)
class ManifestService:
    """A Knative Service from a user's manifest, as knfleet applies it: the same interface as models.Model where
    the plan reads one (ref, smoke, rollout, readiness deadline)."""

    service: dict[str, Any]  # the Service as applied: the manifest's, with what knfleet adds (see `added`)
    source: str  # "<file> (document N of M)"
    served_model_name: str = ""  # "" when none is known: not smoke-tested (a warning)
    smoke: str | bool | None = None
    rollout: progressive.Rollout = progressive.REPLACE
    added: tuple[str, ...] = ()  # what knfleet added, for people (--dry, the docs)
    adopt: bool = False  # model_manifest_settings: take over an existing service knfleet did not create
    prepull: bool | None = None  # model_manifest_settings: its image pulled first; None: group data `prepull`

    @property
    def name(self) -> str:
        return self.service["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.service["metadata"]["namespace"]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def cluster_local(self) -> bool:
        labels = self.service["metadata"].get("labels") or {}
        return labels.get("networking.knative.dev/visibility") == "cluster-local"

    @property
    def annotations(self) -> dict[str, str]:
        tmpl = self.service["spec"]["template"]
        return {str(k): str(v) for k, v in ((tmpl.get("metadata") or {}).get("annotations") or {}).items()}

    @property
    def can_scale_to_zero(self) -> bool:
        low = scale_setting(self.annotations, "min-scale")
        return low is None or low.strip() in ("", "0")

    @property
    def smoke_policy(self) -> str:
        if not self.served_model_name:
            return "never"
        return models.smoke_policy(self.smoke, self.can_scale_to_zero)

    def deadline_s(self, cluster_default: str = "600s") -> float:
        return models.deadline_s(self.annotations.get("serving.knative.dev/progress-deadline"), cluster_default)

    def note(self) -> str:
        """What knfleet adds, in a line (`--dry` and a run say it when the service is applied)."""
        return f"{self.ref} from {self.source}: knfleet adds " + ("; ".join(self.added) or "nothing")


@dataclass(frozen=True)
class Checked:
    """One file's verdict: its services and namespaces as knfleet applies them, and every problem found."""

    file: str
    services: tuple[ManifestService, ...] = ()
    namespaces: tuple[tuple[dict[str, Any], str], ...] = ()  # (the Namespace as applied, its source)
    problems: tuple[lint.Problem, ...] = ()

    @property
    def errors(self) -> list[lint.Problem]:
        return [p for p in self.problems if p.severity == "error"]


@dataclass(frozen=True)
class Manifests:
    """Every file of `model_manifests`, checked together: what the deploy applies."""

    services: tuple[ManifestService, ...] = ()
    namespaces: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default_factory=tuple)


# --- reading ---------------------------------------------------------------------------------------------------------
def patterns_of(raw: Any) -> tuple[str, ...]:
    """Group data `model_manifests`: a list of paths or glob patterns (one string, or several comma-separated, as
    `--data` gives them)."""
    if raw is None or raw == "" or raw == []:
        return ()
    items = [p.strip() for p in raw.split(",") if p.strip()] if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, str) and p.strip() for p in items):
        raise ManifestError(f"model_manifests: {shown(raw)} is not allowed; use a list of YAML file paths or glob "
                            'patterns, relative to the deploy\'s directory or absolute (e.g. ["manifests/*.yaml"])')
    return tuple(items)


def resolve(raw: Any, base: str | None = None) -> tuple[str, ...]:
    """The files `model_manifests` names, in order (each once): a pattern that matches no file, or a path that is
    not a file, is bad input."""
    base = base or os.getcwd()
    out: list[str] = []
    for i, pattern in enumerate(patterns_of(raw)):
        where, use = f"model_manifests[{i}]", "use a path or glob pattern of YAML files holding Knative Services"
        if "\0" in pattern:
            raise ManifestError(f"{where}: {shown(pattern)} is not allowed (a NUL character); {use}")
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        if glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(full, recursive=True) if os.path.isfile(p))
            if not found:
                raise ManifestError(f"{where}: {shown(pattern)} matches no file (relative to {base}); {use}")
        elif os.path.isdir(full):
            raise ManifestError(f"{where}: {shown(pattern)} is a folder; use its files, e.g. "
                                f"{pattern.rstrip('/')}/*.yaml")
        elif not os.path.isfile(full):
            raise ManifestError(f"{where}: {shown(pattern)}: no such file (relative to {base}); {use}")
        else:
            found = [full]
        for p in found:
            shown_path = os.path.relpath(p, base) if not os.path.isabs(pattern) else p
            if all(os.path.realpath(os.path.join(base, q)) != os.path.realpath(p) for q in out):
                out.append(shown_path)
    return tuple(out)


@lru_cache(maxsize=256)
def _parsed(path: str, mtime_ns: int, size: int) -> tuple[Any, ...]:  # noqa: ARG001 - the file's identity
    text = Path(path).read_text(encoding="utf-8")
    docs = tuple(yaml.load_all(text, Loader=render.LOADER))  # noqa: S506 - a safe loader
    json.dumps(docs)  # what Kubernetes objects can carry (no dates, sets or binaries): refused here, not at the apply
    return docs


def parse(file: str, base: str | None = None) -> list[Any]:
    """A file's YAML documents (empty ones included, so that a document's number is its place in the file). Read
    once per process and edit: every cluster of a run gets the same documents. Shared: read them, never change
    them (check_documents copies what it changes)."""
    path = file if os.path.isabs(file) else os.path.join(base or os.getcwd(), file)
    try:
        st = os.stat(path)
        return list(_parsed(os.path.realpath(path), st.st_mtime_ns, st.st_size))
    except OSError as err:
        raise ManifestError(f"{file}: cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ManifestError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ManifestError(f"{file}: not valid YAML: {err}") from None
    except (TypeError, ValueError) as err:  # YAML that JSON cannot hold (a date, a binary, a set)
        raise ManifestError(f"{file}: holds a value Kubernetes objects cannot carry: {err}") from None


# --- the one check of a file (knfleet lint and the deploy) ------------------------------------------------------------
def check_file(file: str, cfg: lint.ClusterConfig, entries: Mapping[str, Mapping[str, Any]] | None = None,
               base: str | None = None) -> Checked:
    """A file read and checked; a file that cannot be read or parsed is one error."""
    try:
        docs = parse(file, base)
    except ManifestError as err:
        return Checked(file, problems=(lint.Problem("error", file, "-", "-", None, str(err).removeprefix(
            f"{file}: ")),))
    return check_documents(file, docs, cfg, entries)


def _cut(value: Any) -> Any:
    """A value as a problem quotes it: itself when short, else cut (a problem's line must not flood the output)."""
    return value if len(repr(value)) <= 80 else shown(value, 80)


class _Doc:
    """The problems of one document, collected (file, the document's place, the service's ref)."""

    def __init__(self, file: str, where: str, ref: str) -> None:
        self.file, self.where, self.ref = file, where, ref
        self.problems: list[lint.Problem] = []

    def error(self, path: str, value: Any, message: str) -> None:
        self.problems.append(lint.Problem("error", self.file, self.ref, path, value, f"{message} ({self.where})"))

    def warn(self, path: str, value: Any, message: str) -> None:
        self.problems.append(lint.Problem("warning", self.file, self.ref, path, value, f"{message} ({self.where})"))


def check_documents(file: str, docs: list[Any], cfg: lint.ClusterConfig,
                    entries: Mapping[str, Mapping[str, Any]] | None = None) -> Checked:
    """Every document of a model manifest: its kind, names, Knative's verdict (knfleet.desired.lint on the Service
    as written) and knfleet's annotations (with `entries`, group data `model_manifest_settings`, over them)."""
    services: list[ManifestService] = []
    namespaces: list[tuple[dict[str, Any], str]] = []
    problems: list[lint.Problem] = []
    count = len(docs)
    for i, doc in enumerate(docs):
        where = f"document {i + 1} of {count}"
        if doc is None:
            continue
        if not isinstance(doc, dict):
            problems.append(lint.Problem("error", file, "-", where, type(doc).__name__,
                                         "not a mapping; use one Kubernetes object (a mapping) per document"))
            continue
        kind = (doc.get("apiVersion"), doc.get("kind"))
        if kind == NAMESPACE:
            ns, found = _namespace(file, where, doc)
            problems += found
            if ns is not None:
                namespaces.append((ns, f"{file} ({where})"))
        elif kind == KSVC:
            svc, found = _service(file, where, doc, cfg, entries or {})
            problems += found
            if svc is not None:
                services.append(svc)
        else:
            problems.append(lint.Problem("error", file, "-", where, f"{kind[0]} {kind[1]}", (
                f"kind {kind[1]} is not allowed in a model manifest; allowed: {ALLOWED}")))
    return Checked(file, tuple(services), tuple(namespaces), tuple(problems))


def _names(doc: dict[str, Any], c: _Doc) -> tuple[str, str] | None:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        c.error("metadata", _cut(meta), "missing or not a mapping; a Kubernetes object has metadata.name")
        return None
    name, ns = meta.get("name"), meta.get("namespace", "default")
    ok = True
    for key, value in (("metadata.name", name), ("metadata.namespace", ns)):
        if not isinstance(value, str) or not models.NAME.match(value) or len(value) > 63:
            c.error(key, value, "use a DNS label: lowercase letters, digits and '-', at most 63")
            ok = False
    for key in EXPORTED:
        if key in meta:
            c.error(f"metadata.{key}", None, "set by the API server (an object exported with kubectl get -o yaml?); "
                                             "remove it: knfleet applies what the manifest says")
            ok = False
    if "status" in doc:
        c.error("status", None, "written by Kubernetes and Knative, not by a manifest; remove it")
        ok = False
    template = (doc.get("spec") or {}).get("template") if isinstance(doc.get("spec"), dict) else None
    tmeta = template.get("metadata") if isinstance(template, dict) else None
    for where, meta_of in (("metadata", meta), ("spec.template.metadata", tmeta)):
        for part in ("labels", "annotations"):
            values = meta_of.get(part) if isinstance(meta_of, dict) else None
            if values is not None and not isinstance(values, dict):
                c.error(f"{where}.{part}", _cut(values), "use a mapping of names to strings")
                ok = False
            for key, value in (values or {}).items() if isinstance(values, dict) else ():
                if not isinstance(value, str):
                    c.error(f"{where}.{part}[{key}]", _cut(value), "Kubernetes takes only strings here (the API "
                                                                   f"server refuses the object); quote it: \"{value}\"")
                    ok = False
    return (name, ns) if ok else None


def _labels(meta: dict[str, Any], c: _Doc, what: str) -> dict[str, str] | None:
    """The service's labels with knfleet's managed label (refused when the manifest gives it to someone else)."""
    labels = meta.get("labels") or {}
    owner = labels.get(models.MANAGED_BY)
    if owner is not None and owner != "knfleet":
        c.error(f"metadata.labels[{models.MANAGED_BY}]", owner, (
            f"knfleet manages this {what} (it prunes and uninstalls only what carries {models.MANAGED}); remove "
            "the label or set it to knfleet"))
        return None
    return {**labels, models.MANAGED_BY: "knfleet"}


def _namespace(file: str, where: str, doc: dict[str, Any]) -> tuple[dict[str, Any] | None, list[lint.Problem]]:
    c = _Doc(file, where, "-")
    names = _names(doc, c)
    if names is None:
        return None, c.problems
    c.ref = names[0]
    _reserved(names[0], "metadata.name", c)
    out = json.loads(json.dumps(doc))  # a fresh copy (JSON: what parse gives), faster than deepcopy
    out["metadata"].pop("namespace", None)
    # the managed label where none is written (a namespace is never pruned: another owner's label stays)
    out["metadata"]["labels"] = {models.MANAGED_BY: "knfleet", **(out["metadata"].get("labels") or {})}
    return out, c.problems


def _reserved(namespace: str, path: str, c: _Doc) -> None:
    """A namespace of Kubernetes or Knative is not a model's (`default`, which every cluster has and knfleet never
    makes nor labels, is where a manifest without a namespace goes, as with kubectl)."""
    if ownership.reserved_namespace(namespace) and namespace not in ALWAYS_THERE:
        c.error(path, namespace, f"use a namespace of your own: {ownership.reserved_text()} belong to Kubernetes and "
                                 "Knative (an uninstall deletes the release namespaces)")


def scale_setting(annotations: Mapping[str, str], key: str) -> str | None:
    """An autoscaling annotation as Knative reads it: the canonical key, else its legacy alias."""
    alias = lint.ALIASES.get(key)
    value = annotations.get(SCALE + key)
    if value is None and alias:
        value = annotations.get(SCALE + alias)
    return None if value is None else str(value)


def gpus_of(spec: dict[str, Any]) -> int:
    total = 0
    for ctr in spec.get("containers") or []:
        res = (ctr.get("resources") or {}) if isinstance(ctr, dict) else {}
        for part in ("limits", "requests"):
            try:
                total = max(total, int(str((res.get(part) or {}).get(models.GPU, 0) or 0)))
            except ValueError:
                pass
    return total


def served_model_name(spec: dict[str, Any]) -> str:
    """The name vLLM serves, from a container's argv: `--served-model-name` ("" when none says it)."""
    for ctr in spec.get("containers") or []:
        argv = [str(a) for a in [*(ctr.get("command") or []), *(ctr.get("args") or [])]]
        for i, a in enumerate(argv):
            if a == "--served-model-name" and i + 1 < len(argv) and argv[i + 1].split():
                return argv[i + 1].split()[0]
            if a.startswith("--served-model-name=") and a.split("=", 1)[1].split():
                return a.split("=", 1)[1].split()[0]
    return ""


def vllm_model(spec: dict[str, Any]) -> str:
    """vLLM's own default served name: the `--model` argument, else the model of `vllm serve <model>`."""
    for ctr in spec.get("containers") or []:
        argv = [str(a) for a in [*(ctr.get("command") or []), *(ctr.get("args") or [])]]
        for i, a in enumerate(argv):
            if a == "--model" and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith("--model="):
                return a.split("=", 1)[1]
        if "serve" in argv:
            i = argv.index("serve")
            if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                return argv[i + 1]
    return ""


def _steps(text: str) -> Any:
    """`knfleet.dev/rollout-steps`: "5,25,50,100" or a JSON list (left as written when neither: the rollout's
    own check names the value)."""
    try:
        value = json.loads(text)
        if isinstance(value, list):
            return value
    except ValueError:
        pass
    parts = [p.strip() for p in text.split(",")]
    return [int(p) for p in parts] if all(p.isdigit() for p in parts) else text


def _rollout_raw(ann: dict[str, str], entry: Mapping[str, Any], c: _Doc) -> dict[str, Any] | None:
    """The rollout mapping (knfleet.desired.progressive.from_data's input) from the annotations, with the group data
    entry's `rollout` keys over them."""
    raw: dict[str, Any] = {}
    if PREFIX + "rollout-strategy" in ann:
        raw["strategy"] = ann[PREFIX + "rollout-strategy"]
    if PREFIX + "rollout-steps" in ann:
        raw["steps"] = _steps(ann[PREFIX + "rollout-steps"])
    if PREFIX + "rollout-bake" in ann:
        raw["bake"] = ann[PREFIX + "rollout-bake"]
    if PREFIX + "rollout-checks" in ann:
        try:
            raw["checks"] = json.loads(ann[PREFIX + "rollout-checks"])
        except ValueError as err:
            c.error(f"metadata.annotations[{PREFIX}rollout-checks]", ann[PREFIX + "rollout-checks"][:80],
                    f"not JSON ({err}); use a JSON mapping such as {{\"requests\": 20, \"max_latency_ratio\": 1.2}}")
            return None
    extra = entry.get("rollout")
    if extra is not None and not isinstance(extra, dict):
        c.error("model_manifest_settings.rollout", _cut(extra), "use the rollout mapping of group-data models")
        return None
    return {**raw, **(extra or {})} or None


def _knfleet_annotations(meta: dict[str, Any], c: _Doc) -> dict[str, str]:
    ann = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()} \
        if isinstance(meta.get("annotations"), dict) else {}
    for key in ann:
        if not key.startswith(PREFIX):
            continue
        short = key[len(PREFIX):]
        if key == progressive.STATE_ANNOTATION:
            c.error(f"metadata.annotations[{key}]", None, "knfleet's own record of a rollout, written by knfleet; "
                                                          "remove it from the manifest")
        elif short not in ANNOTATIONS:
            close = difflib.get_close_matches(short, ANNOTATIONS, n=1)
            c.error(f"metadata.annotations[{key}]", ann[key][:80], "unknown knfleet annotation" + (
                f" (did you mean {PREFIX}{close[0]}?)" if close else "") + "; allowed: " + ", ".join(
                PREFIX + a for a in ANNOTATIONS))
    return ann


def _service(file: str, where: str, doc: dict[str, Any], cfg: lint.ClusterConfig,
             entries: Mapping[str, Mapping[str, Any]]) -> tuple[ManifestService | None, list[lint.Problem]]:
    c = _Doc(file, where, "-")
    names = _names(doc, c)
    if names is None:
        return None, c.problems
    name, ns = names
    c.ref = f"{ns}/{name}"
    _reserved(ns, "metadata.namespace", c)
    spec = doc.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not isinstance(containers, list) or not containers or not all(isinstance(x, dict) for x in containers):
        c.error("spec.template.spec.containers", None, "missing: a Knative Service runs at least one container")
        return None, c.problems
    for key in ("metadata",):
        if not isinstance(template.get(key) or {}, dict):
            c.error(f"spec.template.{key}", _cut(template.get(key)), "use a mapping")
            return None, c.problems
    c.problems += lint.lint_service(doc, cfg, file)
    meta = doc["metadata"]
    ann = _knfleet_annotations(meta, c)
    entry = entries.get(c.ref) or entries.get(name) or {}
    out = json.loads(json.dumps(doc))  # a fresh copy (JSON: what parse gives), faster than deepcopy
    added: list[str] = []
    out["metadata"]["namespace"] = ns
    if "namespace" not in meta:
        added.append("namespace default (the manifest names none)")
    labels = _labels(out["metadata"], c, "service")
    if labels is not None:
        if (meta.get("labels") or {}).get(models.MANAGED_BY) != "knfleet":
            added.append(f"label {models.MANAGED}")
        out["metadata"]["labels"] = labels
    tmpl = out["spec"]["template"]
    if not isinstance(tmpl.get("metadata"), dict):
        tmpl["metadata"] = {}
    tmpl_meta = tmpl["metadata"]
    tmpl_ann = {str(k): str(v) for k, v in (tmpl_meta.get("annotations") or {}).items()}
    pod = tmpl["spec"]
    if gpus_of(pod) > 0:
        if "tolerations" not in pod and cfg.feature_on(TOLERATIONS):
            pod["tolerations"] = [dict(models.GPU_TOLERATION)]
            added.append(f"toleration {models.GPU}:NoSchedule (Exists), as the service asks for GPUs")
        if "serving.knative.dev/progress-deadline" not in tmpl_ann:
            tmpl_meta["annotations"] = {**(tmpl_meta.get("annotations") or {}),
                                        "serving.knative.dev/progress-deadline": models.GPU_PROGRESS_DEADLINE}
            added.append(f"annotation serving.knative.dev/progress-deadline: {models.GPU_PROGRESS_DEADLINE} on the "
                         "template (a GPU revision's first start pulls the image and the model)")
    wanted = entry.get("served_model_name")
    if "served_model_name" in entry and not (isinstance(wanted, str) and wanted.strip()):
        c.error("model_manifest_settings.served_model_name", _cut(wanted),
                "use the name clients ask for, e.g. qwen7b")
        wanted = None
    model = served_model_name(pod) or wanted or ann.get(PREFIX + "served-model-name", "").strip() or vllm_model(pod)
    smoke = _smoke(ann, entry, c)
    rollout = progressive.REPLACE
    raw = _rollout_raw(ann, entry, c)
    if raw is not None:
        auto = {"min_scale": scale_setting(tmpl_ann, "min-scale"), "max_scale": scale_setting(tmpl_ann, "max-scale"),
                "initial_scale": scale_setting(tmpl_ann, "initial-scale")}
        try:
            rollout = progressive.from_data("", raw, auto)
        except progressive.RolloutError as err:
            source = f"{PREFIX}rollout-* annotations" + (
                ", with model_manifest_settings' rollout over them" if entry.get("rollout") else "")
            c.error("rollout", None, f"{str(err).removeprefix(': ')} (from the {source})")
    if rollout.progressive:
        _check_progressive(out, name, model, c)
    if not model and smoke is not False and smoke != "never":
        c.warn("spec.template.spec.containers[*].args", None, (
            "no served model name (no --served-model-name or --model argument): the smoke test cannot ask for the "
            f"model and leaves it out; set the annotation {PREFIX}served-model-name, or {PREFIX}smoke: never"))
    if any(p.severity == "error" for p in c.problems):
        return None, c.problems
    if rollout.progressive:
        out = progressive.named(out)
        added.append(f"revision name {progressive.template_name(out)} (<name>-<hash of the template>: a progressive "
                     "rollout names each version)")
    adopt = entry.get("adopt", False)
    if not isinstance(adopt, bool):
        c.error("model_manifest_settings.adopt", _cut(adopt), "use true (take over an existing Knative Service of "
                                                              "this name that knfleet did not create) or false")
        return None, c.problems
    prepull = entry.get("prepull")
    if prepull is not None and not isinstance(prepull, bool):
        c.error("model_manifest_settings.prepull", _cut(prepull), "use true (pull the image onto every GPU node the "
                                                                  "service may run on before it is needed) or false")
        return None, c.problems
    return ManifestService(out, f"{file} ({where})", model, smoke, rollout, tuple(added), adopt, prepull), \
        c.problems


def _smoke(ann: dict[str, str], entry: Mapping[str, Any], c: _Doc) -> str | bool | None:
    allowed = "use always, when-warm or never (true: the default, false: never)"
    if "smoke" in entry:
        value = entry["smoke"]
        if value is None or isinstance(value, bool) or value in models.SMOKE_POLICIES:
            return value
        c.error("model_manifest_settings.smoke", _cut(value), allowed)
        return None
    raw = ann.get(PREFIX + "smoke")
    if raw is None:
        return None
    if raw.strip().lower() not in SMOKE_VALUES:
        c.error(f"metadata.annotations[{PREFIX}smoke]", raw, allowed)
        return None
    return SMOKE_VALUES[raw.strip().lower()]


def _check_progressive(out: dict[str, Any], name: str, model: str, c: _Doc) -> None:
    """What a progressive rollout owns and the manifest must leave to it."""
    if len(name) > progressive.MAX_SERVICE_NAME:
        c.error("metadata.name", name, f"a progressive rollout names each revision <name>-<hash>: use a name of at "
                                       f"most {progressive.MAX_SERVICE_NAME} characters")
    if (out["spec"]["template"].get("metadata") or {}).get("name"):
        c.error("spec.template.metadata.name", out["spec"]["template"]["metadata"]["name"],
                "a progressive rollout names each revision itself (<name>-<hash of the template>); remove the name")
    if out["spec"].get("traffic"):
        c.error("spec.traffic", None, "a progressive rollout sets the traffic (tags stable, candidate, previous); "
                                      "remove spec.traffic, or use rollout strategy replace")
    if not model:
        c.error("spec.template.spec.containers[*].args", None, (
            "a progressive rollout checks the new version with chat requests and needs the served model name: add "
            f"--served-model-name, or the annotation {PREFIX}served-model-name"))


# --- every file, together (the deploy) --------------------------------------------------------------------------------
def entries_of(raw: Any) -> dict[str, dict[str, Any]]:
    """Group data `model_manifest_settings`: {<service name or namespace/name>: {served_model_name, smoke,
    rollout}}; the values are checked with the service they set (check_documents)."""
    if raw is None or raw == {}:
        return {}
    if not isinstance(raw, dict):
        raise ManifestError(f"model_manifest_settings: {shown(raw)} is not allowed; use a mapping of service names "
                            'to settings, e.g. {"knative-qwen7b-svc": {"smoke": "always"}}')
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not all(models.NAME.match(p) for p in key.split("/")) or key.count("/") > 1:
            raise ManifestError(f"model_manifest_settings: key {shown(key)} is not allowed; use a service's name or "
                                "namespace/name")
        if not isinstance(value, dict):
            raise ManifestError(f"model_manifest_settings.{key}: {shown(value)} is not allowed; use a mapping with "
                                f"keys {', '.join(ENTRY_KEYS)}")
        unknown = sorted(str(k) for k in set(value) - set(ENTRY_KEYS))
        if unknown:
            hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, ENTRY_KEYS, n=1)) else k
                     for k in unknown]
            raise ManifestError(f"model_manifest_settings.{key}: unknown key(s) {', '.join(hints)}; allowed: "
                                f"{', '.join(ENTRY_KEYS)}")
        out[key] = value
    return out


def needed_features(files: list[tuple[str, list[Any]]]) -> dict[str, str]:
    """The config-features flags what knfleet adds needs: tolerations, when it adds the GPU toleration (what the
    manifests themselves need is group data's `knative_features`, as for `kubectl apply`; a flag group data
    disables stays disabled, and knfleet then adds no toleration)."""
    for _, docs in files:
        for d in docs:
            if isinstance(d, dict) and (d.get("apiVersion"), d.get("kind")) == KSVC:
                pod = ((d.get("spec") or {}).get("template") or {}).get("spec") if isinstance(d.get("spec"), dict) \
                    else None
                if isinstance(pod, dict) and "tolerations" not in pod and gpus_of(pod) > 0:
                    return {TOLERATIONS: "enabled"}
    return {}


def together(checked: list[Checked], entries: Mapping[str, Any], found: list[models.Model],
             models_where: str = "group data models") -> Manifests:
    """Every file's verdict together: errors of any file stop the run (every error named); a service defined twice
    (two files, or a file and group-data `models`) and a settings entry naming no service are refused, naming both
    places."""
    errors = [str(p) for c in checked for p in c.errors]
    if errors:
        raise ManifestError("model_manifests: lint found errors (the same as `knfleet lint FILE`):\n  "
                            + "\n  ".join(errors))
    where: dict[str, str] = {m.ref: f"{models_where}[{i}]" for i, m in enumerate(found)}
    services: list[ManifestService] = []
    for c in checked:
        for s in c.services:
            if s.ref in where:
                raise ManifestError(f"model_manifests: {s.ref} is defined twice: in {where[s.ref]} and in {s.source}; "
                                    "define each model service once")
            where[s.ref] = s.source
            services.append(s)
    namespaces: dict[str, tuple[dict[str, Any], str]] = {}
    for c in checked:
        for ns, source in c.namespaces:
            name = ns["metadata"]["name"]
            if name in namespaces and namespaces[name][0] != ns:
                raise ManifestError(f"model_manifests: Namespace {name} is defined twice, differently: in "
                                    f"{namespaces[name][1]} and in {source}; define it once")
            namespaces.setdefault(name, (ns, source))
    for key in entries:
        if not any(key in (s.name, s.ref) for s in services):
            close = difflib.get_close_matches(key, [s.ref for s in services] + [s.name for s in services], n=1)
            raise ManifestError(f"model_manifest_settings: {key!r} names no service of model_manifests" + (
                f" (did you mean {close[0]!r}?)" if close else "") + "; use a service's name or namespace/name")
    warnings = tuple(str(p) for c in checked for p in c.problems)
    return Manifests(tuple(services), tuple(ns for ns, _ in namespaces.values()), warnings,
                     tuple(c.file for c in checked))


def documents(raw: Any, base: str | None = None) -> list[tuple[str, list[Any]]]:
    """Each file of group data `model_manifests`, with its documents (read once: see `parse`)."""
    out = []
    for f in resolve(raw, base):
        try:
            out.append((f, parse(f, base)))
        except ManifestError as err:
            raise ManifestError(f"model_manifests: {err}; use YAML files holding Knative Services and Namespaces") \
                from None
    return out


def load(files: list[tuple[str, list[Any]]], raw_entries: Any, cfg: lint.ClusterConfig,
         found: list[models.Model]) -> Manifests:
    """The files checked one by one (check_documents: `knfleet lint FILE`'s verdict) and together; bad input
    raises ManifestError before any cluster is touched."""
    entries = entries_of(raw_entries)
    if entries and not files:
        raise ManifestError("model_manifest_settings: not allowed when model_manifests names no file; use it with "
                            "model_manifests, or remove it")
    return together([check_documents(f, docs, cfg, entries) for f, docs in files], entries, found)


def stage_objects(models_objects: list[dict[str, Any]], m: Manifests) -> list[dict[str, Any]]:
    """The services stage: every Namespace first (a manifest's own over the one knfleet would make; `default` is
    never made), then group-data models' services, then the manifests' in file order."""
    namespaces: dict[str, dict[str, Any]] = {}
    services = []
    for o in models_objects:
        if o.get("kind") == "Namespace":
            namespaces[o["metadata"]["name"]] = o
        else:
            services.append(o)
    for ns in m.namespaces:
        namespaces[ns["metadata"]["name"]] = ns
    for s in m.services:
        if s.namespace not in namespaces and s.namespace not in ALWAYS_THERE:
            namespaces[s.namespace] = {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": s.namespace, "labels": {models.MANAGED_BY: "knfleet"}}}
    return [*(namespaces[k] for k in sorted(namespaces)), *services, *(s.service for s in m.services)]
