"""`make demo`: a local cluster, knfleet's main job on it (install, then a converged re-run), a rollout that halts
(its canary down) and one that converges, a new model version rolled out progressively (promoted) and a slower one
(rolled back), the result; the reports (HTML, JSON, metrics, screenshots) in reports/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from localcluster import browser, build, fleet, paths

REPORTS = paths.REPO / "reports"


def _step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def _pyinfra(*args: str, env: dict[str, str] | None = None) -> float:
    t0 = time.monotonic()
    argv = [str(paths.REPO / ".venv" / "bin" / "pyinfra"), "inventories/local.py", "deploy.py", "-y", *args]
    print("$ " + " ".join([*(f"{k}={v}" for k, v in (env or {}).items()), "pyinfra", *argv[1:]]), flush=True)
    proc = subprocess.run(argv, cwd=paths.REPO, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"demo: the deploy failed (exit {proc.returncode}); see the output above")
    return time.monotonic() - t0


def _knfleet(*args: str, env: dict[str, str] | None = None) -> int:
    argv = [str(paths.REPO / ".venv" / "bin" / "knfleet"), *args]
    print("$ " + " ".join([*(f"{k}={v}" for k, v in (env or {}).items()), "knfleet", *args]), flush=True)
    return subprocess.run(argv, cwd=paths.REPO, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}).returncode


def _progressive(image: str, env: dict[str, str] | None = None) -> str:
    """group_data/local.py's models with the scale-to-zero one rolled out progressively at `image`."""
    check = {"messages": [{"role": "user", "content": "怎么计算1+1."}], "expect": "2"}
    sleepy = {"name": "qwen7b-scale-to-zero", "image": image, **({"env": env} if env else {}),
              "autoscaling": {"initial_scale": 1, "min_scale": 0, "max_scale": 2, "scale_down_delay": "0s",
                              "target": 16, "target_utilization_percentage": 80},
              "rollout": {"strategy": "progressive", "steps": [5, 25, 50, 100], "bake": "2s",
                          "checks": {"requests": 20, "latency_slack": "200ms", "prompts": [check]}}}
    return "models=" + json.dumps([{}, sleepy])


def _rel(p: Path) -> str:
    return str(p.relative_to(paths.REPO))


