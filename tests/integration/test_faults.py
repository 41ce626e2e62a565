"""Issue 13 on a live cluster: bad input changes nothing, secrets never leak, two runs at once never interleave.

(The fuzzing itself runs without a cluster: tests/unit/test_fuzz_input.py; broken files: tests/unit/test_bad_files.py.)
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from knfleet.desired import plan
from knfleet.kube import readiness
from knfleet.kube.client import Cluster, Target
from knfleet.run import lock
from localcluster.cluster import Spec
from tests.conftest import REPO, knative_release_folder
from tests.kube import Kube, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PYINFRA = str(REPO / ".venv" / "bin" / "pyinfra")
# The kinds knfleet writes (and its notes and lock): what "nothing changed" compares.
KINDS = ("namespaces", "configmaps", "services", "serviceaccounts", "deployments", "clusterroles",
         "clusterrolebindings", "roles", "rolebindings", "customresourcedefinitions",
         "mutatingwebhookconfigurations", "validatingwebhookconfigurations", "ksvc", "leases.coordination.k8s.io")


def inventory(path: Path, kube: Kube, kubeconfig: Path | None = None, **data: Any) -> Path:
    """One host in group `local` (so group_data/local.py gives it its models)."""
    host = {"kubeconfig": str(kubeconfig or kube.kubeconfig), "knative_bundle_dir": str(knative_release_folder()),
            **data}
    path.write_text(f"local = {[(f'@kube/{kube.name}', host)]!r}\n")
    return path


def run(inv: Path, *args: str, env: dict[str, str] | None = None, argv0: list[str] | None = None,
        popen: bool = False) -> Any:
    argv = [*(argv0 or [PYINFRA]), str(inv), "deploy.py", "-y", *args]
    e = dict(os.environ, PYINFRA_PROGRESS="off", **(env or {}))
    if popen:
        return subprocess.Popen(argv, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
    return subprocess.run(argv, cwd=REPO, env=e, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)


def snapshot(kube: Kube) -> dict[str, str]:
    """kind/namespace/name -> resourceVersion of everything knfleet may write (leases of Kubernetes' and Knative's
    own leader elections, and the revisions' Deployments Knative scales, left out: they change all the time)."""
    out: dict[str, str] = {}
    for kind in KINDS:
        for o in kube.json("get", kind, "-A")["items"]:
            m = o["metadata"]
            if kind.startswith("leases") and m["name"] != lock.NAME:
                continue
            if kind == "deployments" and m["namespace"] not in plan.NAMESPACES:  # revisions' (Knative scales them)
                continue
            out[f"{kind}/{m.get('namespace', '')}/{m['name']}"] = m["resourceVersion"]
    return out


@pytest.fixture(scope="module")
def installed(pool, tmp_path_factory):
    kube = pool.start("faults", Spec(ready_delay_ms=300, time_factor=0.05), group="faults")
    inv = inventory(tmp_path_factory.mktemp("inv") / "inv.py", kube)
    first = run(inv)
    assert first.returncode == 0, first.stderr[-3000:]
    yield inv, kube
    pool.stop(kube)


# --- part 3: bad input against a live cluster changes nothing ------------------------------------------------------
BAD = [
    ("models=" + json.dumps([{"name": "Bad_Name"}]), "name = 'Bad_Name' is not allowed"),
    ("models=" + json.dumps([{"namespace": 7}]), "namespace = 7 is not allowed"),
    ("models=" + json.dumps([{"name": "twin"}, {"name": "twin"}]), "knative-qwen7b/twin is defined twice"),
    ("models=" + json.dumps([{"env": {"1ABC": "x"}}]), "env name = '1ABC' is not allowed"),
    ("models=" + json.dumps([{"memory": "32GB"}]), "memory = '32GB' is not allowed"),
    ('knative_autoscaler={"stable-window": "5s"}', "stable-window"),
    ("knative_autoscalar={}", "did you mean 'knative_autoscaler'"),
    ("wait_timeout=-1", "wait_timeout: -1 is not allowed"),
    ("knative_domain=Ünïcode.example", "knative_domain: 'Ünïcode.example' is not allowed"),
    # progressive rollouts (issue 20)
    ("models=" + json.dumps([{"rollout": {"strategy": "progressive", "steps": [5, 50, 25, 100]}}]),
     "rollout.steps = [5, 50, 25, 100] is not allowed"),
    ("models=" + json.dumps([{"rollout": {"strategy": "progressive", "checks": {"max_latency_ratio": 0.5}}}]),
     "rollout.checks.max_latency_ratio = 0.5 is not allowed"),
    ("models=" + json.dumps([{"rollout": {"strategy": "progressive", "checks": {"prompts": [
        {"messages": [{"role": "user", "content": "1+1"}], "expect": "(2"}]}}}]),
     "rollout.checks.prompts[0].expect = '(2' is not allowed"),
    ("models=" + json.dumps([{"autoscaling": {"initial_scale": 0, "min_scale": 1},
                              "rollout": {"strategy": "progressive"}}]),
     "rollout.strategy = 'progressive' is not allowed with autoscaling initial_scale 0"),
]


def test_bad_input_against_a_live_cluster_changes_no_resource_version(installed):
    inv, kube = installed
    before = snapshot(kube)
    for data, needle in BAD:
        out = run(inv, "--data", data)
        assert out.returncode == 2, f"{data!r}\n{out.stderr[-2000:]}"
        assert needle in out.stderr and "nothing was changed on any cluster" in out.stderr, (data, out.stderr)
        assert "Traceback" not in out.stdout + out.stderr
    assert snapshot(kube) == before
    print(f"\n{len(BAD)} bad inputs against a live cluster: exit 2 each, {len(before)} objects' resourceVersions "
          "unchanged")


# --- part 4: secrets never leak ------------------------------------------------------------------------------------
def token_kubeconfig(kube: Kube, path: Path) -> tuple[Path, str]:
    """A kubeconfig whose user is a ServiceAccount token (cluster-admin), embedded."""
    kube.run("create", "serviceaccount", "leak-probe", "-n", "kube-system", check=False)
    kube.run("create", "clusterrolebinding", "leak-probe", "--clusterrole=cluster-admin",
             "--serviceaccount=kube-system:leak-probe", check=False)
    token = kube.run("create", "token", "leak-probe", "-n", "kube-system", "--duration=1h").stdout.strip()
    cfg = yaml.safe_load(kube.kubeconfig.read_text())
    cfg["users"] = [{"name": cfg["users"][0]["name"], "user": {"token": token}}]
    path.write_text(yaml.safe_dump(cfg))
    return path, token


def test_secrets_never_appear_in_any_artefact(installed, tmp_path):
    """Secret values: a Secret's value referenced by secret_env, a token placed in env by mistake, a kubeconfig's
    embedded client key and a ServiceAccount token. Every artefact of these runs (stdout, stderr, the JSON reports,
    the rollout state, pyinfra's logs, every file the runs left in the repo or the test's folder, and what knfleet
    stored on the cluster: its notes and the rendered Services) is searched for each: zero hits."""
    inv0, kube = installed
    hf_value = "hf_SeCrEt_" + os.urandom(8).hex()
    kube.run("create", "namespace", "knative-qwen7b", check=False)
    kube.run("create", "secret", "generic", "hf", "-n", "knative-qwen7b", f"--from-literal=token={hf_value}")
    mistaken = "hf_MiStAkE_" + os.urandom(8).hex()
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    client_key_b64 = admin["users"][0]["user"]["client-key-data"]
    key_pem_lines = [ln for ln in base64.b64decode(client_key_b64).decode().splitlines() if "-----" not in ln]
    tok_kc, token = token_kubeconfig(kube, tmp_path / "token.kubeconfig")
    secrets = {"secret value": hf_value, "token in env": mistaken, "client key": client_key_b64,
               "service account token": token, **{f"client key line {i}": ln for i, ln in enumerate(key_pem_lines)}}
    models_secret = "models=" + json.dumps([{"secret_env": {"HF_TOKEN": {"secret": "hf", "key": "token"}},
                                             "env": {"LEVEL": "debug"}}])
    tok_inv = inventory(tmp_path / "tok.py", kube, kubeconfig=tok_kc)
    bad_ctx = inventory(tmp_path / "badctx.py", kube, kubeconfig=tok_kc, kube_context="nope")
    reports = tmp_path / "reports"
    reports.mkdir()
    before = {p for p in REPO.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts}
    outs: list[subprocess.CompletedProcess[str]] = []
    env = {"KNFLEET_REPORT": str(reports / "run.json")}
    outs.append(run(inv0, "--data", models_secret, env=env))  # secret_env, admin kubeconfig with a client key
    outs.append(run(tok_inv, "--data", models_secret, "-v", "--debug",
                    env={"KNFLEET_REPORT": str(reports / "tok.json")}))  # a token kubeconfig, pyinfra's debug output
    outs.append(run(inv0, "--data", "models=" + json.dumps([{"env": {"HF_TOKEN": mistaken}}])))  # by mistake
    outs.append(run(inv0, "--data", "models=" + json.dumps([{"env": {"LEVEL": mistaken, "X": [1]}}])))
    outs.append(run(bad_ctx))  # a kubeconfig with a token naming a missing context
    knfleet = str(REPO / ".venv" / "bin" / "knfleet")
    for args in (["rollout", str(tok_inv), "--report", str(reports / "rollout.json"), "--state",
                  str(reports / "rollout.state.json"), "--data", models_secret],
                 ["status", str(tok_inv), "--json"], ["doctor", str(tok_inv), "--json"]):
        outs.append(subprocess.run([knfleet, *args], cwd=REPO, capture_output=True, text=True, timeout=900,
                                   env=dict(os.environ, PYINFRA_PROGRESS="off"), stdin=subprocess.DEVNULL))
    assert outs[0].returncode == 0 and outs[1].returncode == 0, outs[0].stderr[-2000:] + outs[1].stderr[-2000:]
    assert [o.returncode for o in outs[2:5]] == [2, 2, 2], [o.stderr[-500:] for o in outs[2:5]]
    assert outs[5].returncode == 0, outs[5].stdout[-2000:]
    ksvc = kube.json("get", "ksvc", "knative-qwen7b-svc", "-n", "knative-qwen7b")
    env_of = ksvc["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in env_of
    artefacts: dict[str, str] = {}
    for i, o in enumerate(outs):
        artefacts[f"run {i} stdout"], artefacts[f"run {i} stderr"] = o.stdout, o.stderr
    for p in [*tmp_path.rglob("*"), *({p for p in REPO.rglob("*") if ".venv" not in p.parts
                                       and ".git" not in p.parts} - before)]:
        if p.is_file() and p not in (tok_kc,):
            artefacts[str(p)] = p.read_text(errors="replace")
    for kind, ns, name in (("configmap", "kube-system", "knfleet-state"), ("ksvc", "knative-qwen7b", "")):
        artefacts[f"cluster {kind} {ns}/{name}"] = kube.run("get", kind, *([name] if name else []), "-n", ns,
                                                            "-o", "yaml").stdout
    assert (reports / "run.json").exists() and (reports / "rollout.json").exists()
    hits = [f"{what} in {where}" for where, text in artefacts.items() for what, value in secrets.items()
            if value in text]
    assert not hits, hits
    print(f"\n{len(secrets)} secret values searched in {len(artefacts)} artefacts of {len(outs)} runs: 0 hits")
    kube.run("delete", "secret", "hf", "-n", "knative-qwen7b")
    assert run(inv0).returncode == 0  # back to group_data/local.py's models


# --- part 5: two runs at once never interleave their writes -------------------------------------------------------
NO_LOCK = [str(REPO / ".venv" / "bin" / "python"), "-c",
           "import sys; from pyinfra_cli.main import main; import knfleet.run.lock as lock; "
           "lock.acquire = lambda *a, **k: 'lock disabled by the test'; lock.Renewer.renew = lambda self: None; "
           "sys.argv[0] = 'pyinfra'; sys.exit(main())"]
# Each run writes values of its own in three stages far apart (config, kourier, proxy), so every write it makes
# can be told from the other run's: config-domain's domain, kourier's and the proxy's Service types.
RUNS = [
    {"knative_domain": "race-0.example", "kourier_service_type": "NodePort", "proxy_service_type": "ClusterIP"},
    {"knative_domain": "race-1.example", "kourier_service_type": "ClusterIP", "proxy_service_type": "LoadBalancer"},
]
PROBED = [("v1", "ConfigMap", "knative-serving", "config-domain"), ("v1", "Service", "kourier-system", "kourier"),
          ("v1", "Service", "knative-nginx", "knative-nginx")]


def whose(obj: dict[str, Any]) -> int | None:
    name = obj["metadata"]["name"]
    for i, r in enumerate(RUNS):
        if name == "config-domain" and r["knative_domain"] in (obj.get("data") or {}):
            return i
        if name == "kourier" and obj["spec"]["type"] == r["kourier_service_type"]:
            return i
        if name == "knative-nginx" and obj["spec"]["type"] == r["proxy_service_type"]:
            return i
    return None


class WriteProbe:
    """Watches the three objects (one watch each, from their current resourceVersion) and records every write:
    (arrival order, object, resourceVersion, which run wrote it)."""

    def __init__(self, kube: Kube) -> None:
        self.cluster = Cluster(Target(kube.name, str(kube.kubeconfig), request_timeout=120))
        self.writes: list[tuple[int, str, str, int | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(p,), daemon=True) for p in PROBED]
        self._started = threading.Barrier(len(PROBED) + 1)

    def _watch(self, probed: tuple[str, str, str, str]) -> None:
        from kubernetes import watch  # noqa: PLC0415
        from kubernetes.client import CoreV1Api

        api_version, kind, ns, name = probed
        self.cluster.connect()
        api = CoreV1Api(self.cluster._api)
        fn = api.list_namespaced_config_map if kind == "ConfigMap" else api.list_namespaced_service
        rv = fn(ns, field_selector=f"metadata.name={name}").metadata.resource_version
        self._started.wait()
        while not self._stop.is_set():  # a watch the apiserver ends is taken up again where it stopped
            w = watch.Watch()
            try:
                for ev in w.stream(fn, ns, field_selector=f"metadata.name={name}", resource_version=rv,
                                   timeout_seconds=60):
                    obj = ev["raw_object"]
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] == "MODIFIED":
                        with self._lock:
                            self.writes.append((len(self.writes), f"{kind}/{name}", rv, whose(obj)))
                    if self._stop.is_set():
                        w.stop()
            except Exception:  # noqa: BLE001 - the connection ended: watch again from the last resourceVersion
                time.sleep(0.2)

    def start(self) -> WriteProbe:
        for t in self._threads:
            t.start()
        self._started.wait()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.cluster.close()

    def runs(self) -> list[int]:
        """The writing run of each attributed write, in the order the apiserver stored them (resourceVersion)."""
        with self._lock:
            ordered = sorted(self.writes, key=lambda w: int(w[2]))
        return [w[3] for w in ordered if w[3] is not None]


def interleaved(order: list[int]) -> bool:
    """True when a run wrote again after the other run had started writing (0,1,0 or 1,0,1)."""
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    return switches > 1


def race(inv: Path, kube: Kube, argv0: list[str] | None = None) -> tuple[list[int], list[Any]]:
    """Two runs started together while Knative's webhook is held (so each run, once past its config stage, waits
    at the core gate and the other has every chance to write); the hold is let go once a run has ended or both
    have written."""
    probe = WriteProbe(kube).start()
    kube.cluster.set_faults({"knative-serving/webhook": "hold"})
    try:
        eventually(lambda: not readiness.deployment_available(
            kube.json("get", "deployment", "webhook", "-n", "knative-serving")), 60, what="the webhook unavailable")
        procs = [run(inv, *sum((["--data", f"{k}={v}"] for k, v in r.items()), []), "--data", "wait_timeout=120",
                     argv0=argv0, popen=True) for r in RUNS]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and all(p.poll() is None for p in procs) and len(set(probe.runs())) < 2:
            time.sleep(0.2)
    finally:
        kube.cluster.set_faults({})
    results = [(p, *p.communicate(timeout=600)) for p in procs]
    time.sleep(1)  # the watch events of the last writes
    probe.stop()
    return probe.runs(), results


def test_two_runs_at_once_never_interleave_their_writes_and_the_loser_reports_locked(installed):
    """The replacement of `test_two_runs_at_once_never_both_change_the_cluster`, which passed without the lock: a
    watch records every write of the two runs to three objects they both change; with the lock, one run writes and
    the other reports the cluster locked without writing. The same race with the lock taken out (acquisition made a
    no-op in the runs' processes) must show interleaved writes, or this test would prove nothing."""
    inv, kube = installed
    order, results = race(inv, kube)
    codes = [p.returncode for p, _, _ in results]
    assert sorted(codes) == [0, 1], "\n".join(f"run {i} exit {p.returncode}:\n{err[-4000:]}"
                                              for i, (p, _, err) in enumerate(results))  # a str: shown whole
    winner = codes.index(0)
    loser_err = results[1 - winner][2]
    assert "locked by" in loser_err and "LOCKED" in loser_err, loser_err[-2000:]
    assert order and set(order) == {winner}, order
    assert not interleaved(order)
    print(f"\nwith the lock: writes {order}; run {1 - winner} reported the cluster locked")

    assert run(inv).returncode == 0  # back to group data's settings: both runs have writes to make again
    unlocked, results = race(inv, kube, argv0=NO_LOCK)
    assert set(unlocked) == {0, 1} and interleaved(unlocked), \
        f"without the lock the writes did not interleave ({unlocked}): the race proves nothing\n" + \
        "\n".join(f"run {i} exit {p.returncode}: {err[-1500:]}" for i, (p, _, err) in enumerate(results))
    print(f"without the lock (control): writes {unlocked} interleave")
    assert run(inv).returncode == 0  # converged again to group data's settings
