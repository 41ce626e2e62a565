"""`make bench`: knfleet measured on local clusters, every figure a ratio of medians taken in the same run.

    no-op converge (pyinfra -y deploy.py on a converged cluster)  vs  one `kubectl diff --server-side` (the floor)
    no-op converge                                                 vs  Ansible kubernetes.core.k8s, same objects
    no-op converge on 1, 3 and 10 clusters
    no-op converge with a progressive model (nothing to roll out)   vs  the same models replaced at once
    fresh install to all-Ready                                     vs  the runbook's commands, only needed waits
    deploying 1, 10 and 100 model services                         vs  one batched apply + wait of the same objects
    knfleet lint of 1,000 services

Results: reports/bench.json and a table printed at the end (copied into docs/measurements.md). BENCH_ROUNDS
(default 5) sets the paired runs per comparison; BENCH_CLUSTERS (default 10) the largest fleet; BENCH_ONLY
(comma-separated: lint, noop, fleet, progressive, fresh, services) runs only those.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from localcluster import build, paths
from localcluster.cluster import LocalCluster, Spec

REPO = paths.REPO
SHARED = REPO.parent / "shared" / "knative" / "v1.17.0"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.env = dict(os.environ, KNFLEET_LOCAL=str(root), PYINFRA_PROGRESS="off",
                        PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                        ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
        self.clusters: list[LocalCluster] = []
        self.results: dict[str, Any] = {}

    # --- helpers --------------------------------------------------------------------------------------------
    def run(self, argv: list[str], check: bool = True, stdin: str | None = None) -> float:
        t0 = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True, input=stdin)
        took = time.monotonic() - t0
        if check and proc.returncode != 0:
            raise SystemExit(f"bench: {' '.join(argv[:6])} … failed ({proc.returncode}):\n{proc.stdout[-1500:]}"
                             f"\n{proc.stderr[-3000:]}")
        return took

    def pyinfra(self, *args: str) -> list[str]:
        return [str(REPO / ".venv" / "bin" / "pyinfra"), "inventories/local.py", "deploy.py", "-y", *args]

    def kubectl(self, c: LocalCluster, *args: str) -> list[str]:
        return [str(self.bin_dir / "kubectl"), f"--kubeconfig={c.kubeconfig}", *args]

    def start(self, names: list[str]) -> list[LocalCluster]:
        new = [LocalCluster(n, self.root / "clusters", Spec(ready_delay_ms=300)) for n in names]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda c: c.up(self.bin_dir), new))
        self.clusters += new
        return new

    def stop(self, clusters: list[LocalCluster]) -> None:
        for c in clusters:
            c.remove()
            self.clusters.remove(c)

    @staticmethod
    def limit(clusters: list[LocalCluster]) -> list[str]:
        return [a for c in clusters for a in ("--limit", f"@kube/{c.name}")]

    def paired(self, name: str, a: tuple[str, Callable[[], float]], b: tuple[str, Callable[[], float]],
               rounds: int) -> dict[str, Any]:
        """Alternate a and b `rounds` times; medians and their ratio a/b."""
        ta, tb = [], []
        for _ in range(rounds):
            ta.append(a[1]())
            tb.append(b[1]())
        row = {"what": name, a[0]: statistics.median(ta), b[0]: statistics.median(tb),
               "ratio": statistics.median(ta) / statistics.median(tb), "samples": {a[0]: ta, b[0]: tb}}
        log(f"{name}: {a[0]} {row[a[0]]:.2f}s, {b[0]} {row[b[0]]:.2f}s, ratio {row['ratio']:.2f}")
        self.results[name] = row
        return row

    def stages(self, c: LocalCluster, models: list[dict] | None = None) -> Path:
        """knfleet's rendered stages of a cluster as multi-document YAML files (for kubectl and Ansible)."""
        from knfleet.desired import plan, settings
        from knfleet.fleet import inventory

        os.environ["KNFLEET_LOCAL"] = str(self.root)
        host = next(h for h in inventory.load("inventories/local.py") if h.name == c.name)
        data = {**host.data, **({"models": models} if models is not None else {})}
        d = plan.desired(host.host, settings.Data(data))
        folder = self.root / "stages" / c.name
        folder.mkdir(parents=True, exist_ok=True)
        for s in d.stages:
            (folder / f"{s.name}.yaml").write_text(yaml.safe_dump_all(list(s.objects), sort_keys=False))
        return folder

    # --- the comparisons ----------------------------------------------------------------------------------------
    def noop_vs_floor_and_ansible(self, c: LocalCluster, rounds: int) -> None:
        folder = self.stages(c)
        files = [a for s in ("crds", "config", "core", "kourier", "proxy", "services")
                 for a in ("-f", str(folder / f"{s}.yaml"))]
        diff = self.kubectl(c, "diff", "--server-side", "--field-manager=knfleet", "--force-conflicts", *files)
        knfleet = self.pyinfra(*self.limit([c]))
        self.run(knfleet)
        code = subprocess.run(diff, cwd=REPO, env=self.env, capture_output=True).returncode
        if code != 0:
            log(f"note: kubectl diff on the converged cluster exits {code} (it sees a difference)")
        self.paired("no-op converge vs kubectl diff (floor)", ("knfleet", lambda: self.run(knfleet)),
                    ("kubectl_diff", lambda: self.run(diff, check=False)), rounds)
        ansible = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
        if not ansible:
            log("Ansible is not installed (pip install -e '.[bench]'): the peer comparison is skipped")
            return
        play = [ansible, "-i", "localhost,", str(REPO / "bench" / "ansible-converge.yml"),
                "-e", f"kubeconfig={c.kubeconfig}", "-e", f"stages_dir={folder}",
                "-e", f"ansible_python_interpreter={sys.executable}"]
        self.run(play)  # the first run may still take fields over: measure the converged re-runs
        self.paired("no-op converge vs Ansible kubernetes.core.k8s (same objects)",
                    ("knfleet", lambda: self.run(knfleet)), ("ansible", lambda: self.run(play)), rounds)
        self.run(knfleet)

    def progressive_noop(self, first: LocalCluster, rounds: int) -> None:
        """The added cost of a converged re-run when a model rolls out progressively and nothing changed (its tags
        and state read from the list every run makes), against the same models with the default strategy: the
        same shape on two converged clusters."""
        from knfleet.fleet import inventory

        os.environ["KNFLEET_LOCAL"] = str(self.root)
        host = next(h for h in inventory.load("inventories/local.py") if h.name == first.name)
        plain = list(host.data.get("models") or [])
        staged = [{**plain[0], "rollout": {"strategy": "progressive", "steps": [100], "bake": "1s",
                                           "checks": {"requests": 3}}}, *plain[1:]]
        (other,) = self.start(["p1"])
        a = self.pyinfra(*self.limit([other]), "--data", "models=" + json.dumps(staged))
        b = self.pyinfra(*self.limit([first]), "--data", "models=" + json.dumps(plain))
        self.run(a)  # installs, deploys the first version as stable
        self.run(b)
        self.paired("no-op converge with a progressive model vs replace", ("progressive", lambda: self.run(a)),
                    ("replace", lambda: self.run(b)), rounds)
        self.stop([other])

    def fleet_scaling(self, first: LocalCluster, count: int, rounds: int) -> None:
        more = self.start([f"b{i}" for i in range(2, count + 1)])
        fleet = [first, *more]
        log(f"{count} clusters up; installing them")
        self.run(self.pyinfra(*self.limit(fleet)))
        rows = {}
        for n in sorted({1, min(3, count), count}):
            times = [self.run(self.pyinfra(*self.limit(fleet[:n]))) for _ in range(rounds)]
            rows[n] = statistics.median(times)
            log(f"no-op converge on {n} cluster(s): {rows[n]:.2f}s")
        self.results["no-op converge on 1, 3, 10 clusters"] = {
            "what": "no-op converge by fleet size", "seconds": rows, "ratio": rows[count] / rows[1]}
        self.stop(more)

    def fresh_install_vs_runbook(self, rounds: int) -> None:
        ta, tb = [], []
        for i in range(rounds):
            a, b = self.start([f"fresh-a{i}", f"fresh-b{i}"])
            ta.append(self.run(self.pyinfra(*self.limit([a]), "--data", "models=[]")))
            folder = self.stages(b, models=[])
            runbook = [
                self.kubectl(b, "apply", "--server-side", "-f", str(folder / "crds.yaml")),
                self.kubectl(b, "wait", "--for=condition=Established", "crd", "-l", "knative.dev/crd-install=true",
                             "--timeout=300s"),
                self.kubectl(b, "apply", "--server-side", "-f", str(folder / "config.yaml"), "-f",
                             str(folder / "core.yaml")),
                self.kubectl(b, "wait", "--for=condition=Available", "deployment", "--all", "-n", "knative-serving",
                             "--timeout=300s"),
                self.kubectl(b, "apply", "--server-side", "-f", str(folder / "kourier.yaml"), "-f",
                             str(folder / "proxy.yaml")),
                self.kubectl(b, "wait", "--for=condition=Available", "deployment", "--all", "-n", "kourier-system",
                             "--timeout=300s"),
                self.kubectl(b, "wait", "--for=condition=Available", "deployment", "--all", "-n", "knative-nginx",
                             "--timeout=300s"),
                self.kubectl(b, "wait", "--for=condition=Available", "deployment", "--all", "-n", "knative-serving",
                             "--timeout=300s"),
            ]
            tb.append(sum(self.run(cmd) for cmd in runbook))
            log(f"fresh install round {i + 1}: knfleet {ta[-1]:.1f}s, runbook {tb[-1]:.1f}s")
            self.stop([a, b])
        self.results["fresh install vs the runbook's commands"] = {
            "what": "fresh install to all-Ready", "knfleet": statistics.median(ta), "runbook": statistics.median(tb),
            "ratio": statistics.median(ta) / statistics.median(tb), "samples": {"knfleet": ta, "runbook": tb}}

    def services(self, c: LocalCluster, counts: list[int]) -> None:
        rows = {}
        for n in counts:
            ns = f"bench-{n}"
            models = [{"name": f"m{i}", "namespace": ns, "gpus": 0, "image": "vllm/vllm-openai@sha256:" + "1" * 64,
                       "autoscaling": {"initial_scale": 1, "min_scale": 1}, "smoke": False} for i in range(n)]
            t_knfleet = self.run(self.pyinfra(*self.limit([c]), "--data", "models=" + json.dumps(models)))
            # the same objects in another namespace, applied at once and waited for with kubectl
            other = [{**m, "namespace": f"{ns}-kubectl"} for m in models]
            folder = self.stages(c, models=other)
            # the services stage holds no Namespace (knfleet's Own step creates a missing one): the runbook's
            # `kubectl create namespace` is part of the batched path, as that step is part of knfleet's
            batched = self.run(self.kubectl(c, "create", "namespace", f"{ns}-kubectl")) \
                + self.run(self.kubectl(c, "apply", "--server-side", "--field-manager=bench", "-f",
                                        str(folder / "services.yaml"))) \
                + self.run(self.kubectl(c, "wait", "--for=condition=Ready", "ksvc", "--all", "-n", f"{ns}-kubectl",
                                        "--timeout=600s"))
            rows[n] = {"knfleet": t_knfleet, "batched": batched, "ratio": t_knfleet / batched}
            log(f"{n} model service(s): knfleet {t_knfleet:.1f}s, batched apply + wait {batched:.1f}s")
            self.run(self.kubectl(c, "delete", "namespace", f"{ns}-kubectl", "--wait=false"))
        self.run(self.pyinfra(*self.limit([c])))  # back to group data's models (prunes the bench services)
        self.results["deploying 1, 10 and 100 model services"] = {"what": "model services", "rows": rows}

    def lint(self, n: int, rounds: int) -> None:
        from knfleet.desired import models

        path = self.root / "services.yaml"
        svc = [models.render_service(models.Model(name=f"m{i}", namespace="bench",
                                                  image="vllm/vllm-openai@sha256:" + "1" * 64)) for i in range(n)]
        path.write_text(yaml.safe_dump_all(svc, sort_keys=False))
        argv = [str(REPO / ".venv" / "bin" / "knfleet"), "lint", str(path)]
        # The floor: a Python process that only parses the same file with PyYAML's C loader.
        parse = [sys.executable, "-c", "import sys, yaml; list(yaml.load_all(open(sys.argv[1]), "
                 "Loader=yaml.CSafeLoader))", str(path)]
        self.paired(f"knfleet lint of {n} services", ("knfleet", lambda: self.run(argv, check=False)),
                    ("yaml_parse_only", lambda: self.run(parse)), max(rounds, 7))


