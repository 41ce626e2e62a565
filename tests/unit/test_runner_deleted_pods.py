"""The pod runner ends a deleted pod of knfleet's image as a kubelet does (localcluster/runner/pods.py: _terminate,
_finish_deleted): SIGTERM once, SIGKILL only once the grace period is over, the final status (a terminal phase)
written before the delete, the delete with grace 0 and the pod's uid as precondition, nothing restarted. A pod with
no record here (deleted before it ran) is marked Failed as the kubelet's TerminatePod marks it; a pod that finished
before the runner started is never run again.

Real child processes (this Python, through a stand-in for knfleet's console script) and a fake CoreV1Api that
records every call in order; the runner's clock is a fake one, so "before" and "after the grace period" are states,
not durations."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from localcluster.runner import pods
from localcluster.runner.pods import PodRunner

POLL = 0.02
POLLS = 1500  # 30 s: generous limits for a loaded 2-core machine, never an assertion on how long something took

TRAPS_TERM = """
import signal, sys, time, pathlib
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
pathlib.Path(sys.argv[1]).write_text("ready")
time.sleep(600)
"""

IGNORES_TERM = """
import signal, sys, time, pathlib
seen = pathlib.Path(sys.argv[1] + ".sigterm")
def note(*_):
    with seen.open("a") as out:
        out.write("TERM\\n")
signal.signal(signal.SIGTERM, note)
pathlib.Path(sys.argv[1]).write_text("ready")
while True:
    time.sleep(600)
"""


class Clock:
    """The runner's time module: a monotonic clock the test moves; sleep() really sleeps (stop_all)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


class RecordingCore:
    """CoreV1Api as far as the runner uses it, each call recorded in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_status = 0  # the next n status writes fail with a 500

    def patch_namespaced_pod_status(self, name: str, ns: str, body: dict, **_: object) -> None:
        if self.fail_status:
            self.fail_status -= 1
            raise ApiException(status=500, reason="Internal Server Error")
        self.calls.append(("status", body["status"]))

    def delete_namespaced_pod(self, name: str, ns: str, body: Any = None, **_: object) -> None:
        self.calls.append(("delete", {"name": name, "namespace": ns, "grace": body.grace_period_seconds,
                                      "uid": body.preconditions.uid if body.preconditions else None}))

    def read_namespaced_secret(self, name: str, ns: str):
        raise ApiException(status=404, reason="Not Found")

    read_namespaced_config_map = read_namespaced_secret

    def create_namespaced_service_account_token(self, sa: str, ns: str, body: Any):
        return SimpleNamespace(status=SimpleNamespace(token=f"token-of-{sa}"))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]

    def statuses(self) -> list[dict]:
        return [body for kind, body in self.calls if kind == "status"]

    def deletes(self) -> list[dict]:
        return [body for kind, body in self.calls if kind == "delete"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(pods, "time", c)
    return c


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock):
    # knfleet's image's entrypoint stands for this Python here: the pod's args are a program for it
    script = tmp_path / "knfleet"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    monkeypatch.setattr(pods, "knfleet_script", lambda: script)
    (tmp_path / "cluster").mkdir()
    r = PodRunner(None, tmp_path / "cluster", tmp_path / "bin", "https://127.0.0.1:1", "", log=lambda m: None)
    r.core = RecordingCore()
    yield r
    for c in r.containers.values():  # nothing left behind if a test failed half-way
        if c.popen is not None and c.popen.poll() is None:
            c.popen.kill()
            c.popen.wait()


def pod(args: list[str] | None = None, uid: str = "u1", restart: str = "Never", ip: bool = True,
        phase: str | None = None) -> dict:
    status: dict[str, Any] = {"podIP": "10.0.0.9"} if ip else {}
    if phase:
        status["phase"] = phase
    return {"metadata": {"name": "fleet-w0-0-abc", "namespace": "knfleet", "uid": uid, "labels": {"job-name": "w0"}},
            "spec": {"nodeName": "kwok-cpu-1", "restartPolicy": restart, "serviceAccountName": "fleet-shard",
                     "containers": [{"name": "knfleet", "image": "knfleet:0.1.0", "command": ["knfleet"],
                                     "args": args or ["-c", "pass"]}]},
            "status": status}


def deleted(p: dict, grace: int = 30) -> dict:
    out = {**p, "metadata": {**p["metadata"], "deletionTimestamp": "2026-12-07T03:00:00Z",
                             "deletionGracePeriodSeconds": grace}}
    return out


def started(runner: PodRunner, p: dict, marker: Path) -> pods.Container:
    """Reconcile until the pod's process runs and has set up its signal handling (it writes `marker`)."""
    for _ in range(POLLS):
        runner.reconcile([p])
        if marker.exists():
            (c,) = runner.containers.values()
            assert c.pid is not None
            return c
        time.sleep(POLL)
    raise AssertionError(f"the process never got ready: {runner.core.calls}")


