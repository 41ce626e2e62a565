"""What a kubelet makes of a pod's spec before it starts a container, done for a local process (no chroot, no image
filesystem): the pure parts of the pod runner (pods.py), testable without a cluster.

- Volumes: Secret, ConfigMap, downward API and projected volumes (the service account token the ServiceAccount
  admission plugin injects included) are written to files under the pod's folder, as the kubelet writes them
  (`items` pick and rename keys, `defaultMode` / an item's `mode` set the file mode, `optional` lets a missing source
  be an empty volume; a missing required one keeps the container waiting, as the kubelet's FailedMount does);
  emptyDir is a folder of the pod.
- Paths: a process here sees this machine's filesystem, so every `mountPath` (and the image's own folders: knfleet's
  WORKDIR /knfleet is this checkout, /opt/venv the venv the runner runs from) that starts a path in the container's
  args, command, env values or workingDir is rewritten to the local folder that stands for it.
- Command: a pod's `command[0]` must name the image's entrypoint (binaries.Binary.entrypoints); the process is the
  local build or script behind it; `$(VAR)` is expanded in command and args as Kubernetes does.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from localcluster.runner.binaries import Binary

DEFAULT_MODE = 0o644  # the API's default defaultMode (420)
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
# A container path in a string: preceded by its start or a character no path holds here (`=`, `:`, space, ...),
# followed by its end, `/` or such a character (a `/` after it is fine: the path goes on below the mount).
_PATH_CHAR = r"[\w.@+~-]"

# (kind "secret" | "configmap", name) -> the object's data as bytes, or None when it does not exist
Reader = Callable[[str, str], "dict[str, bytes] | None"]
# (audience or None for the API server's, expirationSeconds) -> a token of the pod's service account bound to the pod
Tokens = Callable[["str | None", int], str]
Files = dict[str, tuple[bytes, int]]  # path in the volume -> (content, mode)


class WaitingError(RuntimeError):
    """The container cannot be created yet: the kubelet keeps it waiting with `reason` and tries again (a missing
    Secret or ConfigMap of a volume or an env reference)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StartError(RuntimeError):
    """The container cannot start as specified (its command is not in the image, its workingDir is nowhere here):
    the kubelet's StartError, exit code 128."""


# --- env and fields --------------------------------------------------------------------------------------------------
def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, unknown ones stay as they are."""
    text = text.replace("$$", "\0")
    text = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)
    return text.replace("\0", "$")


def field_ref(pod: dict[str, Any], path: str) -> str:
    """A downward API fieldRef's value (env vars and downward API volume files)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):  # volumes only: one key="value" line each
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get(path.split(".")[1]) or {}).items()))
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP"),
    }
    if path not in simple:
        raise ValueError(f"unsupported fieldRef {path}")
    return str(simple[path] or "")


# --- volumes ---------------------------------------------------------------------------------------------------------
def key_files(kind: str, name: str, data: dict[str, bytes] | None, items: list[dict[str, Any]] | None,
              default_mode: int | None, optional: bool) -> Files:
    """The files of a Secret or ConfigMap source: every key as a file of its name, or only `items` (key -> path,
    each with its own mode). A missing object or listed key is an empty volume when `optional`, else the container
    waits (the kubelet's FailedMount)."""
    mode = DEFAULT_MODE if default_mode is None else int(default_mode)
    what = "Secret" if kind == "secret" else "ConfigMap"
    if data is None:
        if optional:
            return {}
        raise WaitingError("ContainerCreating", f'MountVolume.SetUp failed: {kind} "{name}" not found')
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    files: Files = {}
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise WaitingError("ContainerCreating", f"MountVolume.SetUp failed: {what} {name} has no key {key!r} "
                                                    "(listed in the volume's items)")
        files[item.get("path") or key] = (data[key], mode if item.get("mode") is None else int(item["mode"]))
    return files


def _downward_files(pod: dict[str, Any], items: list[dict[str, Any]], mode: int) -> Files:
    files: Files = {}
    for item in items:
        if "fieldRef" in item:
            value = field_ref(pod, item["fieldRef"]["fieldPath"])
        else:  # resourceFieldRef: the limits the runner does not enforce; "0" when none is set
            value = "0"
        files[item["path"]] = (value.encode(), mode if item.get("mode") is None else int(item["mode"]))
    return files


def _source_files(source: dict[str, Any], read: Reader, pod: dict[str, Any], tokens: Tokens, mode: int) -> Files:
    """One source of a projected volume."""
    if "secret" in source or "configMap" in source:
        kind = "secret" if "secret" in source else "configmap"
        ref = source.get("secret") or source.get("configMap") or {}
        return key_files(kind, ref["name"], read(kind, ref["name"]), ref.get("items"), mode,
                         bool(ref.get("optional")))
    if "downwardAPI" in source:
        return _downward_files(pod, source["downwardAPI"].get("items") or [], mode)
    if "serviceAccountToken" in source:
        sat = source["serviceAccountToken"]
        token = tokens(sat.get("audience") or None, int(sat.get("expirationSeconds") or 3607))
        return {sat["path"]: (token.encode(), mode)}
    raise StartError(f"projected volume source {sorted(source)} is not one the local pod runner materialises "
                     "(secret, configMap, downwardAPI, serviceAccountToken)")


