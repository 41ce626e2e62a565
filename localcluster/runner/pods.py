"""The pod runner: the kubelet of the pods whose containers are real binaries (Knative's webhook, controller and
post-install Jobs), each run as the build of the release its image digest belongs to (releases.pick): a 1.18.1 pod
runs the v0.45.1 build; a pod of a release with no build here (1.17.2) is not run at all, its container waiting with
the reason. Pods of knfleet's own image (`knfleet jobs`' shards and coordinator) run this checkout's `knfleet`.

kwok schedules every pod and gives it an IP. For a pod whose container image names a binary we built
(binaries.BINARIES), the runner does what a kubelet would: starts the process with the env and args
of the pod spec (fieldRefs, ConfigMap/Secret refs, `$(VAR)` expansion), its volumes written under the pod's
folder and the container paths in its args, env and workingDir rewritten to them (podspec.py), with the
credentials of the pod's service account (a TokenRequest bound to the pod, so the release's own RBAC applies), with free
local ports in place of the container ports, probes its readiness as the pod spec says, writes the
container status (Running, Ready, CrashLoopBackOff with restart counts and the last exit), restarts
it with back-off, and stops it by PID when the pod goes away. Everything it starts is recorded in
`runner.json` so `make local-down` can stop it by PID even if the runner itself was killed.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.rest import ApiException

from localcluster import procs
from localcluster.runner import podspec, releases
from localcluster.runner.binaries import METRICS_PORT_MAX, Binary, for_image
from localcluster.runner.podspec import WaitingError, expand, field_ref

__all__ = ["PodRunner", "expand", "field_ref", "stop_recorded"]

# Fault injection for tests: {"<namespace>/<app label>": "hold" | "ready-without-process"}. "hold" never starts
# the process (the container stays ContainerCreating, like a stuck image pull); "ready-without-process" reports
# the container Ready with nothing behind it (a readiness probe that lies).
FAULTS_FILE = "runner-faults.json"
FAULTS = ("hold", "ready-without-process")
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 1.0, 30.0, 60.0  # kubelet: 10 s doubling to 5 min, reset after 10 min
STOP_GRACE_MAX = 10.0
KNFLEET_GRACE_MAX = 60.0  # a deleted knfleet pod's grace period, at most (its runs stop before their next step)
TOKEN_SECONDS = 24 * 3600
TERMINAL = ("Succeeded", "Failed")
# What a kubelet writes for a container of a pod it ends without a record of it (never started, or its runtime lost
# it): kubelet status_manager.go TerminatePod, k8s 1.32.
UNKNOWN_END = {"exitCode": 137, "reason": "ContainerStatusUnknown",
               "message": "The container could not be located when the pod was terminated"}


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
        return True


def free_port(high: int = METRICS_PORT_MAX, low: int = 20000) -> int:
    """A free port below the kernel's ephemeral range (so no outgoing connection takes it meanwhile)."""
    for _ in range(200):
        port = random.randint(low, high)  # noqa: S311 - not security relevant
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def _set_parent_death_signal() -> None:
    """The child gets SIGTERM when the runner dies, so a killed runner leaves no orphan behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Container:
    """One real process standing for one container of one pod."""

    namespace: str
    pod: str
    uid: str
    name: str
    image: str
    binary: Binary
    labels: dict[str, str]
    ports: dict[int, int] = field(default_factory=dict)  # container port -> local port
    named: dict[str, int] = field(default_factory=dict)  # container port name -> container port
    readiness: dict[str, Any] | None = None
    restart_policy: str = "Always"
    grace: float = 30.0
    popen: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    started_mono: float = 0.0
    restarts: int = 0
    last_exit: dict[str, Any] | None = None
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    ready: bool = False
    done: bool = False  # exited for good (restartPolicy Never/OnFailure)
    next_probe: float = 0.0
    probe_failures: int = 0
    log: Path | None = None
    release: str | None = None  # the Knative release of the image (by digest)
    path: Path | None = None  # the build that runs; None: nothing may run, `blocked` says why
    blocked: tuple[str, str] | None = None  # (waiting reason, message)
    waiting: tuple[str, str] | None = None  # cannot be created yet (a missing Secret, ...): (reason, message)
    container_id: str | None = None  # of the last process started (kept after it exited, as a kubelet keeps it)
    kill_at: float | None = None  # its pod is being deleted: SIGTERM was sent, SIGKILL at this time (knfleet's pods)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod}/{self.name}"

    def local_port(self, port: int | str) -> int | None:
        number = self.named.get(port) if isinstance(port, str) else port
        return self.ports.get(number) if number is not None else None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen and self.popen.poll() is None else None


class PodRunner:
    def __init__(self, api: Any, cluster_dir: Path, bin_root: Path, server: str, ca_data: str,
                 log: Callable[[str], None] = print) -> None:
        from kubernetes import client  # the runner's only client, built from the admin kubeconfig

        self.core = client.CoreV1Api(api)
        self.dir = cluster_dir
        self.bin_root = bin_root  # one folder per build: <bin_root>/knative-serving-v<module>/<binary>
        self.server = server
        self.ca_data = ca_data
        self.log = log
        self.containers: dict[str, Container] = {}
        self.patched: dict[str, str] = {}  # pod uid -> last status written (json)
        self.ended: set[str] = set()  # uids of deleted pods whose final status is written and delete sent
        self.state_file = cluster_dir / "runner.json"
        self.faults_file = cluster_dir / FAULTS_FILE
        self.stopping: list[tuple[subprocess.Popen[bytes], float, str]] = []
        self.faults: dict[str, str] = {}

    # --- what runs ------------------------------------------------------------------------------------
    def endpoints(self, namespace: str, selector: dict[str, str]) -> list[Container]:
        """Ready containers of pods in `namespace` whose labels match `selector` (a Service's endpoints)."""
        return [c for c in self.containers.values()
                if c.namespace == namespace and c.ready and c.pid
                and all(c.labels.get(k) == v for k, v in selector.items())]

    def _save(self) -> None:
        data = {c.key: {"pid": c.pid, "marker": str(c.path)} for c in self.containers.values() if c.pid}
        data.update({f"{key} (stopping)": {"pid": p.pid, "marker": str(p.args[0])} for p, _, key in self.stopping
                     if p.poll() is None})
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_file)

    # --- reconcile ------------------------------------------------------------------------------------
    def _load_faults(self) -> None:
        try:
            raw = json.loads(self.faults_file.read_text())
        except (OSError, ValueError):
            raw = {}
        faults = {k: v for k, v in raw.items() if v in FAULTS} if isinstance(raw, dict) else {}
        if faults != self.faults:
            self.log(f"faults now: {faults or 'none'}")
        self.faults = faults

    def fault(self, c: Container) -> str | None:
        return self.faults.get(f"{c.namespace}/{c.labels.get('app', '')}")

    def reconcile(self, pods: list[dict[str, Any]]) -> None:
        self._load_faults()
        wanted: set[str] = set()
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        ending: dict[str, dict[str, Any]] = {}
        for pod in pods:
            meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
            # a kubelet ends the pods bound to its node; an unscheduled one is the pod GC's (it marks it Failed)
            if meta.get("deletionTimestamp") and spec.get("nodeName") and self._ends_itself(pod):
                wanted |= self._terminate(pod)
                ending[meta["uid"]] = pod
                continue
            if meta.get("deletionTimestamp") or not status.get("podIP") or not spec.get("nodeName"):
                continue
            if status.get("phase") in TERMINAL and not any(c.uid == meta["uid"] for c in self.containers.values()):
                continue  # finished before this runner started: a kubelet never runs a finished pod's containers
            for ctr in spec.get("containers") or []:
                binary = for_image(ctr.get("image", ""))
                if binary is None:
                    continue
                key = f"{meta['namespace']}/{meta['name']}/{ctr['name']}"
                cur = self.containers.get(key)
                if cur is not None and cur.uid != meta["uid"]:
                    self._stop(cur, "pod replaced")
                    cur = None
                if cur is None:
                    cur = self._new(pod, ctr, binary)
                    self.containers[key] = cur
                wanted.add(key)
        for key in list(self.containers):
            if key not in wanted:
                self._stop(self.containers.pop(key), "pod gone or terminating")
        now = time.monotonic()
        for c in self.containers.values():
            self._tend(c, by_uid.get(c.uid), now)
        for pod in ending.values():
            self._finish_deleted(pod)
        for uid in {c.uid for c in self.containers.values()}:
            if uid in by_uid:
                self._write_status(by_uid[uid])
        for uid in list(self.patched):
            if uid not in by_uid:
                self.patched.pop(uid)
        self.ended &= set(by_uid)
        self.reap()
        self._save()

    def _new(self, pod: dict[str, Any], ctr: dict[str, Any], binary: Binary) -> Container:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        named = {p["name"]: p["containerPort"] for p in ctr.get("ports") or [] if p.get("name")}
        c = Container(
            namespace=meta["namespace"], pod=meta["name"], uid=meta["uid"], name=ctr["name"],
            image=ctr.get("image", ""), binary=binary, labels=dict(meta.get("labels") or {}), named=named,
            readiness=ctr.get("readinessProbe"), restart_policy=spec.get("restartPolicy") or "Always",
            grace=min(float(spec.get("terminationGracePeriodSeconds") or 30), STOP_GRACE_MAX),
        )
        c.ports = {port: free_port() for port in binary.port_env.values()}
        self._pick(c)
        version = c.labels.get("app.kubernetes.io/version", "?")
        what = f"Knative {c.release}" if c.binary.knative else "knfleet's image: this checkout"
        runs = f"{c.path} ({what})" if c.path else f"nothing: {c.blocked[1] if c.blocked else '?'}"
        self.log(f"{c.key}: image {c.image} (release label {version}) runs {runs}; "
                 f"ports {', '.join(f'{k}->{v}' for k, v in sorted(c.ports.items()))}")
        return c

    def _pick(self, c: Container) -> None:
        """The build of the image's release, or why nothing may run (kept as the container's waiting reason)."""
        if not c.binary.knative:  # knfleet's image: this checkout's console script, from the venv the runner runs in
            c.path = knfleet_script()
            c.blocked = None if c.path.exists() else (
                "KnfleetNotInstalled", f"{c.path} does not exist: `make venv` installs knfleet's console script")
            if c.blocked:
                c.path = None
            return
        got = releases.pick(c.image, self.bin_root)
        if got is None:  # not one of ours (cannot happen: reconcile only makes Containers for our binaries)
            c.blocked = ("UnknownKnativeRelease", f"image {c.image} is not a Knative binary the runner backs")
            return
        c.release, c.path = got.release, got.path
        c.blocked = None if got.path else (got.reason, got.message)

    # --- a deleted pod of knfleet's image ends as a kubelet ends it -----------------------------------------------
    @staticmethod
    def _ends_itself(pod: dict[str, Any]) -> bool:
        """knfleet's pods: kwok leaves their deletion to the runner (nodes.kwok_config), so a Job sees them
        terminating until their process has ended, as on a real node."""
        return any((b := for_image(x.get("image", ""))) is not None and not b.knative
                   for x in (pod.get("spec") or {}).get("containers") or [])

    def _terminate(self, pod: dict[str, Any]) -> set[str]:
        """SIGTERM to each of the pod's running processes (once), SIGKILL when the grace period is over; none is
        started or restarted any more. The keys of its containers (kept until _finish_deleted)."""
        meta, now = pod["metadata"], time.monotonic()
        grace = min(float(meta.get("deletionGracePeriodSeconds") or 30), KNFLEET_GRACE_MAX)
        keys = set()
        for key, c in self.containers.items():
            if c.uid != meta["uid"]:
                continue
            keys.add(key)
            c.restart_policy = "Never"
            if c.popen is not None and c.popen.poll() is None:
                if c.kill_at is None:
                    self.log(f"{c.key}: pod deleted: SIGTERM to pid {c.popen.pid} (grace {grace:.0f}s)")
                    c.popen.send_signal(signal.SIGTERM)  # our own child: its Popen knows the PID
                    c.kill_at = now + grace
                elif now >= c.kill_at:
                    self.log(f"{c.key}: pid {c.popen.pid} killed after its grace period")
                    c.popen.kill()
            elif c.popen is None:
                c.done = True  # never started, or already ended: nothing to stop
        return keys

    def _finish_deleted(self, pod: dict[str, Any]) -> None:
        """Once every process of a deleted knfleet pod has ended: its final status (a terminal phase, as a kubelet's
        TerminatePod makes sure of), then the delete (grace 0). Retried next time if the status was not written."""
        meta = pod["metadata"]
        if meta["uid"] in self.ended:  # done already; the pod is still listed (a Job's finalizer, a stale cache)
            return
        mine = [c for c in self.containers.values() if c.uid == meta["uid"]]
        if any(c.popen is not None and c.popen.poll() is None for c in mine):
            return
        for c in mine:
            c.done = True
        written = self._write_status(pod) if mine else self._write_unknown_end(pod)
        if not written:
            return
        from kubernetes import client

        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=client.V1DeleteOptions(
                grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])))
            self.log(f"{meta['namespace']}/{meta['name']}: deleted (its processes ended)")
        except ApiException as err:
            if err.status not in (404, 409):
                self.log(f"{meta['namespace']}/{meta['name']}: not deleted: {err.reason}")
                return
        self.ended.add(meta["uid"])
        for key in [k for k, c in self.containers.items() if c.uid == meta["uid"]]:
            self.containers.pop(key)

    def _write_unknown_end(self, pod: dict[str, Any]) -> bool:
        """A deleted pod with no record here (deleted before it got an IP, or before this runner started): phase
        Failed, each container not already terminated ended as ContainerStatusUnknown (137), unless the pod is
        terminal already. True once written (or nothing to write)."""
        status = unknown_end_status(pod)
        if status is None:
            return True
        meta = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status},
                                                  _content_type="application/merge-patch+json")
        except ApiException as err:
            if err.status == 404:
                return True
            self.log(f"pod {meta['namespace']}/{meta['name']}: final status not written: {err.reason}")
            return False
        self.log(f"{meta['namespace']}/{meta['name']}: deleted before it ran here: marked Failed")
        return True

    def _tend(self, c: Container, pod: dict[str, Any] | None, now: float) -> None:
        if c.kill_at is not None:  # its pod is being deleted: only its end is watched
            if c.popen is not None and c.popen.poll() is not None:
                self._exited(c, now)
            return
        fault = self.fault(c)
        if fault is not None:
            if c.popen is not None:
                self._stop(c, f"fault {fault}")
            c.ready = fault == "ready-without-process"
            c.started_at = c.started_at or (now_iso() if c.ready else None)
            return
        if c.popen is not None and c.popen.poll() is not None:
            self._exited(c, now)
        if c.popen is None and c.path is None:
            was = c.blocked
            self._pick(c)  # a missing build may have been built meanwhile
            if c.blocked is not None:
                if c.blocked != was:
                    self.log(f"{c.key}: not run: {c.blocked[0]}: {c.blocked[1]}")
                return
        if c.popen is None and not c.done and now >= c.next_start and pod is not None:
            try:
                self._start(c, pod)
            except WaitingError as err:  # the kubelet retries until the Secret or ConfigMap is there
                if c.waiting != (err.reason, str(err)):
                    self.log(f"{c.key}: waiting: {err.reason}: {err}")
                c.waiting = (err.reason, str(err))
                c.next_start = now + c.backoff
                c.backoff = min(c.backoff * 2, BACKOFF_MAX)
            except Exception as err:  # noqa: BLE001 - surfaced as the container's last termination
                c.waiting = None
                c.last_exit = {"terminated": {"exitCode": 128, "reason": "StartError", "message": str(err)[:500],
                                              "startedAt": now_iso(), "finishedAt": now_iso()}}
                self.log(f"{c.key}: cannot start: {err}")
                if c.restart_policy == "Never":  # a kubelet does not try again: the pod fails
                    c.done = True
                c.next_start = now + c.backoff
                c.backoff = min(c.backoff * 2, BACKOFF_MAX)
        if c.popen is not None and now >= c.next_probe:
            self._probe(c, now)

    def _env(self, pod: dict[str, Any], ctr: dict[str, Any]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for src in ctr.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                data = self._read_data("config_map", ns, src["configMapRef"]["name"], src["configMapRef"])
            else:
                data = self._read_data("secret", ns, src["secretRef"]["name"], src["secretRef"])
            env.update({prefix + k: v for k, v in data.items()})
        for item in ctr.get("env") or []:
            name = item["name"]
            if "value" in item:
                env[name] = expand(str(item["value"]), env)
                continue
            ref = item.get("valueFrom") or {}
            if "fieldRef" in ref:
                env[name] = field_ref(pod, ref["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in ref or "secretKeyRef" in ref:
                kind = "config_map" if "configMapKeyRef" in ref else "secret"
                r = ref.get("configMapKeyRef") or ref["secretKeyRef"]
                data = self._read_data(kind, ns, r["name"], r)
                if r["key"] in data:
                    env[name] = data[r["key"]]
                elif not r.get("optional"):
                    what = "ConfigMap" if kind == "config_map" else "Secret"
                    raise WaitingError("CreateContainerConfigError",
                                       f"couldn't find key {r['key']} in {what} {ns}/{r['name']}")
            elif "resourceFieldRef" in ref:
                r = ref["resourceFieldRef"]
                kind, _, res = r["resource"].partition(".")
                env[name] = str(((ctr.get("resources") or {}).get(kind) or {}).get(res, "0"))
            else:
                env[name] = ""
        return env

    def _read_bytes(self, kind: str, ns: str, name: str) -> dict[str, bytes] | None:
        """A Secret's or ConfigMap's data as bytes; None when it does not exist."""
        try:
            obj = getattr(self.core, f"read_namespaced_{kind}")(name, ns)
        except ApiException as err:
            if err.status == 404:
                return None
            raise RuntimeError(f"{kind.replace('_', '')} {ns}/{name}: {err.reason}") from None
        if kind == "secret":
            return podspec.decode("secret", obj.data)
        return podspec.decode("configmap", obj.data, getattr(obj, "binary_data", None))

    def _read_data(self, kind: str, ns: str, name: str, ref: dict[str, Any]) -> dict[str, str]:
        data = self._read_bytes(kind, ns, name)
        if data is None:
            if ref.get("optional"):
                return {}
            what = "configmap" if kind == "config_map" else "secret"
            raise WaitingError("CreateContainerConfigError", f'{what} "{name}" not found')
        return {k: v.decode(errors="replace") for k, v in data.items()}

    def _token(self, c: Container, pod: dict[str, Any], audience: str | None, seconds: int) -> str:
        """A token of the pod's service account, bound to the pod (a projected token's TokenRequest)."""
        from kubernetes import client

        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        req = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[audience] if audience else [], expiration_seconds=seconds,
            bound_object_ref=client.V1BoundObjectReference(kind="Pod", api_version="v1", name=c.pod, uid=c.uid)))
        return self.core.create_namespaced_service_account_token(sa, c.namespace, req).status.token

    def pod_dir(self, c: Container) -> Path:
        return self.dir / "pods" / f"{c.namespace}_{c.pod}"

    def _volumes(self, c: Container, pod: dict[str, Any]) -> dict[str, Path]:
        """The pod's volumes written under its folder (podspec.volume_files): volume name -> local folder."""
        ns = c.namespace
        kinds = {"secret": "secret", "configmap": "config_map"}

        def read(kind: str, name: str) -> dict[str, bytes] | None:
            return self._read_bytes(kinds[kind], ns, name)

        def tokens(audience: str | None, seconds: int) -> str:
            return self._token(c, pod, audience, max(seconds, 600))

        root = self.pod_dir(c) / "volumes"
        return {v["name"]: podspec.write_volume(root, v["name"], podspec.volume_files(v, read, pod, tokens))
                for v in (pod.get("spec") or {}).get("volumes") or []}

    def _kubeconfig(self, c: Container, pod: dict[str, Any]) -> Path:
        """A kubeconfig with a token of the pod's service account, bound to the pod (like a projected token)."""
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        token = self._token(c, pod, None, TOKEN_SECONDS)
        folder = self.pod_dir(c)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "kubeconfig"
        cfg = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": self.server,
                                                       "certificate-authority-data": self.ca_data}}],
            "users": [{"name": f"system:serviceaccount:{c.namespace}:{sa}", "user": {"token": token}}],
            "contexts": [{"name": "pod", "context": {"cluster": "local",
                                                     "user": f"system:serviceaccount:{c.namespace}:{sa}"}}],
            "current-context": "pod",
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def _start(self, c: Container, pod: dict[str, Any]) -> None:
        ctr = next(x for x in pod["spec"]["containers"] if x["name"] == c.name)
        where = podspec.mounts(ctr, self._volumes(c, pod), image_dirs(c.binary))
        env = {**c.binary.env, **{k: podspec.rewrite(v, where) for k, v in self._env(pod, ctr).items()}}
        for port, local in list(c.ports.items()):  # another cluster's process may have taken it meanwhile
            if not port_free(local):
                c.ports[port] = free_port()
                self.log(f"{c.key}: local port {local} (container port {port}) is taken; now {c.ports[port]}")
        for var, port in c.binary.port_env.items():
            env[var] = str(c.ports[port])
        env.setdefault("KUBECONFIG", str(self._kubeconfig(c, pod)))  # the pod's own KUBECONFIG (rewritten) wins
        env["HOME"] = str(self.pod_dir(c))
        env.setdefault("PATH", image_path(c.binary))
        assert c.path is not None  # _tend starts only a container whose release has a build
        argv = podspec.argv(c.binary, c.path, ctr, env, where)
        cwd = podspec.working_dir(ctr, c.binary, where, self.pod_dir(c))
        c.log = self.dir / "logs" / "pods" / f"{c.namespace}_{c.pod}_{c.name}.log"
        c.log.parent.mkdir(parents=True, exist_ok=True)
        with open(c.log, "ab") as out:
            out.write(f"--- {now_iso()} start {argv[0]} (restart {c.restarts})\n".encode())
            out.flush()
            c.popen = subprocess.Popen(  # noqa: S603 - our own binary
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=cwd, preexec_fn=_set_parent_death_signal)  # noqa: PLW1509
        c.started_at, c.started_mono, c.ready, c.probe_failures = now_iso(), time.monotonic(), False, 0
        c.waiting, c.container_id = None, f"knfleet-runner://{c.popen.pid}"
        c.next_probe = time.monotonic() + float((c.readiness or {}).get("initialDelaySeconds") or 0)
        self.log(f"{c.key}: started pid {c.popen.pid}")

    def _exited(self, c: Container, now: float) -> None:
        assert c.popen is not None
        code = c.popen.returncode
        ran = now - c.started_mono
        c.last_exit = {"terminated": {
            "exitCode": code if code >= 0 else 128 - code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at, "finishedAt": now_iso(), "containerID": c.container_id}}
        c.popen, c.ready = None, False
        self.log(f"{c.key}: exited with {code} after {ran:.1f}s (see {c.log})")
        if c.restart_policy == "Never" or (c.restart_policy == "OnFailure" and code == 0):
            c.done = True
            return
        c.restarts += 1
        if ran >= BACKOFF_RESET:
            c.backoff = BACKOFF_START
        c.next_start = now + c.backoff
        c.backoff = min(c.backoff * 2, BACKOFF_MAX)

    def _probe(self, c: Container, now: float) -> None:
        probe = c.readiness or {}
        c.next_probe = now + float(probe.get("periodSeconds") or 10)
        ok = self._probe_once(c, probe)
        if ok:
            c.probe_failures = 0
            if not c.ready:
                self.log(f"{c.key}: ready")
            c.ready = True
        else:
            c.probe_failures += 1
            if c.probe_failures >= int(probe.get("failureThreshold") or 3) or not c.ready:
                c.ready = False

    def _probe_once(self, c: Container, probe: dict[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds") or 1)
        if "httpGet" in probe:
            h = probe["httpGet"]
            port = c.local_port(h.get("port"))
            if port is None:
                return c.popen is not None
            scheme = (h.get("scheme") or "HTTP").lower()
            req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{h.get('path') or '/'}",
                                         headers={"User-Agent": "kube-probe/1.32",
                                                  **{x["name"]: x["value"] for x in h.get("httpHeaders") or []}})
            ctx = ssl._create_unverified_context() if scheme == "https" else None  # noqa: S323 - kubelet's way
            try:
                with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:  # noqa: S310
                    return 200 <= resp.status < 400
            except urllib.error.HTTPError as err:
                return 200 <= err.code < 400
            except (OSError, ssl.SSLError):
                return False
        if "tcpSocket" in probe:
            port = c.local_port(probe["tcpSocket"].get("port"))
            if port is None:
                return c.popen is not None
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=timeout):
                    return True
            except OSError:
                return False
        return c.popen is not None  # no probe (or exec/grpc): ready once running, as the kubelet does

    # --- status ---------------------------------------------------------------------------------------
    def _write_status(self, pod: dict[str, Any]) -> bool:
        """The pod's status from its containers here; True once written (or unchanged, or the pod is gone)."""
        uid = pod["metadata"]["uid"]
        mine = {c.name: c for c in self.containers.values() if c.uid == uid}
        statuses = []
        for ctr in pod["spec"]["containers"]:
            c = mine.get(ctr["name"])
            st: dict[str, Any] = {"name": ctr["name"], "image": ctr.get("image", ""),
                                  "imageID": ctr.get("image", ""), "restartCount": 0, "ready": True,
                                  "started": True, "state": {"running": {"startedAt": now_iso()}}}
            if c is not None:
                st["restartCount"] = c.restarts
                st["ready"] = c.ready
                st["started"] = c.popen is not None or c.ready
                if c.pid or (c.done and c.container_id):  # a finished container keeps its ID, as a kubelet's does
                    st["containerID"] = c.container_id
                if c.pid:
                    st["state"] = {"running": {"startedAt": c.started_at}}
                elif c.ready:  # fault "ready-without-process"
                    st["state"] = {"running": {"startedAt": c.started_at}}
                elif c.done and c.last_exit:
                    st["state"] = c.last_exit
                elif c.done:  # its pod was deleted before it ever started: as a kubelet's TerminatePod ends it
                    st["state"] = {"terminated": dict(UNKNOWN_END)}
                elif c.blocked:  # no build of the image's release: never run with another release's binary
                    st["state"] = {"waiting": {"reason": c.blocked[0], "message": c.blocked[1]}}
                elif c.waiting:  # a missing Secret or ConfigMap: retried, as the kubelet does
                    st["state"] = {"waiting": {"reason": c.waiting[0], "message": c.waiting[1]}}
                elif c.last_exit:
                    secs = max(0, int(c.next_start - time.monotonic()))
                    st["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": (
                        f"back-off {secs}s restarting failed container={c.name} pod={c.pod}_{c.namespace}"
                        f"({uid})")}}
                else:
                    st["state"] = {"waiting": {"reason": "ContainerCreating"}}
                if c.last_exit:
                    st["lastState"] = c.last_exit
            statuses.append(st)
        all_ready = all(s["ready"] for s in statuses)
        finished = [c for c in mine.values() if c.done]
        if finished and len(finished) == len(mine):
            phase = "Succeeded" if all(c.last_exit and c.last_exit["terminated"]["exitCode"] == 0
                                       for c in finished) else "Failed"
        else:
            phase = "Running" if any(c.started_at for c in mine.values()) else "Pending"
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}

        def cond(kind: str, ok: bool, reason: str = "") -> dict[str, Any]:
            status = "True" if ok else "False"
            prev = old.get(kind) or {}
            out = {"type": kind, "status": status, "lastProbeTime": None,
                   "lastTransitionTime": prev.get("lastTransitionTime") if prev.get("status") == status
                   and prev.get("lastTransitionTime") else now_iso()}
            if not ok and reason:
                out["reason"] = reason
                unready = " ".join(n for n, c in mine.items() if not c.ready)
                out["message"] = f"containers with unready status: [{unready}]"
            return out
        status = {
            "phase": phase,
            "conditions": [cond("PodScheduled", True), cond("Initialized", True),
                           cond("ContainersReady", all_ready, "ContainersNotReady"),
                           cond("Ready", all_ready, "ContainersNotReady")],
            "containerStatuses": statuses,
        }
        if any(c.started_at for c in mine.values()):
            status["startTime"] = min(c.started_at for c in mine.values() if c.started_at)
        # Write only when something a reader cares about changed (not the timestamps of a running state).
        digest = json.dumps([phase, all_ready, [(s["name"], s["ready"], s["restartCount"], list(s["state"]),
                                                  (s["state"].get("waiting") or {}).get("reason"),
                                                  s.get("containerID")) for s in statuses]])
        if self.patched.get(uid) == digest:
            return True
        try:
            self.core.patch_namespaced_pod_status(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                                  {"status": status}, _content_type="application/merge-patch+json")
            self.patched[uid] = digest
        except ApiException as err:
            if err.status == 404:
                return True
            self.log(f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']}: status not written: "
                     f"{err.reason}")
            return False
        return True

    # --- stop -----------------------------------------------------------------------------------------------
    def _stop(self, c: Container, why: str) -> None:
        """SIGTERM now; SIGKILL once the pod's grace period is over (checked by reap(), never blocking the loop:
        the other pods' status keeps being written meanwhile)."""
        if c.popen is not None and c.popen.poll() is None:
            self.log(f"{c.key}: stopping pid {c.popen.pid} ({why})")
            c.popen.send_signal(signal.SIGTERM)  # our own child: its Popen knows the PID
            self.stopping.append((c.popen, time.monotonic() + c.grace, c.key))
        c.popen = None

    def reap(self) -> None:
        """Processes asked to stop: gone, or killed once their grace period is over."""
        left = []
        for popen, deadline, key in self.stopping:
            if popen.poll() is not None:
                self.log(f"{key}: pid {popen.pid} exited")
                continue
            if time.monotonic() >= deadline:
                popen.kill()
                popen.wait(timeout=5)
                self.log(f"{key}: pid {popen.pid} killed after its grace period")
                continue
            left.append((popen, deadline, key))
        self.stopping = left

    def stop_all(self) -> None:
        for c in list(self.containers.values()):
            self._stop(c, "runner stopping")
        self.containers.clear()
        while self.stopping:
            self.reap()
            time.sleep(0.1)
        self._save()


