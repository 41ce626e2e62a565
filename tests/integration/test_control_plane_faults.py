"""Issue 13 part 2: control-plane faults mid-run, on one cluster of two.

The apiserver stopped (SIGSTOP) during an apply and during a wait, etcd stopped and started again, Knative's webhook
process killed (SIGKILL) and held during the services stage, the GPU nodes' kubelets stopped (the nodes go
NotReady): the faulted cluster fails with a message naming the
step and the cause (or, for a fault Knative's or Kubernetes' retries absorb, converges), the run ends by itself
(the subprocess timeout is only a hang guard), the other cluster of the run converges untouched by the fault, and
the next run converges both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster.cluster import Spec
from tests.conftest import REPO, knative_release_folder
from tests.kube import Kube, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults,
              pytest.mark.skipif(not os.environ.get("KNFLEET_FAULTS"),
                                 reason="long: `make faults` runs it (KNFLEET_FAULTS=1), `make test` does not")]

HANG_GUARD = 600  # seconds: far above every timeout these runs are given; reaching it means a hang


@pytest.fixture(scope="module")
def two(pool, tmp_path_factory):
    spec = Spec(ready_delay_ms=300, time_factor=0.05)
    a, b = pool.start("cpf", spec, group="cpf"), pool.start("cpf", spec, group="cpf")
    inv = tmp_path_factory.mktemp("cpf") / "inv.py"
    hosts = [(f"@kube/{k.name}", {"kubeconfig": str(k.kubeconfig), "knative_bundle_dir": str(knative_release_folder())})
             for k in (a, b)]
    inv.write_text(f"local = {hosts!r}\n")
    first = deploy(inv)
    assert first.returncode == 0, first.stderr[-3000:]
    yield inv, a, b
    pool.stop(a)
    pool.stop(b)


def deploy(inv: Path, *data: str) -> subprocess.CompletedProcess[str]:
    argv = [str(REPO / ".venv" / "bin" / "pyinfra"), str(inv), "deploy.py", "-y", *sum((["--data", d] for d in data),
                                                                                       [])]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, PYINFRA_PROGRESS="off"))


def with_fault(inv: Path, trigger: str, fault: Callable[[], None], undo: Callable[[], None],
               *data: str) -> tuple[int, str]:
    """Run the deploy; call `fault` when a stderr line contains `trigger`; `undo` when the run has ended."""
    argv = [str(REPO / ".venv" / "bin" / "pyinfra"), str(inv), "deploy.py", "-y", *sum((["--data", d] for d in data),
                                                                                       [])]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=dict(os.environ, PYINFRA_PROGRESS="off"))
    guard = threading.Timer(HANG_GUARD, proc.kill)
    guard.start()
    lines: list[str] = []
    faulted = False
    try:
        for line in proc.stderr:
            lines.append(line)
            if not faulted and trigger in line:
                fault()
                faulted = True
        proc.wait()
    finally:
        guard.cancel()
        undo()
    out = "".join(lines)
    assert faulted, f"never saw {trigger!r}:\n{out[-3000:]}"
    assert proc.returncode != -signal.SIGKILL, f"the run hung ({HANG_GUARD}s):\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    return proc.returncode, out


def closing(out: str, kube: Kube) -> str:
    return next(x for x in out.splitlines() if x.startswith(f"knfleet: {kube.name}: "))


def healthy_and_rerun(inv: Path, out: str, b: Kube) -> None:
    assert " FAILED" not in closing(out, b) and "INCOMPLETE" not in closing(out, b), closing(out, b)
    again = deploy(inv)
    assert again.returncode == 0, again.stderr[-3000:]


def pid_of(kube: Kube, comp: str) -> int:
    return kube.cluster.load_state().pids[comp]


def resume(kube: Kube, pid: int) -> None:
    """SIGCONT the apiserver; then restart the local kube-controller-manager, whose watches can stay hung for
    minutes after the apiserver's pause (Deployments then never report their Ready pods Available): a fault of the
    local control plane, not of knfleet, and one a real control plane's liveness probes would restart."""
    os.kill(pid, signal.SIGCONT)
    kube.cluster.stop_component("kube-controller-manager")
    kube.cluster.restart_component("kube-controller-manager")


