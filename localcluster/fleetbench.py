"""`make bench-fleet`: one runner over 10, 100 and 1,000 simulated clusters (localcluster.replay).

1. Record: a real local cluster (its own state folder) is converged once, then a second, no-op converge goes through
   the recorder (an HTTPS proxy); the real cluster is stopped (by PID).
2. Replay: the replay server serves max(sizes) simulated clusters from that recording; for each size, after its
   counters are reset, `pyinfra <inventory of N clusters> deploy.py -y --data smoke=false` runs as a subprocess and
   is measured: wall time, CPU seconds and peak RSS (os.wait4), API requests (the server's counters), failures
   (clusters the run's JSON report does not list as converged, plus requests the recording does not hold).
3. reports/fleet-bench.json: {"sizes": [{"clusters", "wall_s", "cpu_s", "peak_rss_mib", "requests", "failed", …}]}.

Env: KNFLEET_FLEET_SIZES (default 10,100,1000), KNFLEET_FLEET_DELAY_MS (default 50), KNFLEET_FLEET_PROFILE=1
(each size's run under cProfile: <state>/profile-<N>.pstats), KNFLEET_FLEET_STATE (default .local/fleetbench).
Every process started here is stopped by its PID at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from localcluster import build, paths
from localcluster.cluster import LocalCluster, Spec

REPO = paths.REPO
BUNDLES = REPO.parent / "shared" / "knative"
SMOKE_OFF = ["--data", "smoke=false"]  # port-forwards (the smoke test's way in) are not replayed


def log(msg: str) -> None:
    print(f"[bench-fleet {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sizes_from(text: str) -> list[int]:
    """KNFLEET_FLEET_SIZES: comma-separated cluster counts, each >= 1."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"KNFLEET_FLEET_SIZES: {part!r} is not allowed; use comma-separated counts >= 1 "
                             "(e.g. 10,100,1000)")
        out.append(int(part))
    return out


