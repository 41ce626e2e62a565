"""python -m localcluster.runner --cluster-dir DIR: the pod runner and the apiserver's egress proxy of one
local cluster (see pods.py and egress.py)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

import yaml
from kubernetes import client, config

from localcluster.kubewatch import Cache
from localcluster.runner import egress, images
from localcluster.runner.binaries import for_image
from localcluster.runner.pods import PodRunner


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m localcluster.runner", description=__doc__)
    ap.add_argument("--cluster-dir", required=True, type=Path)
    ap.add_argument("--bin-root", required=True, type=Path,
                    help="where the Knative builds are: <root>/knative-serving-v<module>/<binary>, one per release")
    ap.add_argument("--egress-socket", required=True, type=Path)
    ap.add_argument("--kubelet-port", type=int, default=0,
                    help="the nodes' kubelet port: kwok's server (logs, exec, port-forward), on 127.0.0.1")
    ap.add_argument("--pull-delay-ms", type=int, default=images.DEFAULT_PULL_MS,
                    help="the simulated kubelets' image pull time (per image: image-pulls.json, see images.py)")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"{datetime.now().strftime('%H:%M:%S.%f')[:-3]} {msg}", flush=True)

    kubeconfig = args.cluster_dir / "kubeconfig"
    cfg = yaml.safe_load(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core = client.CoreV1Api(api)
    runner = PodRunner(api, args.cluster_dir, args.bin_root, cluster["server"], cluster["certificate-authority-data"],
                       log=log)
    stop = threading.Event()
    wake = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    resolver = egress.ServiceResolver(core, runner.endpoints, kubelet=egress.kubelet_at(args.kubelet_port))
    threading.Thread(target=egress.serve, args=(args.egress_socket, resolver, stop, log), daemon=True,
                     name="egress").start()

    # Only pods whose containers are our binaries matter: cached from a watch, never listed per tick.
    pods = Cache(core.list_pod_for_all_namespaces, wake, stop,
                 keep=lambda p: any(for_image(c.get("image", "")) for c in (p.get("spec") or {}).get("containers")
                                    or []))

    threading.Thread(target=pull_images, args=(core, args, stop, log), daemon=True, name="images").start()

    # Processes are started from this (main) thread only: their parent-death signal follows this thread.
    while not stop.is_set():
        wake.clear()
        try:
            if pods.synced.is_set():
                runner.reconcile(pods.items())
        except Exception as err:  # noqa: BLE001 - the apiserver may be briefly unavailable
            log(f"reconcile failed: {err}")
            stop.wait(1.0)
        wake.wait(0.5)
    runner.stop_all()
    log("runner stopped")
    return 0


def runs_here(pod: dict) -> bool:
    """A pod whose containers are real processes of the runner (their status is the runner's, not kwok's)."""
    return any(for_image(c.get("image", "")) for c in (pod.get("spec") or {}).get("containers") or [])


def pull_images(core: client.CoreV1Api, args: argparse.Namespace, stop: threading.Event, log) -> None:
    """The simulated kubelets' image pulls (images.Puller) for kwok's pods, ticking 5 times a second."""
    changed = threading.Event()
    pods = Cache(core.list_pod_for_all_namespaces, changed, stop, keep=lambda p: not runs_here(p))
    nodes = Cache(core.list_node, changed, stop)
    puller = images.Puller(core, args.cluster_dir, args.pull_delay_ms, skip=runs_here, log=log)
    while not stop.is_set():
        changed.clear()
        if pods.synced.is_set() and nodes.synced.is_set():
            try:
                puller.tick(pods.items(), nodes.items())
            except Exception as err:  # noqa: BLE001 - the apiserver may be briefly unavailable
                log(f"image pulls failed: {err}")
        changed.wait(0.2)


if __name__ == "__main__":
    sys.exit(main())
