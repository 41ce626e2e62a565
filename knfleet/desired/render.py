"""Desired state of an install, rendered in memory: release objects transformed with the user's settings.

Like the Knative Operator: load the release objects, apply the settings (ConfigMap keys, the kourier
Service type, the proxy), and hand out one desired state per object, in apply order. Pure: no cluster.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from knfleet import fsio
from knfleet.desired import bundle as _bundle
from knfleet.desired import ha, mirror
from knfleet.desired.bundle import Bundle
from knfleet.desired.settings import InstallSettings

PROXY_MANIFEST = "knative-nginx.yaml"  # package data: files/ is installed as knfleet.files
NAMESPACES = ("knative-serving", "kourier-system", "knative-nginx")


@dataclass(frozen=True)
class Stage:
    """One apply step: a name, its objects, and the namespaces whose pods must then be Ready."""

    name: str
    objects: tuple[dict[str, Any], ...]

    def manifest(self) -> str:
        """A kubectl-readable List (JSON: fast to write for a megabyte of CRDs)."""
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(self.objects)})


LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader when PyYAML has it: ~10x faster


CACHE_FORMAT = "knfleet-parse-cache/2"
# The entries' folder beside the bundle cache. Not `parsed`, where earlier knfleets kept unchecked entries (a JSON
# list per file): those are never read, and knfleets of that age, which may share the cache, never meet an entry of
# this format.
CACHE_DIR = "parse-cache"


def _cache_key(folder: Path) -> bytes | None:
    """The key of this user's parse cache (32 random bytes in `.key`, mode 0600, made once): an entry carries a MAC
    made with it, so an entry written by anyone without the key (another user, a cache copied from elsewhere) is
    never believed."""
    path = folder / ".key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        pass
    except OSError:
        return None
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            key = fh.read()
    except OSError:
        return None
    if st.st_uid != os.geteuid() or st.st_mode & 0o077 or len(key) != 32:
        return None
    return key


def _mac(key: bytes, digest: str, payload: bytes) -> str:
    return hmac.new(key, f"{CACHE_FORMAT}\n{digest}\n".encode() + payload, hashlib.sha256).hexdigest()


def _cached(folder: Path, key: bytes, digest: str) -> str | None:
    """The cached parse of the text whose sha256 is `digest`, if the entry is intact and made for that text with
    this user's key; None otherwise (missing, corrupt, planted or made for other bytes: the caller parses again)."""
    try:
        raw = (folder / f"{digest}.json").read_bytes()
    except OSError:
        return None
    head, sep, payload = raw.partition(b"\n")
    try:
        meta = json.loads(head) if sep else None
    except ValueError:
        return None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or meta.get("source_sha256") != digest:
        return None
    if not isinstance(meta.get("mac"), str) or not hmac.compare_digest(meta["mac"], _mac(key, digest, payload)):
        return None
    try:
        text = payload.decode("utf-8")
        if not isinstance(json.loads(text), list):
            return None
    except ValueError:
        return None
    return text


@lru_cache(maxsize=16)
def _parsed_json(text: str) -> str:
    """A manifest's documents as one JSON text. Parsing a megabyte of release YAML costs more than everything
    else a converged run does, so the result is kept beside the bundle cache, in a folder private to the user
    (0700), keyed by the sha256 of the text's bytes and checked against it: an entry is used only when it names
    that sha256 and its MAC (this user's key) matches; anything else (a corrupt, planted or foreign entry) is
    parsed again and rewritten."""
    data = text.encode()
    digest = hashlib.sha256(data).hexdigest()
    folder = _bundle.default_cache() / CACHE_DIR
    key = _cache_key(folder) if fsio.private_dir(folder) else None
    if key is not None:
        found = _cached(folder, key, digest)
        if found is not None:
            return found
    out = json.dumps([d for d in yaml.load_all(text, Loader=LOADER) if d])  # noqa: S506 - a safe loader
    if key is not None:
        payload = out.encode()
        head = json.dumps({"format": CACHE_FORMAT, "source_sha256": digest, "mac": _mac(key, digest, payload)})
        try:
            fsio.write_atomic(folder / f"{digest}.json", head.encode() + b"\n" + payload, mode=0o600)
        except OSError:
            pass  # a cache only
    return out


def _parse(text: str) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(_parsed_json(text)))


def load_docs(text: str) -> list[dict[str, Any]]:
    """The YAML documents of a manifest (fresh copies: callers may transform them)."""
    return json.loads(_parsed_json(text))


def ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{ns}{meta.get('name') or meta.get('generateName', '?')}"


def _is_crd(o: dict[str, Any]) -> bool:
    return o.get("kind") == "CustomResourceDefinition"