def delay_from(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ValueError(f"KNFLEET_FLEET_DELAY_MS: {text!r} is not allowed; use milliseconds >= 0 (e.g. 50)")
    return value


def inventory(path: Path, hosts: list[tuple[str, Path]], bundles: Path | None = BUNDLES) -> Path:
    """A pyinfra inventory of group `local` (so group_data/local.py's models apply) for the given clusters; the
    offline Knative bundles under `bundles` when they are there (as inventories/local.py)."""
    bundle = f", 'knative_bundle_dir': {str(bundles / 'v{version}')!r}" if bundles and bundles.is_dir() else ""
    rows = ",\n".join(f"    ({('@kube/' + name)!r}, {{'kubeconfig': {str(kc)!r}{bundle}}})" for name, kc in hosts)
    path.write_text(f"local = [\n{rows},\n]\n")
    return path


def failed_of(report: Path, names: list[str]) -> tuple[int, list[str]]:
    """Clusters the run's JSON report does not list as converged (missing ones included)."""
    try:
        clusters = json.loads(report.read_text()).get("clusters") or {}
    except (OSError, ValueError):
        return len(names), [f"no JSON report at {report}"]
    bad = [n for n in names if (clusters.get(n) or {}).get("status") != "converged"]
    why = [f"{n}: {(clusters.get(n) or {}).get('status', 'missing')} {(clusters.get(n) or {}).get('reason', '')}"
           for n in bad[:10]]
    return len(bad), why


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class FleetBench:
    def __init__(self, state: Path, sizes: list[int], delay_ms: float) -> None:
        self.state, self.sizes, self.delay_ms = state, sizes, delay_ms
        self.bin_dir = build.build()
        self.env = dict(os.environ, KNFLEET_LOCAL=str(state), PYINFRA_PROGRESS="off",
                        PATH=f"{self.bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                             f"{os.environ['PATH']}")
        self.pids: list[int] = []
        self.cluster: LocalCluster | None = None

    # --- processes ----------------------------------------------------------------------------------------
    def start(self, argv: list[str], logfile: Path) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=logfile.open("w"), stderr=subprocess.STDOUT,
                                preexec_fn=_raise_nofile)
        self.pids.append(proc.pid)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.pid in self.pids:
            self.pids.remove(proc.pid)

    def stop_all(self) -> None:
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pids.clear()
        if self.cluster is not None:
            self.cluster.down()
            self.cluster = None

    @staticmethod
    def wait_file(path: Path, proc: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[:4]} exited ({proc.returncode}) before writing {path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} not written within {timeout:.0f}s")
            time.sleep(0.2)

    def pyinfra(self, inv: Path, logfile: Path, report: Path, profile: Path | None = None) -> dict[str, float]:
        """Run one converge as a subprocess; wall time and its own rusage (os.wait4)."""
        pyinfra = str(Path(sys.executable).parent / "pyinfra")
        argv = ([sys.executable, "-m", "cProfile", "-o", str(profile), pyinfra] if profile else [pyinfra])
        argv += [str(inv), "deploy.py", "-y", *SMOKE_OFF]
        env = dict(self.env, KNFLEET_REPORT=str(report))
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=logfile.open("w"), stderr=subprocess.STDOUT,
                                preexec_fn=_raise_nofile)
        self.pids.append(proc.pid)
        _, status, ru = os.wait4(proc.pid, 0)
        self.pids.remove(proc.pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return {"wall_s": time.monotonic() - t0, "cpu_s": ru.ru_utime + ru.ru_stime,
                "peak_rss_mib": ru.ru_maxrss / 1024, "exit_code": proc.returncode}

    # --- 1. record ------------------------------------------------------------------------------------------
    def record(self) -> Path:
        rec_dir = self.state / "record"
        rec_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = LocalCluster("local-1", self.state / "clusters", Spec(ready_delay_ms=300,
                                                                                      pull_delay_ms=300))
        log("starting a real local cluster")
        self.cluster.up(self.bin_dir)
        real = inventory(rec_dir / "real.py", [("local-1", self.cluster.kubeconfig)])
        log("converging it (real Knative control plane)")
        first = self.pyinfra(real, rec_dir / "converge.log", rec_dir / "converge.json")
        if first["exit_code"] != 0:
            raise RuntimeError(f"the first converge failed (exit {first['exit_code']}): {rec_dir / 'converge.log'}")
        out = rec_dir / "recording.jsonl"
        (rec_dir / "ready").unlink(missing_ok=True)
        proxy = self.start([sys.executable, "-m", "localcluster.replay", "record", "--kubeconfig",
                            str(self.cluster.kubeconfig), "--out", str(out), "--folder", str(rec_dir)],
                           rec_dir / "recorder.log")
        try:
            self.wait_file(rec_dir / "ready", proxy, 30)
            log("recording a no-op converge through the proxy")
            proxied = inventory(rec_dir / "proxied.py", [("local-1", rec_dir / "kubeconfig")])
            noop = self.pyinfra(proxied, rec_dir / "noop.log", rec_dir / "noop.json")
        finally:
            self.stop(proxy)
        failed, why = failed_of(rec_dir / "noop.json", ["local-1"])
        if noop["exit_code"] != 0 or failed:
            raise RuntimeError(f"the recorded no-op converge failed: {why} ({rec_dir / 'noop.log'})")
        log(f"recorded {sum(1 for _ in out.open())} exchanges; stopping the real cluster")
        self.cluster.down()
        self.cluster = None
        return out

    # --- 2. replay --------------------------------------------------------------------------------------------
    def control(self, folder: Path, method: str, path: str) -> dict[str, Any]:
        port = (folder / "control").read_text().strip()
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST"
                                     else None)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def replay(self, recording: Path) -> list[dict[str, Any]]:
        folder = self.state / "replay"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ready").unlink(missing_ok=True)
        top = max(self.sizes)
        server = self.start([sys.executable, "-m", "localcluster.replay", "serve", "--recording", str(recording),
                             "--clusters", str(top), "--folder", str(folder), "--delay-ms", str(self.delay_ms)],
                            folder / "server.log")
        rows = []
        try:
            self.wait_file(folder / "ready", server, 300)
            for n in self.sizes:
                rows.append(self.one_size(folder, n))
        finally:
            self.stop(server)
        return rows

    def one_size(self, folder: Path, n: int) -> dict[str, Any]:
        before = self.control(folder, "POST", "/reset")
        names = [f"sim-{i}" for i in range(1, n + 1)]
        inv = inventory(folder / f"inventory-{n}.py", [(name, folder / f"{name}.kubeconfig") for name in names])
        report = folder / f"report-{n}.json"
        report.unlink(missing_ok=True)
        profile = self.state / f"profile-{n}.pstats" if os.environ.get("KNFLEET_FLEET_PROFILE") == "1" else None
        log(f"{n} clusters: converging (no-op)")
        m = self.pyinfra(inv, folder / f"run-{n}.log", report, profile)
        after = self.control(folder, "GET", "/stats")
        failed, why = failed_of(report, names)
        row = {"clusters": n, "wall_s": round(m["wall_s"], 2), "cpu_s": round(m["cpu_s"], 2),
               "peak_rss_mib": round(m["peak_rss_mib"], 1), "requests": after["requests"],
               "failed": failed + after["unrecorded"], "unrecorded": after["unrecorded"],
               "not_converged": failed, "exit_code": m["exit_code"],
               "server_cpu_s": round(after["cpu_s"] - before["cpu_s"], 2), "delay_ms": self.delay_ms,
               "wall_per_cluster_ms": round(1000 * m["wall_s"] / n, 1),
               "cpu_per_cluster_ms": round(1000 * m["cpu_s"] / n, 1)}
        if why or after["unrecorded_examples"]:
            row["failures"] = why + after["unrecorded_examples"]
        log(json.dumps(row))
        return row


def main() -> int:
    try:
        sizes = sizes_from(os.environ.get("KNFLEET_FLEET_SIZES", "10,100,1000"))
        delay = delay_from(os.environ.get("KNFLEET_FLEET_DELAY_MS", "50"))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    state = Path(os.environ.get("KNFLEET_FLEET_STATE") or REPO / ".local" / "fleetbench").resolve()
    bench = FleetBench(state, sizes, delay)
    try:
        recording = bench.record()
        rows = bench.replay(recording)
    finally:
        bench.stop_all()
    out = REPO / "reports" / "fleet-bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"sizes": rows}, indent=2) + "\n")
    log(f"written {out}")
    print(f"{'clusters':>8} {'wall s':>8} {'cpu s':>8} {'rss MiB':>8} {'requests':>9} {'failed':>6} {'server cpu':>10}")
    for r in rows:
        print(f"{r['clusters']:>8} {r['wall_s']:>8} {r['cpu_s']:>8} {r['peak_rss_mib']:>8} {r['requests']:>9} "
              f"{r['failed']:>6} {r['server_cpu_s']:>10}")
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
