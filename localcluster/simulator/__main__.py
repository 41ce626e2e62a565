"""python -m localcluster.simulator --cluster-dir DIR: what needs a network to pods, for one local cluster.

Knative's own webhook and controller run for real (localcluster.runner). This process plays the rest:
the autoscaler's status work (autoscaler.py), net-kourier's (kourier.py), the data plane (gateway.py:
Kourier's gateways, the nginx proxy, vLLM's API), and the cloud's load balancers (loadbalancer.py).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from localcluster import nodes
from localcluster.simulator import kourier, metrics
from localcluster.simulator.autoscaler import Autoscaler
from localcluster.simulator.gateway import Counters, Gateway, Routes
from localcluster.simulator.kubeapi import Kube
from localcluster.simulator.loadbalancer import LoadBalancers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m localcluster.simulator", description=__doc__)
    ap.add_argument("--cluster-dir", required=True, type=Path)
    ap.add_argument("--time-factor", type=float, default=None,
                    help="compresses the autoscaler's idle window (default: the cluster's spec, else 1.0)")
    args = ap.parse_args(argv)
    cdir: Path = args.cluster_dir
    state = json.loads((cdir / "state.json").read_text())
    factor = args.time_factor
    if factor is None:
        factor = float(state.get("spec", {}).get("time_factor", 1.0))
    ports = state.get("ports") or {}  # where kwok's port-forwards for the gateways' pods lead

    def log(msg: str) -> None:
        print(f"{datetime.now().strftime('%H:%M:%S.%f')[:-3]} {msg}", flush=True)

    kube = Kube(str(cdir / "kubeconfig"))
    scaler = Autoscaler(kube, time_factor=factor, log=log)
    ingress = kourier.Kourier(kube, log=log)
    routes = Routes()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    registry, counters = metrics.Registry(), Counters()
    gateways = {"internal": Gateway(routes, scaler, public=False, port=int(ports.get("gateway_internal") or 0),
                                    registry=registry, counters=counters),
                "public": Gateway(routes, scaler, public=True, port=int(ports.get("gateway_public") or 0),
                                  registry=registry, counters=counters)}
    for name, gw in gateways.items():
        threading.Thread(target=gw.serve_forever, name=f"gateway-{name}", daemon=True).start()
        (cdir / f"{name}.url").write_text(gw.url + "\n")
        log(f"simulated {name} entry point on {gw.url}")
    scrape = metrics.Server(registry)  # what a Prometheus server scrapes (vLLM's and the queue-proxy's metrics)
    threading.Thread(target=scrape.serve_forever, name="metrics", daemon=True).start()
    (cdir / "metrics.url").write_text(scrape.url + "\n")

    balancers = LoadBalancers(str(cdir.resolve()), nodes.pod_ports(gateways["internal"].server_address[1],
                                                                   gateways["public"].server_address[1]), log)
    kube.watch(scaler.wake, stop)

    while not stop.is_set():
        scaler.wake.clear()
        try:
            snap = kube.snapshot()
            routes.update(kourier.routing_table(snap), snap.revisions)  # Envoy configured before Ready is written
            ingress.reconcile(snap)
            scaler.reconcile(snap)
            balancers.reconcile(kube.caches["lb_services"].items(), kube.caches["endpoints"].items(),
                                kube.service_status)
        except Exception as err:  # noqa: BLE001 - the apiserver may be briefly unavailable
            log(f"reconcile failed: {err}")
            time.sleep(1)
        scaler.wake.wait(1.0)  # woken by any change; the tick is for the autoscaler's idle windows
    balancers.close()
    scrape.shutdown()
    for gw in gateways.values():
        gw.shutdown()
    log("simulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