def test_apiserver_stopped_during_an_apply(two):
    inv, a, b = two
    pid = pid_of(a, "kube-apiserver")
    code, out = with_fault(inv, "Starting operation: Knative Serving | Knative configuration",
                           lambda: os.kill(pid, signal.SIGSTOP), lambda: resume(a, pid),
                           "knative_domain=stopped-apply.example", "request_timeout=3", "wait_timeout=20")
    line = closing(out, a)
    assert code != 0 and f"knfleet: {a.name}: FAILED (install) - " in line, line
    assert any(t in line for t in ("Knative configuration", "Knative Serving", "Kourier", "proxy", "Ready")), line
    assert any(c in line for c in ("timed out", "ReadTimeout", "not ready after")), line
    healthy_and_rerun(inv, out, b)


def test_apiserver_stopped_during_a_wait(two):
    inv, a, b = two
    pid = pid_of(a, "kube-apiserver")
    greedy = json.dumps([{"name": "greedy", "namespace": "gpu-test", "gpus": 99}])
    code, out = with_fault(inv, "Starting operation: Model services | Model services Ready",
                           lambda: os.kill(pid, signal.SIGSTOP), lambda: resume(a, pid),
                           f"models={greedy}", "request_timeout=3", "model_wait_timeout=20",
                           "gpu_preflight=warn")  # a wait that cannot end: past the GPU preflight, which refuses it
    line = closing(out, a)
    assert code != 0 and f"knfleet: {a.name}: FAILED (install) - " in line and "Model services Ready" in line, line
    assert "not ready after 20s" in line or "timed out" in line, line
    # b fails too (99 GPUs), but for its own reason: the scheduler's (Knative's revision names it, "Insufficient
    # nvidia.com/gpu", or says Unschedulable while it waits), not the other cluster's apiserver
    lines = out.splitlines()
    at = next(i for i, x in enumerate(lines) if x.strip().startswith(f"[@kube/{b.name}] Model services Ready"))
    why = "\n".join(lines[at:at + 2])
    assert any(t in why for t in ("Insufficient nvidia.com/gpu", "Unschedulable")), out[-4000:]
    assert "timed out" not in why and "timed out" not in closing(out, b), out[-4000:]
    again = deploy(inv)
    assert again.returncode == 0, again.stderr[-3000:]


def test_etcd_stopped_and_started_again_mid_run(two):
    inv, a, b = two

    timer = threading.Timer(5.0, a.cluster.restart_component, args=("etcd",))

    def stop() -> None:
        a.cluster.stop_component("etcd")
        timer.start()

    def start_again() -> None:
        if timer.is_alive():
            timer.join()
        a.cluster.restart_component("etcd")

    code, out = with_fault(inv, "Starting operation: Knative Serving | Knative configuration", stop, start_again,
                           "knative_domain=etcd-restart.example", "request_timeout=3", "wait_timeout=30")
    line = closing(out, a)
    if code != 0:  # the usual case: a step's requests failed while etcd was away
        assert f"knfleet: {a.name}: FAILED (install) - " in line and ":" in line.split(" - ", 1)[1], line
    healthy_and_rerun(inv, out, b)


def webhook_pid(kube: Kube) -> int:
    pods = kube.json("get", "pods", "-n", "knative-serving", "-l", "app=webhook")["items"]
    cid = pods[0]["status"]["containerStatuses"][0]["containerID"]
    return int(cid.rsplit("/", 1)[1])


