"""python -m localcluster.replay record|serve — see localcluster/replay/__init__.py and docs/fleet-scale.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m localcluster.replay", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="an HTTPS proxy in front of a real cluster that records every exchange")
    rec.add_argument("--kubeconfig", type=Path, required=True, help="the real cluster's (admin) kubeconfig")
    rec.add_argument("--out", type=Path, required=True, help="the recording (JSON lines)")
    rec.add_argument("--folder", type=Path, required=True, help="where the proxy's kubeconfig and CA go")
    srv = sub.add_parser("serve", help="N simulated clusters answering from a recording")
    srv.add_argument("--recording", type=Path, required=True)
    srv.add_argument("--clusters", type=int, required=True)
    srv.add_argument("--folder", type=Path, required=True, help="kubeconfigs (sim-<i>.kubeconfig), CA, ready file")
    srv.add_argument("--delay-ms", type=float, default=50.0, help="round-trip delay of every answer (default 50)")
    args = ap.parse_args(argv)
    if args.cmd == "record":
        from localcluster.replay import recorder

        recorder.serve(args.kubeconfig, args.out, args.folder)
    else:
        from localcluster.replay import server

        if args.clusters < 1:
            print(f"error: --clusters must be >= 1, got {args.clusters}", file=sys.stderr)
            return 2
        server.run(args.recording, args.clusters, args.folder, args.delay_ms / 1000.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