def unknown_end_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The status a kubelet's TerminatePod (k8s 1.32) gives a pod it ends with no container to stop: None when the
    pod is terminal already; else phase Failed and, once the pod is initialized (no init containers, or a container
    that left waiting), each container not already terminated as ContainerStatusUnknown, exit code 137. Ready and
    ContainersReady False (reason PodFailed, as the kubelet's next status has them); other conditions (a
    DisruptionTarget the eviction API wrote, say) kept."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if status.get("phase") in TERMINAL:
        return None
    old = {s.get("name"): s for s in status.get("containerStatuses") or []}
    initialized = not spec.get("initContainers") or any(
        (s.get("lastState") or {}).get("terminated") or "waiting" not in (s.get("state") or {}) for s in old.values())
    out: dict[str, Any] = {"phase": "Failed"}
    if initialized:
        statuses = []
        for ctr in spec.get("containers") or []:
            prev = old.get(ctr["name"]) or {}
            st = {**prev, "name": ctr["name"], "image": prev.get("image") or ctr.get("image", ""),
                  "imageID": prev.get("imageID") or ctr.get("image", ""), "ready": False, "started": False,
                  "restartCount": prev.get("restartCount") or 0}
            if not (prev.get("state") or {}).get("terminated"):
                st["state"] = {"terminated": dict(UNKNOWN_END)}
            statuses.append(st)
        out["containerStatuses"] = statuses
    now = now_iso()
    conditions = [c for c in status.get("conditions") or [] if c.get("type") not in ("Ready", "ContainersReady")]
    for kind in ("ContainersReady", "Ready"):
        prev = next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})
        since = prev.get("lastTransitionTime") if prev.get("status") == "False" else None
        conditions.append({"type": kind, "status": "False", "reason": "PodFailed", "lastProbeTime": None,
                           "lastTransitionTime": since or now})
    out["conditions"] = conditions
    return out


def knfleet_script() -> Path:
    """What knfleet's image's entrypoint is here: the console script of the venv the runner runs from."""
    return Path(sys.executable).parent / "knfleet"


def image_dirs(binary: Binary) -> dict[str, Path]:
    """The image's own folders and what stands for them here (knfleet's: WORKDIR /knfleet is this checkout,
    /opt/venv the venv the runner runs from); Knative's images: none (their processes run in the pod's folder)."""
    if binary.knative:
        return {}
    return {binary.workdir or "/knfleet": releases.REPO, "/opt/venv": Path(sys.prefix)}


def image_path(binary: Binary) -> str:
    """The image's PATH (knfleet's Containerfile puts /opt/venv/bin first), with its folders as they are here."""
    if binary.knative:
        return "/usr/bin:/bin"
    return f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin"


def stop_recorded(cluster_dir: Path) -> list[str]:
    """Stop, by PID, every process a (possibly killed) runner recorded for this cluster."""
    stopped = []
    try:
        data = json.loads((cluster_dir / "runner.json").read_text())
    except (OSError, ValueError):
        return stopped
    for key, rec in data.items():
        if rec.get("pid") and procs.stop(int(rec["pid"]), rec.get("marker", "")):
            stopped.append(key)
    return stopped