def main() -> int:
    _step("Binaries (built once into the cache, reused afterwards)")
    bin_dir = build.build()
    print(bin_dir)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    _step("A local cluster: real kube-apiserver 1.32 + etcd + controller-manager + scheduler, kwok nodes; "
          "Knative's real webhook and controller run behind their pods")
    clusters = fleet.up(1)
    kubeconfig = clusters[0].kubeconfig
    _step("knfleet installs Knative Serving + Kourier + the nginx proxy, deploys the model services of "
          "group_data/local.py and smoke-tests them (first run)")
    first = _pyinfra()
    _step("Run it again: a converged cluster changes nothing")
    metrics_file = REPORTS / "knfleet.prom"
    second = _pyinfra(env={"KNFLEET_REPORT": _rel(REPORTS / "demo-run.json"),
                           "KNFLEET_REPORT_HTML": _rel(REPORTS / "demo-run.html"),
                           "KNFLEET_METRICS_FILE": _rel(metrics_file)})
    _step("A rollout whose canary is down halts (the demo stops the cluster's API server for it)")
    rollout = ("rollout", "inventories/local.py", "--state", _rel(REPORTS / "demo-rollout.state.json"))
    clusters[0].stop_component("kube-apiserver")
    try:
        code = _knfleet(*rollout, "--report", _rel(REPORTS / "demo-halted.json"),
                        "--report-html", _rel(REPORTS / "demo-halted.html"),
                        env={"KNFLEET_METRICS_FILE": _rel(metrics_file)})
    finally:
        clusters[0].restart_component("kube-apiserver")
    if code != 2:
        raise SystemExit(f"demo: the rollout with its canary down should halt (exit 2), not exit {code}")
    _step("The same rollout with the canary back: converged (--smoke-cold wakes services at zero: cold starts)")
    code = _knfleet(*rollout, "--smoke-cold", "--report", _rel(REPORTS / "demo-converged.json"),
                    "--report-html", _rel(REPORTS / "demo-converged.html"),
                    env={"KNFLEET_METRICS_FILE": _rel(metrics_file)})
    if code != 0:
        raise SystemExit(f"demo: the rollout failed (exit {code}); see the output above")
    _step("Reports: the two rollouts on one page (trends), screenshots, metrics")
    page = REPORTS / "demo-report.html"
    if _knfleet("report", _rel(REPORTS / "demo-halted.json"), _rel(REPORTS / "demo-converged.json"), "-o", _rel(page)):
        raise SystemExit("demo: knfleet report failed; see the output above")
    shots = []
    if browser.binaries():
        for name in ("demo-halted", "demo-converged", "demo-report"):
            shots.append(browser.screenshot(REPORTS / f"{name}.html", REPORTS / f"{name}.png"))
    else:
        print(f"(no screenshots: chromium is not installed; apt-get install -y {browser.PACKAGES})")
    print("\n".join(line for line in metrics_file.read_text().splitlines()
                    if line.startswith(("knfleet_cluster_outcome", "knfleet_smoke_latency_seconds"))
                    and not line.endswith(" 0")))
    _step("A new model version rolled out progressively: checked dark beside the running one, then 5 -> 25 -> 50 "
          "-> 100 % of the traffic, each step checked against the running version; promoted")
    _pyinfra("--data", _progressive("vllm/vllm-openai:v0.6.3"))  # the first run names the running revision
    progressive_report = REPORTS / "demo-progressive.json"
    _pyinfra("--data", _progressive("vllm/vllm-openai:v0.6.4"),
             env={"KNFLEET_REPORT": _rel(progressive_report),
                  "KNFLEET_REPORT_HTML": _rel(REPORTS / "demo-progressive.html")})
    _step("A version 500 ms slower: rolled back at its first step, the running version keeps the traffic (the run "
          "fails, naming the check and both versions' figures)")
    argv = [str(paths.REPO / ".venv" / "bin" / "pyinfra"), "inventories/local.py", "deploy.py", "-y", "--data",
            _progressive("vllm/vllm-openai:v0.6.5", {"KNFLEET_SIM_LATENCY_MS": "500"})]
    print("$ pyinfra " + " ".join(argv[1:5]) + " --data models=[… a slower version …]", flush=True)
    if subprocess.run(argv, cwd=paths.REPO, stdin=subprocess.DEVNULL).returncode == 0:
        raise SystemExit("demo: the slower version should have been rolled back")
    subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "get", "ksvc", "qwen7b-scale-to-zero", "-n",
                    "knative-qwen7b", "-o", "jsonpath={range .status.traffic[*]}{.tag} {.revisionName} "
                    "{.percent}%{'\\n'}{end}"])
    if browser.binaries():
        shots.append(browser.screenshot(REPORTS / "demo-progressive.html", REPORTS / "demo-progressive.png"))
    _step("Result")
    subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "get", "pods", "-A", "-o", "wide",
                    "--field-selector=metadata.namespace!=kube-system"])
    subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "get", "ksvc", "-A"])
    subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "get", "configmap", "config-network", "-n",
                    "knative-serving", "-o", "jsonpath=config-network ingress-class: {.data.ingress-class}{'\\n'}"])
    print(f"\nfirst run {first:.1f}s, second run {second:.1f}s (no change)")
    print(f"""
Try it yourself:
  export PATH={bin_dir}:$PATH
  kubectl --kubeconfig {kubeconfig} get ksvc,pods -A
  curl -s -H 'Host: knative-qwen7b-svc.knative-qwen7b.127.0.0.1.nip.io' -H 'Content-Type: application/json' \\
    -d '{{"model":"qwen7b","messages":[{{"role":"user","content":"怎么计算1+1."}}]}}' \\
    {(clusters[0].dir / 'internal.url').read_text().strip()}/v1/chat/completions
  .venv/bin/knfleet status inventories/local.py                                               # drift, services
  .venv/bin/knfleet lint group_data/local.py                                                  # lint the models
  .venv/bin/pyinfra inventories/local.py deploy.py --dry --data knative_domain=example.org   # what would change
  .venv/bin/pyinfra inventories/local.py deploy.py -y --data action=uninstall               # remove it all
  make local-down                                                                           # stop the cluster
Knative's webhook and controller are the real binaries (logs: {clusters[0].dir / 'logs' / 'pods'});
the autoscaler's and net-kourier's status work, Kourier, nginx and vLLM are simulated (localcluster/simulator):
  internal entry point (kourier-internal): {(clusters[0].dir / 'internal.url').read_text().strip()}
  public entry point (nginx proxy):        {(clusters[0].dir / 'public.url').read_text().strip()}
Reports: {_rel(REPORTS / "demo-halted.html")} (canary down), {_rel(REPORTS / "demo-converged.html")}, \
{_rel(REPORTS / "demo-run.html")} (the re-run), {_rel(REPORTS / "demo-progressive.html")} (a progressive rollout),
metrics {_rel(metrics_file)}
Screenshots: {", ".join(_rel(p) for p in shots) or "none (no chromium)"}""")
    print(f"\nHTML report: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
