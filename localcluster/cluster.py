"""One local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1.

Everything a cluster has lives in its folder (`.local/clusters/<name>/`): PKI, kubeconfigs,
etcd data, logs and `state.json` (ports and PIDs). Ports are picked free by the kernel, so
several clusters and several test runs on one machine do not collide.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localcluster import nodes, paths, procs

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
COMPONENTS = ("etcd", "kube-apiserver", "runner", "kube-controller-manager", "kube-scheduler", "kwok")
STOP_ORDER = ("simulator", "runner", "kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
PYTHON_COMPONENTS = ("simulator", "runner")
UDS_MAX = 100  # sun_path holds 108 bytes


class ClusterError(RuntimeError):
    """A local cluster could not be started or stopped; the message says which component and why."""


@dataclass
class Spec:
    cpu_nodes: int = 2
    gpu_nodes: int = 2
    gpus_per_node: int = 2
    ready_delay_ms: int = 1000
    simulator: bool = True
    time_factor: float = 1.0  # compresses the simulated autoscaler's idle window (tests use < 1)
    # The simulated kubelets' image pull time of an image a node does not have yet (None: images.DEFAULT_PULL_MS);
    # per image: LocalCluster.set_image_pulls.
    pull_delay_ms: int | None = None


@dataclass
class State:
    name: str
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)
    argvs: dict[str, list[str]] = field(default_factory=dict)
    spec: dict = field(default_factory=dict)
    started_seconds: float = 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, name: str, root: Path | None = None, spec: Spec | None = None) -> None:
        self.name = name
        self.dir = (root or paths.clusters_dir()) / name
        self.spec = spec or Spec()

    # --- paths -------------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def egress_socket(self) -> Path:
        """The apiserver's egress proxy socket (in the cluster folder, or /tmp when that path is too long)."""
        path = self.dir / "egress.sock"
        if len(str(path)) <= UDS_MAX:
            return path
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"knfleet-egress-{digest}.sock"

    def log(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"

    def load_state(self) -> State | None:
        try:
            return State(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _save(self, state: State) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self.state_file)

    # --- status ------------------------------------------------------------------------------------
    def running_components(self) -> dict[str, int]:
        state = self.load_state()
        if not state:
            return {}
        return {c: pid for c, pid in state.pids.items() if procs.alive(pid, state.markers.get(c, c))}

    def was_started(self) -> bool:
        """Started by local-up and not stopped by local-down (some process may have died since)."""
        state = self.load_state()
        return bool(state and state.pids)

    def is_running(self) -> bool:
        state = self.load_state()
        if not state or not state.pids:
            return False
        return set(self.running_components()) == set(state.pids)

    # --- lifecycle ---------------------------------------------------------------------------------
    def up(self, bin_dir: Path, attempts: int = 3) -> State:
        """Start the cluster (a no-op when it already runs). Retries with new ports if one was taken."""
        if self.is_running():
            state = self.load_state()
            assert state is not None
            return state
        last: ClusterError | None = None
        for _ in range(attempts):
            self.down()
            try:
                return self._start(bin_dir)
            except ClusterError as err:
                last = err
                if "address already in use" not in str(err):
                    break
        self.down()
        assert last is not None
        raise last

    def down(self) -> list[str]:
        """Stop every process this cluster started (by PID). Returns the components that were running."""
        state = self.load_state()
        stopped: list[str] = []
        if state:
            for comp in STOP_ORDER:
                pid = state.pids.get(comp)
                if pid and procs.stop(pid, state.markers.get(comp, comp)):
                    stopped.append(comp)
                if comp == "runner":  # what a killed runner may have left behind
                    from localcluster.runner.pods import stop_recorded  # (imports the kubernetes client)
                    stopped += [f"pod {key}" for key in stop_recorded(self.dir)]
            state.pids = {}
            self._save(state)
        return stopped

    def stop_component(self, comp: str) -> None:
        """Stop one process (say the apiserver, to simulate an outage); the rest keeps running."""
        state = self.load_state()
        if state and comp in state.pids:
            procs.stop(state.pids[comp], state.markers.get(comp, comp))

    def restart_component(self, comp: str, timeout: float = 120) -> None:
        """Start a stopped component again with its original command line (same ports, same certificates)."""
        state = self.load_state()
        if not state or comp not in state.argvs:
            raise ClusterError(f"{self.name}: {comp} was never started")
        if procs.alive(state.pids.get(comp, 0), state.markers.get(comp, comp)):
            return
        env = _python_env() if comp in PYTHON_COMPONENTS else None
        self._spawn(state, comp, state.argvs[comp], env=env)
        if comp == "kube-apiserver":
            self._wait_apiserver(state, timeout)

    def set_kubelets(self, node_names: list[str], running: bool) -> None:
        """Fault injection for tests: stop (or start again) the simulated kubelets of some nodes. kwok manages the
        nodes annotated `kwok.x-k8s.io/node=fake` and keeps a node it once took, so the annotation is changed and
        kwok restarted (a second; the other nodes' leases last 40 s). Stopped: nothing renews those nodes' leases
        or runs their pods, and kube-controller-manager's node lifecycle controller marks them NotReady ("Kubelet
        stopped posting node status.") and taints them unreachable after its grace period (about 40 s). Started
        again: kwok takes them back and reports them Ready within seconds."""
        state = self.load_state()
        if not state or "kwok" not in state.argvs:
            raise ClusterError(f"{self.name}: not running")
        kubectl = [str(Path(state.argvs["kwok"][0]).with_name("kubectl")), f"--kubeconfig={self.kubeconfig}"]
        value = "fake" if running else "kubelet-stopped"
        run_checked(kubectl + ["annotate", "node", *node_names, f"{nodes.KWOK_ANNOTATION}={value}", "--overwrite"],
                    None, f"{self.name}: annotating nodes {', '.join(node_names)}")
        self.stop_component("kwok")
        self.restart_component("kwok")

    def set_faults(self, faults: dict[str, str]) -> None:
        """Fault injection for tests: {"<namespace>/<app>": "hold" | "ready-without-process"} (see runner.pods)."""
        from localcluster.runner.pods import FAULTS_FILE

        tmp = self.dir / (FAULTS_FILE + ".tmp")
        tmp.write_text(json.dumps(faults))
        tmp.replace(self.dir / FAULTS_FILE)

    @property
    def pull_delay_ms(self) -> int:
        from localcluster.runner.images import DEFAULT_PULL_MS

        return DEFAULT_PULL_MS if self.spec.pull_delay_ms is None else int(self.spec.pull_delay_ms)

    def set_image_pulls(self, images: dict[str, float] | None = None, default_s: float | None = None) -> None:
        """The simulated kubelets' pull time (seconds) per image (exact reference or repository), and for every
        other image (`default_s`; else the cluster's Spec.pull_delay_ms). Applies to pulls that start from now on
        (the runner reads the file on every tick); replaces what an earlier call set."""
        from localcluster.runner.images import PULLS_FILE

        for image, seconds in (images or {}).items():
            if not isinstance(seconds, (int, float)) or seconds < 0:
                raise ValueError(f"pull time of image {image!r} must be a number of seconds >= 0, got {seconds!r}")
        if default_s is not None and default_s < 0:
            raise ValueError(f"default_s must be >= 0, got {default_s!r}")
        data: dict[str, Any] = {"images": {k: int(v * 1000) for k, v in (images or {}).items()}}
        if default_s is not None:
            data["default_ms"] = int(default_s * 1000)
        tmp = self.dir / (PULLS_FILE + ".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.dir / PULLS_FILE)

    def remove(self) -> None:
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- start -------------------------------------------------------------------------------------
    def _spawn(self, state: State, comp: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        state.pids[comp] = procs.start(argv, self.log(comp), cwd=self.dir, env=env)
        state.argvs[comp] = argv
        state.markers[comp] = argv[0] if comp not in PYTHON_COMPONENTS else f"--cluster-dir={self.dir}"
        self._save(state)

    def _check_alive(self, state: State, comp: str) -> None:
        if not procs.alive(state.pids[comp], state.markers[comp]):
            tail = self.log(comp).read_text(errors="replace")[-3000:] if self.log(comp).exists() else ""
            raise ClusterError(f"{self.name}: {comp} exited during start-up. Last log lines:\n{tail}")

    def _wait(self, state: State, comp: str, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(state, comp)
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
                pass
            time.sleep(0.2)
        raise ClusterError(f"{self.name}: {comp} not {what} after {timeout:.0f}s (log: {self.log(comp)})")

    def _wait_apiserver(self, state: State, timeout: float) -> None:
        """Until /readyz answers ok, asked with the admin certificate."""
        pkid = self.dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pkid / "ca.crt"))
        ctx.load_cert_chain(str(pkid / "admin.crt"), str(pkid / "admin.key"))
        url = f"https://127.0.0.1:{state.ports['apiserver']}/readyz"
        self._wait(state, "kube-apiserver", lambda: _http_ok(url, ctx), timeout, "ready (/readyz)")

    def _start(self, bin_dir: Path) -> State:
        from localcluster import pki  # cryptography: only when a cluster starts

        t0 = time.monotonic()
        if self.dir.exists():
            shutil.rmtree(self.dir)
        (self.dir / "pki").mkdir(parents=True)
        (self.dir / "logs").mkdir()
        state = State(
            name=self.name,
            ports={k: free_port() for k in ("etcd", "etcd_peer", "apiserver", "kubelet", "gateway_internal",
                                            "gateway_public")},
            spec=asdict(self.spec),
        )
        self._save(state)
        pkid = self.dir / "pki"
        ca = pki.make_ca(pkid, self.name)
        serving = pki.issue(
            ca, pkid, "apiserver", "kube-apiserver",
            server_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                          "kubernetes.default.svc.cluster.local"),
            server_ips=("127.0.0.1", SERVICE_IP),
        )
        sa = pki.make_service_account_keys(pkid)
        egress = self.dir / "egress-selector.yaml"
        egress.write_text(egress_config(self.egress_socket))
        server = f"https://127.0.0.1:{state.ports['apiserver']}"
        creds = {
            "admin": ("kubernetes-admin", ("system:masters",)),
            "controller-manager": ("system:kube-controller-manager", ()),
            "scheduler": ("system:kube-scheduler", ()),
            "kwok": ("kwok", ("system:masters",)),
        }
        kubeconfigs: dict[str, Path] = {}
        for stem, (cn, orgs) in creds.items():
            pair = pki.issue(ca, pkid, stem, cn, orgs)
            path = self.kubeconfig if stem == "admin" else self.dir / f"{stem}.kubeconfig"
            write_kubeconfig(path, self.name, server, ca.cert, pair)
            kubeconfigs[stem] = path

        b = lambda n: str(bin_dir / n)  # noqa: E731
        ep, pp, ap = state.ports["etcd"], state.ports["etcd_peer"], state.ports["apiserver"]
        self._spawn(state, "etcd", [
            b("etcd"), "--name=default", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{ep}", f"--advertise-client-urls=http://127.0.0.1:{ep}",
            f"--listen-peer-urls=http://127.0.0.1:{pp}", f"--initial-advertise-peer-urls=http://127.0.0.1:{pp}",
            f"--initial-cluster=default=http://127.0.0.1:{pp}", "--unsafe-no-fsync=true",
            "--quota-backend-bytes=4294967296", "--log-level=warn",
        ])
        self._wait(state, "etcd", lambda: _http_ok(f"http://127.0.0.1:{ep}/health"), 60, "healthy")

        self._spawn(state, "kube-apiserver", [
            b("kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{ep}",
            "--bind-address=127.0.0.1", f"--secure-port={ap}", "--advertise-address=127.0.0.1",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.cert}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa.cert}", f"--service-account-signing-key-file={sa.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=RBAC",
            f"--egress-selector-config-file={egress}", "--allow-privileged=true",
            "--endpoint-reconciler-type=none", "--profiling=false", f"--cert-dir={pkid}", "--v=0",
        ])
        self._wait_apiserver(state, 120)
        self._spawn(state, "runner", [
            sys.executable, "-m", "localcluster.runner", f"--cluster-dir={self.dir}",
            f"--bin-root={paths.bin_root()}", f"--egress-socket={self.egress_socket}",
            f"--kubelet-port={state.ports['kubelet']}", f"--pull-delay-ms={self.pull_delay_ms}",
        ], env=_python_env())
        self._wait(state, "runner", self.egress_socket.exists, 60, "serving the egress proxy")

        self._spawn(state, "kube-controller-manager", [
            b("kube-controller-manager"), f"--kubeconfig={kubeconfigs['controller-manager']}",
            "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
            "--use-service-account-credentials=true", f"--root-ca-file={ca.cert}",
            f"--service-account-private-key-file={sa.key}",
            f"--cluster-signing-cert-file={ca.cert}", f"--cluster-signing-key-file={ca.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--controllers=*", "--v=0",
        ])
        self._spawn(state, "kube-scheduler", [
            b("kube-scheduler"), f"--kubeconfig={kubeconfigs['scheduler']}",
            "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false", "--v=0",
        ])
        stages = self.dir / "kwok.yaml"
        stages.write_text(nodes.kwok_config(self.spec.ready_delay_ms, state.ports["gateway_internal"],
                                            state.ports["gateway_public"]))
        # kwok's server is every node's kubelet endpoint (port-forward to the gateways; the apiserver reaches
        # it through the egress proxy). The apiserver does not verify kubelet certificates it has no CA for.
        kubelet = pki.issue(ca, pkid, "kubelet", "kwok", server_names=("localhost",), server_ips=("127.0.0.1",))
        kp = state.ports["kubelet"]
        self._spawn(state, "kwok", [
            b("kwok"), f"--kubeconfig={kubeconfigs['kwok']}", f"--config={stages}",
            f"--server-address=127.0.0.1:{kp}", f"--node-port={kp}",
            f"--tls-cert-file={kubelet.cert}", f"--tls-private-key-file={kubelet.key}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={nodes.KWOK_ANNOTATION}=fake",
            "--node-ip=10.0.0.1", "--cidr=10.0.0.1/16", "--node-lease-duration-seconds=40",
        ])
        kubectl = [b("kubectl"), f"--kubeconfig={self.kubeconfig}"]
        manifest = nodes.render_nodes(self.spec.cpu_nodes, self.spec.gpu_nodes, self.spec.gpus_per_node)
        run_checked(kubectl + ["create", "-f", "-"], manifest, f"{self.name}: creating kwok nodes")
        self._wait(state, "kwok", lambda: _all_nodes_ready(kubectl, self.spec.cpu_nodes + self.spec.gpu_nodes),
                   60, "managing the nodes (nodes Ready)")
        self._wait(state, "kube-controller-manager",
                   lambda: subprocess.run(kubectl + ["get", "serviceaccount", "default", "-n", "default"],
                                          capture_output=True).returncode == 0,
                   90, "running (no default service account)")
        self._check_alive(state, "kube-scheduler")
        if self.spec.simulator:
            self._spawn(state, "simulator", [
                sys.executable, "-m", "localcluster.simulator", f"--cluster-dir={self.dir}",
            ], env=_python_env())
            self._wait(state, "simulator", lambda: (self.dir / "internal.url").exists(), 60, "serving")
        state.started_seconds = round(time.monotonic() - t0, 1)
        self._save(state)
        return state


def egress_config(socket_path: Path) -> str:
    """The apiserver's EgressSelectorConfiguration: `cluster` traffic (webhooks, kubelets) through our proxy.
    (`transport: uds`: the `tcp` transport makes kube-apiserver 1.32 panic in getTLSConfig even for http://.)"""
    return yaml.safe_dump({
        "apiVersion": "apiserver.k8s.io/v1beta1",
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [{"name": "cluster", "connection": {
            "proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": str(socket_path)}}}}],
    }, sort_keys=False)


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(paths.REPO) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:  # noqa: S310 - loopback only
        return resp.status == 200


def _all_nodes_ready(kubectl: list[str], count: int) -> bool:
    out = subprocess.run(
        kubectl + ["get", "nodes", "-o",
                   'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'],
        capture_output=True, text=True,
    )
    return out.returncode == 0 and out.stdout.split().count("True") == count


def run_checked(argv: list[str], stdin: str | None, what: str) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"{what} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def write_kubeconfig(path: Path, name: str, server: str, ca: Path, client: Any) -> None:
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    user = f"{name}-{client.cert.stem}"
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)