def main() -> int:
    bin_dir = build.build()
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    fleet_size = int(os.environ.get("BENCH_CLUSTERS", "10"))
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(","))) or {
        "lint", "noop", "fleet", "progressive", "fresh", "services"}
    tmp = Path(tempfile.mkdtemp(prefix="knfleet-bench-"))
    bench = Bench(tmp, bin_dir)
    t0 = time.monotonic()
    try:
        if "lint" in only:
            bench.lint(1000, rounds)
        (first,) = bench.start(["b1"])
        log("installing the first cluster")
        bench.run(bench.pyinfra(*bench.limit([first])))
        if "noop" in only:
            bench.noop_vs_floor_and_ansible(first, rounds)
        if "progressive" in only:
            bench.progressive_noop(first, rounds)
        if "fleet" in only:
            bench.fleet_scaling(first, fleet_size, max(3, rounds // 2 + 1))
        if "fresh" in only:
            bench.fresh_install_vs_runbook(max(3, rounds // 2 + 1))
        if "services" in only:
            bench.services(first, [1, 10, 100])  # last: 100 services leave the cluster busy for a while
    finally:
        for c in list(bench.clusters):
            c.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "rounds": rounds, "minutes": round((time.monotonic() - t0) / 60, 1), "results": bench.results,
    }
    out = REPO / "reports" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    log(f"done in {result['minutes']} min -> {out}")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "samples"} for k, v in bench.results.items()},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
