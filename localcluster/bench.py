"""`make bench`: knfleet measured on fresh local clusters; ratios against a baseline in the same run.

Baseline: the first (installing) run. Measured: the converged re-run, and a --dry run after one changed
setting. Also the time to start a local cluster. Results in reports/bench.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localcluster import build, paths
from localcluster.cluster import LocalCluster, Spec


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=paths.REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return time.monotonic() - t0


def main() -> int:
    bin_dir = build.build()
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    pyinfra = [str(paths.REPO / ".venv" / "bin" / "pyinfra"), "inventories/local.py", "deploy.py"]
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="knfleet-bench-") as tmp:
        env = dict(os.environ, KNFLEET_LOCAL=tmp, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                   PYINFRA_PROGRESS="off")
        root = Path(tmp) / "clusters"
        for i in range(rounds):
            cluster = LocalCluster(f"local-{i + 1}", root, Spec(ready_delay_ms=1000))
            t0 = time.monotonic()
            cluster.up(bin_dir)
            start = time.monotonic() - t0
            try:
                row = {
                    "cluster_start_s": start,
                    "first_run_s": _timed([*pyinfra, "-y"], env),
                    "second_run_s": _timed([*pyinfra, "-y"], env),
                    "dry_changed_setting_s": _timed([*pyinfra, "--dry", "--data", "knative_domain=bench.example"],
                                                    env),
                }
            finally:
                cluster.remove()
            rows.append(row)
            print(f"round {i + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
    med = {k: sorted(r[k] for r in rows)[len(rows) // 2] for k in rows[0]}
    result = {
        "rounds": rounds,
        "median": med,
        "ratios_vs_first_run": {
            "second_run": med["second_run_s"] / med["first_run_s"],
            "dry_changed_setting": med["dry_changed_setting_s"] / med["first_run_s"],
        },
        "rows": rows,
    }
    out = paths.REPO / "reports" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nmedian of {rounds}: cluster start {med['cluster_start_s']:.1f}s, first run {med['first_run_s']:.1f}s, "
          f"second run {med['second_run_s']:.1f}s ({result['ratios_vs_first_run']['second_run']:.0%} of the first), "
          f"--dry after a change {med['dry_changed_setting_s']:.1f}s "
          f"({result['ratios_vs_first_run']['dry_changed_setting']:.0%})\n-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