def spy_signals(c: pods.Container) -> list[int]:
    """The signals the runner sends the container's process (Popen.kill is send_signal(SIGKILL))."""
    sent: list[int] = []
    real = c.popen.send_signal

    def send(sig: int) -> None:
        sent.append(sig)
        real(sig)

    c.popen.send_signal = send
    return sent


def until_deleted(runner: PodRunner, p: dict) -> None:
    for _ in range(POLLS):
        runner.reconcile([p])
        if runner.core.deletes():
            return
        time.sleep(POLL)
    raise AssertionError(f"never deleted: {runner.core.calls}")


# --- a running process ---------------------------------------------------------------------------------------------
def test_a_process_that_traps_sigterm_gets_it_once_and_ends_as_its_exit_then_the_pod_is_deleted(runner, tmp_path):
    marker = tmp_path / "ready"
    p = pod(["-c", TRAPS_TERM, str(marker)], restart="Always")  # Always: still never restarted once deleted
    c = started(runner, p, marker)
    first_pid, sent = c.popen.pid, spy_signals(c)
    gone = deleted(p)
    until_deleted(runner, gone)
    assert sent == [signal.SIGTERM]  # once, and no SIGKILL: it ended within its grace period
    kinds = runner.core.kinds()
    assert kinds.index("delete") > max(i for i, k in enumerate(kinds) if k == "status")  # final status first
    final = runner.core.statuses()[-1]
    (st,) = final["containerStatuses"]
    assert final["phase"] == "Succeeded"  # a kubelet's terminal pod: exit 0 of every container
    assert st["state"]["terminated"]["exitCode"] == 0 and st["state"]["terminated"]["reason"] == "Completed"
    assert st["containerID"] == f"knfleet-runner://{first_pid}" and not st["ready"]
    assert runner.core.deletes() == [{"name": "fleet-w0-0-abc", "namespace": "knfleet", "grace": 0, "uid": "u1"}]
    # the pod is still listed (a Job's finalizer, a stale cache): nothing restarted, nothing written or deleted again
    calls = len(runner.core.calls)
    for _ in range(5):
        runner.reconcile([gone])
    assert runner.containers == {} and len(runner.core.calls) == calls


def test_a_process_that_ignores_sigterm_is_killed_only_once_the_grace_period_is_over(runner, tmp_path, clock,
                                                                                      monkeypatch):
    monkeypatch.setattr(pods, "KNFLEET_GRACE_MAX", 5.0)  # the pod asks 30 s: capped
    marker = tmp_path / "ready"
    p = pod(["-c", IGNORES_TERM, str(marker)])
    c = started(runner, p, marker)
    sent, gone = spy_signals(c), deleted(p, grace=30)
    runner.reconcile([gone])
    assert sent == [signal.SIGTERM]
    seen = Path(str(marker) + ".sigterm")
    for _ in range(POLLS):  # the process got it (and ignored it)
        if seen.exists():
            break
        time.sleep(POLL)
    assert seen.read_text() == "TERM\n"
    clock.now += 4.9  # within the grace period: it keeps running, is not killed, the pod is not deleted
    for _ in range(5):
        runner.reconcile([gone])
    assert sent == [signal.SIGTERM] and c.popen is not None and c.popen.poll() is None
    assert runner.core.deletes() == []
    assert all(s["phase"] == "Running" for s in runner.core.statuses())
    clock.now += 0.1  # the (capped) grace period is over
    until_deleted(runner, gone)
    assert signal.SIGKILL in sent and sent.count(signal.SIGTERM) == 1
    final = runner.core.statuses()[-1]
    (st,) = final["containerStatuses"]
    assert final["phase"] == "Failed" and st["state"]["terminated"]["exitCode"] == 137
    assert runner.core.kinds()[-1] == "delete" and runner.core.kinds()[-2] == "status"
    assert runner.core.deletes() == [{"name": "fleet-w0-0-abc", "namespace": "knfleet", "grace": 0, "uid": "u1"}]
    assert Path(str(marker) + ".sigterm").read_text() == "TERM\n"  # the process saw one SIGTERM only


