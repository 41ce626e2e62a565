"""`make demo`: a local cluster, knfleet's main job on it (install, then a converged re-run), the result."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from localcluster import build, fleet, paths


def _step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def _pyinfra(*args: str) -> float:
    t0 = time.monotonic()
    argv = [str(paths.REPO / ".venv" / "bin" / "pyinfra"), "inventories/local.py", "deploy.py", "-y", *args]
    print("$ " + " ".join(["pyinfra", *argv[1:]]), flush=True)
    proc = subprocess.run(argv, cwd=paths.REPO, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"demo: the deploy failed (exit {proc.returncode}); see the output above")
    return time.monotonic() - t0


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
    second = _pyinfra()
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
  public entry point (nginx proxy):        {(clusters[0].dir / 'public.url').read_text().strip()}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
