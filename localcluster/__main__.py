"""python -m localcluster up|down|status|build — the local clusters behind `make local-up`/`local-down`."""

from __future__ import annotations

import argparse
import sys

from localcluster import build, fleet
from localcluster.cluster import ClusterError, Spec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start local-1 … local-N")
    up.add_argument("--clusters", type=int, default=1)
    up.add_argument("--cpu-nodes", type=int, default=2)
    up.add_argument("--gpu-nodes", type=int, default=2)
    up.add_argument("--gpus-per-node", type=int, default=2)
    up.add_argument("--ready-delay-ms", type=int, default=1000,
                    help="kwok: from containers running (images pulled) to Ready: the model load")
    up.add_argument("--pull-delay-ms", type=int, default=2000,
                    help="simulated kubelets: time to pull an image a node does not have yet")
    up.add_argument("--time-factor", type=float, default=1.0,
                    help="simulator: multiply the scale-to-zero idle window by this (e.g. 0.1)")
    up.add_argument("--no-simulator", action="store_true", help="do not start the Knative/gateway simulator")
    sub.add_parser("down", help="stop every local cluster")
    sub.add_parser("status", help="list local clusters and their processes")
    sub.add_parser("build", help="build the binaries (cached)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            build.build()
        elif args.cmd == "up":
            spec = Spec(args.cpu_nodes, args.gpu_nodes, args.gpus_per_node, args.ready_delay_ms,
                        simulator=not args.no_simulator, time_factor=args.time_factor, pull_delay_ms=args.pull_delay_ms)
            clusters = fleet.up(args.clusters, spec)
            print("\nUse them with kubectl:")
            for c in clusters:
                print(f"  kubectl --kubeconfig {c.kubeconfig} get nodes")
        elif args.cmd == "down":
            fleet.down()
        elif args.cmd == "status":
            found = fleet.existing()
            for c in found:
                running = c.running_components()
                print(f"{c.name}: {'running' if c.is_running() else 'stopped'} "
                      f"({', '.join(f'{k}={v}' for k, v in running.items()) or 'no process'}) {c.kubeconfig}")
            if not found:
                print("no local clusters")
    except (ClusterError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