def test_the_delete_waits_until_the_final_status_is_written(runner, tmp_path):
    marker = tmp_path / "ready"
    p = pod(["-c", TRAPS_TERM, str(marker)])
    c = started(runner, p, marker)
    runner.core.fail_status = 1  # the final status write fails once
    gone = deleted(p)
    for _ in range(POLLS):
        if c.popen is None:
            break
        runner.reconcile([gone])
        time.sleep(POLL)
    assert c.popen is None
    until_deleted(runner, gone)
    assert runner.core.kinds()[-2:] == ["status", "delete"]
    assert runner.core.statuses()[-1]["phase"] == "Succeeded"


# --- no process ------------------------------------------------------------------------------------------------------
def test_a_pod_deleted_before_it_ran_is_marked_failed_then_deleted(runner):
    p = pod(ip=False, phase="Pending")  # kwok had not given it an IP yet: no record here
    p["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-07T02:59:00Z"},
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"},
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
         "lastTransitionTime": "2026-12-07T02:59:00Z"}]
    p["status"]["containerStatuses"] = [{"name": "knfleet", "image": "knfleet:0.1.0", "ready": False,
                                         "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]
    gone = deleted(p)
    runner.reconcile([gone])
    assert runner.core.kinds() == ["status", "delete"]
    final = runner.core.statuses()[0]
    (st,) = final["containerStatuses"]
    assert final["phase"] == "Failed"
    assert st["state"] == {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                          "message": "The container could not be located when the pod was "
                                                     "terminated"}}
    assert not st["ready"] and not st["started"]
    conds = {c["type"]: c for c in final["conditions"]}
    assert conds["DisruptionTarget"]["reason"] == "EvictionByEvictionAPI"  # kept, as the kubelet keeps it
    assert conds["Ready"]["status"] == conds["ContainersReady"]["status"] == "False"
    assert conds["Ready"]["reason"] == "PodFailed"
    assert conds["Ready"]["lastTransitionTime"] == "2026-12-07T02:59:00Z"  # was False already
    assert runner.core.deletes() == [{"name": "fleet-w0-0-abc", "namespace": "knfleet", "grace": 0, "uid": "u1"}]
    assert runner.containers == {}
    runner.reconcile([gone])  # still listed: not written again
    assert runner.core.kinds() == ["status", "delete"]


def test_a_container_whose_start_waited_ends_terminated_not_waiting(runner):
    p = pod(["-c", "pass"])
    p["spec"]["containers"][0]["env"] = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}]
    runner.reconcile([p])  # the Secret is missing: CreateContainerConfigError, nothing started
    (c,) = runner.containers.values()
    assert c.popen is None and c.waiting and c.waiting[0] == "CreateContainerConfigError"
    runner.reconcile([deleted(p)])
    assert runner.core.kinds()[-2:] == ["status", "delete"]
    final = runner.core.statuses()[-1]
    (st,) = final["containerStatuses"]
    assert final["phase"] == "Failed"
    assert st["state"]["terminated"]["exitCode"] == 137
    assert st["state"]["terminated"]["reason"] == "ContainerStatusUnknown"


def test_an_unscheduled_deleted_pod_is_left_to_the_pod_gc(runner):
    p = pod(ip=False, phase="Pending")
    del p["spec"]["nodeName"]
    runner.reconcile([deleted(p)])
    assert runner.core.calls == []  # no kubelet owns it: kube-controller-manager's pod GC marks it Failed, deletes it


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_deleted_pod_that_finished_before_the_runner_started_is_deleted_as_it_is(runner, phase):
    runner.reconcile([deleted(pod(phase=phase))])
    assert runner.core.kinds() == ["delete"]  # its final status stays what it was


# --- a runner restart ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_pod_that_finished_before_the_runner_started_is_never_run_again(runner, tmp_path, phase):
    marker = tmp_path / "ran"
    p = pod(["-c", f"open({str(marker)!r}, 'w')"], phase=phase)
    for _ in range(3):
        runner.reconcile([p])
    assert not any(c.container_id for c in runner.containers.values())  # no process started
    assert runner.core.calls == []  # its status is left as it is