def _with_data(cm: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    out = copy.deepcopy(cm)
    out["data"] = {**(out.get("data") or {}), **keys}
    return out


def config_maps(bundle: Bundle | None, settings: InstallSettings) -> dict[str, dict[str, str]]:
    """The data of each `config-*` ConfigMap as the install leaves it: the release's keys with knfleet's merged in
    (what Knative's config webhook, and knfleet's check of it, see)."""
    if bundle is None:
        return settings.configmaps()
    owned = settings.owned_config()
    release = {o["metadata"]["name"]: dict(o.get("data") or {}) for o in _parse(bundle.text("serving-core.yaml"))
               if o.get("kind") == "ConfigMap" and o["metadata"].get("namespace") == "knative-serving"}
    return {name: {**data, **owned.get(name, {})} for name, data in release.items()}


# Fields of Knative's webhook configurations that Knative's webhook writes itself at start-up (knative.dev/pkg's
# webhook reconcilers: one rule per resource, the CA bundle, the path). Whoever keeps applying the release's
# version of them drifts forever (knative/serving#12474, #13449; fluxcd/kustomize-controller#792), so knfleet
# applies these objects without them and leaves them to Knative.
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


def leave_to_knative(obj: dict[str, Any]) -> dict[str, Any]:
    """A Knative webhook configuration without the fields Knative's webhook owns (rules, caBundle, path)."""
    if obj.get("kind") not in WEBHOOK_KINDS or not obj["metadata"]["name"].endswith(".knative.dev"):
        return obj
    out = copy.deepcopy(obj)
    for hook in out.get("webhooks") or []:
        hook.pop("rules", None)
        client = hook.get("clientConfig") or {}
        client.pop("caBundle", None)
        (client.get("service") or {}).pop("path", None)
    return out


def proxy_timeout(settings: InstallSettings) -> int:
    """The proxy's read/send timeout: above the revisions' maximum timeout."""
    return max(settings.max_revision_timeout, 600) + 60


def proxy_values(settings: InstallSettings) -> dict[str, str]:
    """The values group data puts into the proxy's objects, each checked as what it is (an image reference, a DNS
    name, a Service type, a number of seconds): a value that is not one is refused naming the field."""
    from knfleet.desired import gostrconv, imageref
    from knfleet.desired.settings import SERVICE_TYPES, SettingsError
    from knfleet.errors import shown

    why = imageref.problem(settings.proxy_image)
    if why:
        raise SettingsError(f"proxy_image: {shown(settings.proxy_image)} is not allowed ({why}); use "
                            f"{imageref.ALLOWED}")
    if not isinstance(settings.cluster_domain, str) or gostrconv.is_dns1123_subdomain(settings.cluster_domain):
        raise SettingsError(f"cluster_domain: {shown(settings.cluster_domain)} is not allowed; use the cluster's DNS "
                            "domain (kubelet --cluster-domain), such as cluster.local")
    if settings.proxy_service_type not in SERVICE_TYPES:
        raise SettingsError(f"proxy_service_type: {shown(settings.proxy_service_type)} is not allowed; use one of "
                            f"{', '.join(SERVICE_TYPES)}")
    timeout = proxy_timeout(settings)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise SettingsError(f"config-defaults max-revision-timeout-seconds: {shown(timeout)} gives no proxy timeout; "
                            "use whole seconds")
    return {"image": settings.proxy_image, "cluster_domain": settings.cluster_domain,
            "service_type": settings.proxy_service_type, "timeout": str(timeout)}


def proxy_objects(settings: InstallSettings) -> list[dict[str, Any]]:
    """The proxy's objects (files/knative-nginx.yaml, parsed as shipped) with group data's values set into the
    parsed objects: the container image, the Service type, and the nginx configuration's upstream domain and
    timeouts. No value is ever pasted into YAML text, so none can add a document, an object or a field."""
    values = proxy_values(settings)
    docs = load_docs(resources.files("knfleet.files").joinpath(PROXY_MANIFEST).read_text())
    for o in docs:
        kind = o.get("kind")
        if kind == "ConfigMap":
            conf = o["data"]["default.conf"]
            o["data"]["default.conf"] = conf.replace("__PROXY_TIMEOUT__", values["timeout"]) \
                .replace("__CLUSTER_DOMAIN__", values["cluster_domain"])
        elif kind == "Deployment":
            for c in o["spec"]["template"]["spec"]["containers"]:
                if c.get("image") == "__IMAGE__":
                    c["image"] = values["image"]
        elif kind == "Service":
            o["spec"]["type"] = values["service_type"]
    left = [p for p in ("__PROXY_TIMEOUT__", "__CLUSTER_DOMAIN__", "__IMAGE__", "__SERVICE_TYPE__")
            if p in json.dumps(docs)]
    if left:
        raise AssertionError(f"{PROXY_MANIFEST}: placeholder(s) {left} not filled")  # the shipped file changed
    return docs


_STAGES: OrderedDict[tuple[Any, ...], tuple[Stage, ...]] = OrderedDict()
STAGES_KEPT = 8


def clear_caches() -> None:
    """Forget every parse and rendering kept in this process (tests of the parse cache)."""
    _parsed_json.cache_clear()
    _STAGES.clear()


def install_stages(bundle: Bundle, settings: InstallSettings) -> list[Stage]:
    """crds -> config (namespace + ConfigMaps) -> core -> kourier -> proxy.

    Clusters with the same bundle and settings share one rendering (the same Stage objects: treat them as read-only):
    rendering the release once per cluster kept a copy of every parsed release object per cluster, gigabytes at a
    thousand clusters (docs/fleet-scale.md). The key is the files' texts and the settings' full repr."""
    key = (bundle.version, tuple(sorted(bundle.files.items())), repr(settings))
    found = _STAGES.get(key)
    if found is None:
        found = _STAGES[key] = tuple(_install_stages(bundle, settings))
        while len(_STAGES) > STAGES_KEPT:
            _STAGES.popitem(last=False)
    return list(found)


def _install_stages(bundle: Bundle, settings: InstallSettings) -> list[Stage]:
    crds = [o for o in load_docs(bundle.text("serving-crds.yaml")) if _is_crd(o)]
    core = load_docs(bundle.text("serving-core.yaml"))
    owned = settings.owned_config()
    namespace = [o for o in core if o.get("kind") == "Namespace"]
    configmaps = [
        _with_data(o, owned.get(o["metadata"]["name"], {})) for o in core
        if o.get("kind") == "ConfigMap" and o["metadata"].get("namespace") == "knative-serving"
    ]
    rest = [leave_to_knative(o) for o in core if not _is_crd(o) and o.get("kind") not in ("Namespace", "ConfigMap")]
    rest = [o for o in core if o.get("kind") == "ConfigMap" and o["metadata"].get("namespace") != "knative-serving"] \
        + rest
    for name in settings.optional_files:
        rest += [o for o in load_docs(bundle.text(name)) if "generateName" not in o.get("metadata", {})]
    kourier = []
    for o in load_docs(bundle.text("kourier.yaml")):
        if o.get("kind") == "Service" and o["metadata"].get("name") == "kourier" \
                and o["metadata"].get("namespace") == "kourier-system":
            o = copy.deepcopy(o)
            o["spec"]["type"] = settings.kourier_service_type
        kourier.append(o)
    stages = [
        Stage("crds", tuple(crds)),
        Stage("config", tuple(namespace + configmaps)),
        Stage("core", tuple(namespace + rest)),
        Stage("kourier", tuple(kourier)),
        Stage("proxy", tuple(proxy_objects(settings))),
    ]
    return [Stage(st.name, tuple(images(o, settings) for o in ha.transform(list(st.objects), settings.ha_replicas)))
            for st in stages]


ENVOY = "docker.io/envoyproxy/envoy:"  # kourier.yaml's gateway image: a floating tag (v1.31-latest)


def images(obj: dict[str, Any], settings: InstallSettings) -> dict[str, Any]:
    """An object with envoy_image pinned over kourier.yaml's floating Envoy tag, then every image moved to
    image_mirror (digests kept) and image_pull_secrets added (knfleet.desired.mirror)."""
    pin = {image: settings.envoy_image for _, image in mirror.images_of(obj) if image.startswith(ENVOY)} \
        if settings.envoy_image else None
    return mirror.rewrite(obj, settings.image_mirror, settings.image_pull_secrets, pin)


def _builtin(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leave out Knative's own custom resources: they go with their CRDs, and once the CRDs are gone
    kubectl could not even map their kinds (a second uninstall must be a clean no-op)."""
    return [o for o in objs if not o.get("apiVersion", "").split("/")[0].endswith("knative.dev")
            and "generateName" not in (o.get("metadata") or {})]


def uninstall_stages(bundle: Bundle, settings: InstallSettings) -> list[Stage]:
    """What to delete, in the runbook's reverse order: proxy, optional files, kourier, core, crds."""
    stages = [Stage("proxy", tuple(proxy_objects(settings)))]
    for name in settings.optional_files:
        stages.append(Stage(name.removesuffix(".yaml"), tuple(_builtin(load_docs(bundle.text(name))))))
    stages.append(Stage("kourier", tuple(_builtin(load_docs(bundle.text("kourier.yaml"))))))
    core = _builtin([o for o in load_docs(bundle.text("serving-core.yaml")) if not _is_crd(o)])
    stages.append(Stage("core", tuple(core)))
    stages.append(Stage("crds", tuple(o for o in load_docs(bundle.text("serving-crds.yaml")) if _is_crd(o))))
    return stages