def volume_files(volume: dict[str, Any], read: Reader, pod: dict[str, Any], tokens: Tokens) -> Files | None:
    """The files a volume holds when the container starts; None for an emptyDir (a folder that lives with the pod).
    A volume kind the runner cannot stand for (hostPath, a PVC, ...) is a StartError that names it."""
    if "secret" in volume:
        ref = volume["secret"]
        name = ref["secretName"]
        return key_files("secret", name, read("secret", name), ref.get("items"), ref.get("defaultMode"),
                         bool(ref.get("optional")))
    if "configMap" in volume:
        ref = volume["configMap"]
        return key_files("configmap", ref["name"], read("configmap", ref["name"]), ref.get("items"),
                         ref.get("defaultMode"), bool(ref.get("optional")))
    mode = DEFAULT_MODE
    if "projected" in volume:
        proj = volume["projected"]
        mode = DEFAULT_MODE if proj.get("defaultMode") is None else int(proj["defaultMode"])
        files: Files = {}
        for source in proj.get("sources") or []:
            files.update(_source_files(source, read, pod, tokens, mode))
        return files
    if "downwardAPI" in volume:
        dapi = volume["downwardAPI"]
        mode = DEFAULT_MODE if dapi.get("defaultMode") is None else int(dapi["defaultMode"])
        return _downward_files(pod, dapi.get("items") or [], mode)
    if "emptyDir" in volume:
        return None
    kinds = sorted(k for k in volume if k != "name")
    raise StartError(f"volume {volume.get('name')!r} is a {', '.join(kinds) or 'volume of no kind'}: the local pod "
                     "runner materialises secret, configMap, projected, downwardAPI and emptyDir volumes only")


def write_volume(root: Path, name: str, files: Files | None) -> Path:
    """The volume's folder `root/name`. Files are written to a fresh folder that `root/name` (a symlink) is then
    pointed at in one step, as the kubelet's atomic writer does, so a running container never sees half a volume.
    An emptyDir (None) is a plain folder kept across container restarts."""
    root.mkdir(parents=True, exist_ok=True)
    link = root / name
    if files is None:
        link.mkdir(exist_ok=True)
        return link
    real = root / f"..{name}.{time.time_ns()}"
    real.mkdir()
    for rel, (content, mode) in files.items():
        target = (real / rel).resolve()
        if real.resolve() not in target.parents:
            raise StartError(f"volume {name!r}: path {rel!r} leaves the volume")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.chmod(target, mode & 0o777)
    tmp = root / f"..{name}.link"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(real.name)
    os.replace(tmp, link)
    for old in root.glob(f"..{name}.*"):
        if old.is_dir() and not old.is_symlink() and old.name != real.name:
            shutil.rmtree(old, ignore_errors=True)
    return link


# --- paths -----------------------------------------------------------------------------------------------------------
Mounts = list[tuple[str, Path]]  # container path -> local path, longest container path first


def _clean(path: str) -> str:
    return str(PurePosixPath(path)) if path else path


def mounts(container: dict[str, Any], volume_dirs: dict[str, Path], image_dirs: dict[str, Path]) -> Mounts:
    """Where each container path the process may name is here: the container's volumeMounts (with subPath), then
    the image's own folders (a mount below them wins, as it shadows the image's files in a container)."""
    found: dict[str, Path] = {_clean(k): v for k, v in image_dirs.items()}
    for m in container.get("volumeMounts") or []:
        if m["name"] not in volume_dirs:
            raise StartError(f"volumeMount {m['mountPath']}: the pod has no volume {m['name']!r} the runner wrote")
        local = volume_dirs[m["name"]]
        if m.get("subPath"):
            local = local / m["subPath"]
        found[_clean(m["mountPath"])] = local
    return sorted(found.items(), key=lambda kv: len(kv[0]), reverse=True)


def rewrite(text: str, where: Mounts) -> str:
    """Every container path in `text` that starts with a mount's path (whole path segments) -> the local path. One
    pass over the text, the longest mount path first, so a local path written in is never rewritten again."""
    paths = {p: local for p, local in where if p not in ("", "/")}
    if not paths:
        return text
    alternatives = "|".join(re.escape(p) for p in sorted(paths, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.@+~/-])(?:{alternatives})(?!{_PATH_CHAR})")
    return pattern.sub(lambda m: str(paths[m.group(0)]), text)


def argv(binary: Binary, path: Path, container: dict[str, Any], env: dict[str, str], where: Mounts) -> list[str]:
    """The process's argv: the image's entrypoint is `path` (the local build or script); `command` (which must name
    that entrypoint) and `args` with `$(VAR)` expanded, then container paths rewritten."""
    command = [str(x) for x in container.get("command") or []]
    args = [str(x) for x in container.get("args") or []]
    if command:
        head = expand(command[0], env)
        if head not in binary.entrypoints:
            raise StartError(f"command {head!r} is not in image {container.get('image')}: the local pod runner runs "
                             f"its entrypoint only ({', '.join(binary.entrypoints)})")
        rest = command[1:] + args
    else:
        rest = args
    return [str(path), *(rewrite(expand(a, env), where) for a in rest)]


def working_dir(container: dict[str, Any], binary: Binary, where: Mounts, default: Path) -> Path:
    """The process's working directory: the container's workingDir, else the image's WORKDIR, rewritten to where it
    is here; `default` (the pod's folder) for an image without a WORKDIR. A folder that stands for nothing here is
    a StartError (no image filesystem to create it in)."""
    wd = container.get("workingDir") or binary.workdir
    if not wd:
        return default
    local = rewrite(wd, where)
    if local == wd:
        raise StartError(f"workingDir {wd} is neither below a volume mount nor one of the image's folders the local "
                         f"pod runner knows ({', '.join(p for p, _ in where) or 'none'})")
    return Path(local)


def decode(kind: str, obj_data: dict[str, str] | None, binary_data: dict[str, str] | None = None) -> dict[str, bytes]:
    """A Secret's data (base64) or a ConfigMap's data (text) and binaryData (base64) as bytes."""
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in (obj_data or {}).items()}
    out = {k: v.encode() for k, v in (obj_data or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (binary_data or {}).items()})
    return out