def test_knative_webhook_killed_during_the_services_stage(two):
    """SIGKILL of the webhook's process as the model services are applied: the apply retries while the webhook
    restarts (the runner restarts it as a kubelet would) and the run converges; or it fails naming the webhook."""
    inv, a, b = two
    models = json.dumps([{"name": "after-kill", "namespace": "kill-test", "gpus": 0}])
    code, out = with_fault(inv, "Starting operation: Model services | Model services (Knative Services)",
                           lambda: os.kill(webhook_pid(a), signal.SIGKILL), lambda: None,
                           f"models={models}", "wait_timeout=60", "model_wait_timeout=30")
    line = closing(out, a)
    assert code == 0 or ("FAILED" in line and "webhook" in line), line
    healthy_and_rerun(inv, out, b)


def test_knative_webhook_held_during_the_services_stage_fails_naming_it(two):
    """The webhook's process stopped and kept from starting as the services are applied: the apply is refused
    ("failed calling webhook") or, when it got through before the webhook went, the wait for the services gives up
    at its timeout with Knative's reason. Either way the step and the cause are named."""
    inv, a, b = two
    models = json.dumps([{"name": "held", "namespace": "hold-test", "gpus": 0}])
    code, out = with_fault(inv, "Starting operation: Model services | Model services (Knative Services)",
                           lambda: a.cluster.set_faults({"knative-serving/webhook": "hold"}),
                           lambda: a.cluster.set_faults({}), f"models={models}", "wait_timeout=15",
                           "model_wait_timeout=30")
    line = closing(out, a)
    assert code != 0 and "FAILED" in line, line
    # the services stage applies the listed services, deletes the ones no longer listed (group data's: the
    # webhook validates deletes too), then waits: whichever step the held webhook stops is named with it
    assert (any(step in line for step in ("Model services (Knative Services)",
                                           "Delete model services removed from group data"))
            and "webhook" in line) or ("Model services Ready" in line and "not ready after 30s" in line), line
    healthy_and_rerun(inv, out, b)


def test_gpu_nodes_made_notready_mid_run_fail_the_cluster_naming_them(two):
    """The kubelets of the faulted cluster's GPU nodes stop as the run starts: kube-controller-manager's node
    lifecycle controller marks the nodes NotReady about 40 s later, the new GPU model's pod is never run, and the
    wait for the model services gives up at its timeout naming the step, Knative's reason and the NotReady nodes
    (in the closing line). The other cluster converges the same model; the next run, kubelets back, converges."""
    inv, a, b = two
    gpu = sorted(n["metadata"]["name"] for n in a.json("get", "nodes", "-l", "nvidia.com/gpu.present=true")["items"])
    assert gpu, "the local cluster has no GPU node"
    models = json.dumps([{"name": "after-node", "namespace": "node-test", "gpus": 1}])

    def healthy(n: dict) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]) and not any(
            t["key"] in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
            for t in n["spec"].get("taints") or ())

    def kubelets_back() -> None:
        a.cluster.set_kubelets(gpu, running=True)
        eventually(lambda: all(healthy(n) for n in a.json("get", "nodes")["items"] if n["metadata"]["name"] in gpu),
                   90, what="the GPU nodes Ready and their unreachable taints gone")

    code, out = with_fault(inv, "Starting operation: Knative Serving | Knative configuration",
                           lambda: a.cluster.set_kubelets(gpu, running=False), kubelets_back,
                           f"models={models}", "model_wait_timeout=120")
    line = closing(out, a)
    assert code != 0 and f"knfleet: {a.name}: FAILED (install) - " in line and "Model services Ready" in line, line
    assert f"not ready after 120s ({len(gpu)} of " in line and \
        f"node(s) NotReady or cordoned: {', '.join(gpu)})" in line, line
    assert "(NodeStatusUnknown: Kubelet stopped posting node status.)" in out, out[-3000:]
    assert "ksvc node-test/after-node" in out, out[-3000:]
    print("\n" + "\n".join(x for x in out.splitlines() if "NotReady" in x or x.startswith("knfleet: ")))
    healthy_and_rerun(inv, out, b)
