"""`knfleet jobs`: the management cluster's objects as rendered (no cluster), balanced shards, self-contained
kubeconfigs in Secrets that are never printed, bad input refused with exit 2 before anything is applied, and the
image definition (Containerfile, requirements.lock)."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from knfleet import __version__, cli
from knfleet.fleet import inventory as inv
from knfleet.fleet import jobs, shard

REPO = Path(__file__).resolve().parents[2]
CA = "-----BEGIN CERTIFICATE-----\nQ0EgZm9yIGEgdGVzdA==\n-----END CERTIFICATE-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nY2xpZW50IGNlcnQ=\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBieXRlcw==\n-----END PRIVATE KEY-----\n"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # group_data/ beside the working directory, as the CLI runs


def kubeconfig(folder: Path, name: str = "kc.yaml") -> Path:
    """A kubeconfig with two contexts whose certificate files are named relatively and absolutely."""
    (folder / "ca.crt").write_text(CA)
    (folder / "client.crt").write_text(CERT)
    (folder / "client.key").write_text(KEY)
    (folder / "token").write_text("tok-123\n")
    p = folder / name
    p.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "one",
        "clusters": [{"name": "c1", "cluster": {"server": "https://127.0.0.1:1", "certificate-authority": "ca.crt"}},
                     {"name": "c2", "cluster": {"server": "https://127.0.0.1:2",
                                                "certificate-authority": str(folder / "ca.crt")}}],
        "users": [{"name": "u1", "user": {"client-certificate": "client.crt",
                                          "client-key": str(folder / "client.key")}},
                  {"name": "u2", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "one", "context": {"cluster": "c1", "user": "u1"}},
                     {"name": "two", "context": {"cluster": "c2", "user": "u2", "namespace": "x"}}]}))
    return p


def write_inventory(folder: Path, waves: list[int], stem: str = "fleet", extra: str = "") -> Path:
    kc = kubeconfig(folder)
    hosts = ", ".join(f'("@kube/c{i}", {{"kubeconfig": "{kc}", "rollout_wave": {w}'
                      + (', "kube_context": "two"' if i % 2 else "") + "})" for i, w in enumerate(waves))
    p = folder / f"{stem}.py"
    p.write_text(f"fleet_hosts = [{hosts}]\n{extra}")
    return p


def rendered(tmp_path: Path, waves: list[int], **opts) -> tuple[list[dict], dict]:
    p = write_inventory(tmp_path, waves)
    clusters = inv.load(str(p))
    o = jobs.Options(fleet="fleet", **opts)
    objs = jobs.render(clusters, o, jobs.kubeconfigs(clusters))
    doc = json.loads(next(x for x in objs if x["kind"] == "ConfigMap")["data"]["fleet.json"])
    return objs, doc


def by(objs: list[dict], kind: str, name: str | None = None) -> dict:
    return next(o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


# --- shards -----------------------------------------------------------------------------------------------------------
def test_shards_are_balanced_for_every_size():
    for n in range(0, 130):
        names = [f"c{i}" for i in range(n)]
        for size in range(1, 40):
            shards = jobs.balanced(names, size)
            assert [c for s in shards for c in s] == names  # every cluster once, in order
            assert len(shards) == math.ceil(n / size)
            if shards:
                sizes = [len(s) for s in shards]
                assert max(sizes) - min(sizes) <= 1, (n, size, sizes)
                assert max(sizes) <= size and min(sizes) >= 1


def test_a_hash_would_not_do_what_balanced_does():
    # 26 clusters at 25 per shard: two shards of 13, not 25 + 1
    assert [len(s) for s in jobs.balanced([str(i) for i in range(26)], 25)] == [13, 13]


def test_fleet_json_waves_and_converge_shards(tmp_path):
    objs, doc = rendered(tmp_path, [0, 0, 1, 1, 1, 1, 1], shard_size=2, max_failed=1, rollout="r1")
    assert doc["fleet"] == "fleet" and doc["version"] == 1
    assert [w["wave"] for w in doc["waves"]] == [0, 1]
    assert doc["waves"][0]["shards"] == [["c0", "c1"]]
    assert doc["waves"][1]["shards"] == [["c2", "c3"], ["c4", "c5"], ["c6"]]
    assert all(w["max_failed"] == 1 for w in doc["waves"]) and doc["max_failed"] == 1
    assert [len(s) for s in doc["converge_shards"]] == [2, 2, 2, 1]
    assert all("kubeconfig" not in h for h in doc["hosts"].values())
    assert doc["hosts"]["c1"]["kube_context"] == "two" and doc["hosts"]["c2"]["rollout_wave"] == 1


# --- objects ----------------------------------------------------------------------------------------------------------
def test_cronjob_runs_one_indexed_job_over_the_converge_shards(tmp_path):
    objs, doc = rendered(tmp_path, [0, 1, 1, 1, 1], shard_size=2, schedule="*/5 * * * *", parallelism=2,
                         deadline=900)
    cj = by(objs, "CronJob")
    assert cj["metadata"]["name"] == "knfleet-fleet-converge"
    spec = cj["spec"]
    assert spec["schedule"] == "*/5 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    assert spec["startingDeadlineSeconds"] == 300
    job = spec["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == 3 == len(doc["converge_shards"])
    assert job["parallelism"] == 2 and job["backoffLimitPerIndex"] == 1 and job["activeDeadlineSeconds"] == 900
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "knfleet-fleet-shard"
    (c,) = pod["containers"]
    assert c["command"] == ["knfleet"] and c["workingDir"] == "/knfleet" and c["image"] == f"knfleet:{__version__}"
    assert c["args"] == ["shard", "--fleet-file", "/etc/knfleet/fleet/fleet.json", "--kind", "converge", "--index",
                         "$(JOB_COMPLETION_INDEX)", "--kubeconfigs", "/etc/knfleet/shards/$(JOB_COMPLETION_INDEX)",
                         "--run", "$(KNFLEET_RUN)", "--namespace", "knfleet"]
    assert c["env"] == [{"name": "KNFLEET_RUN",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}},
                        {"name": "KNFLEET_JOB_UID", "valueFrom": {"fieldRef": {
                            "fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}}}]
    assert spec["suspend"] is False  # no rollout applied with it
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"shard-0": "knfleet-fleet-c0", "shard-1": "knfleet-fleet-c1", "shard-2": "knfleet-fleet-c2"}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts == {"/etc/knfleet/fleet": "fleet", "/etc/knfleet/shards/0": "shard-0",
                      "/etc/knfleet/shards/1": "shard-1", "/etc/knfleet/shards/2": "shard-2"}
    assert all(m["readOnly"] for m in c["volumeMounts"])
    assert {"name": "fleet", "configMap": {"name": "knfleet-fleet"}} in pod["volumes"]


def test_parallelism_defaults_to_every_shard(tmp_path):
    objs, _ = rendered(tmp_path, [0, 0, 0], shard_size=1)
    assert by(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["parallelism"] == 3


def test_every_object_is_labelled_and_in_the_namespace(tmp_path):
    objs, _ = rendered(tmp_path, [0, 1], rollout="r1", namespace="ops")
    for o in objs:
        if o["kind"] == "Namespace":
            assert o["metadata"]["name"] == "ops"
            continue
        assert o["metadata"]["namespace"] == "ops"
        assert o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "knfleet"
        assert o["metadata"]["labels"]["knfleet.dev/fleet"] == "fleet"


def test_roles_grant_only_what_each_service_account_needs(tmp_path):
    objs, _ = rendered(tmp_path, [0])
    shard_role = by(objs, "Role", "knfleet-fleet-shard")
    assert shard_role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                                    "verbs": ["get", "create", "update", "patch"]}]
    coord = by(objs, "Role", "knfleet-fleet-coordinator")
    assert coord["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "update", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "patch"],
         "resourceNames": ["knfleet-fleet-converge"]}]
    for role in (shard_role, coord):  # no Secret rights, no wildcard, no cluster-wide role
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"] and "*" not in rule["verbs"] + rule["resources"]
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for sa in ("knfleet-fleet-shard", "knfleet-fleet-coordinator"):
        rb = by(objs, "RoleBinding", sa)
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa}
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "knfleet"}]


def test_coordinator_job(tmp_path):
    objs, _ = rendered(tmp_path, [0, 1], rollout="r1", image="reg.example/knfleet:1.2.3")
    job = by(objs, "Job", "knfleet-fleet-rollout-r1")
    spec = job["spec"]
    assert spec["backoffLimit"] == 6
    assert {"action": "FailJob", "onExitCodes": {"containerName": "knfleet", "operator": "In", "values": [1, 2, 3]}} \
        in spec["podFailurePolicy"]["rules"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "knfleet-fleet-coordinator"
    assert pod["containers"][0]["args"] == ["coordinate", "--fleet-file", "/etc/knfleet/fleet/fleet.json",
                                            "--rollout", "r1", "--namespace", "knfleet", "--image",
                                            "reg.example/knfleet:1.2.3"]
    assert not [v for v in pod["volumes"] if "secret" in v]  # the coordinator never sees a kubeconfig


def test_wave_job(tmp_path):
    _, doc = rendered(tmp_path, [0, 1, 1, 1, 1, 1], shard_size=2, max_failed=5, rollout="r1")
    job = jobs.wave_job(doc, 1, "r1", "knfleet", "knfleet:9", max_failed_indexes=5)
    assert job["metadata"]["name"] == "knfleet-fleet-r1-w1"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 3
    assert spec["maxFailedIndexes"] == 2  # capped to completions - 1
    assert spec["backoffLimitPerIndex"] == 0
    assert jobs.wave_job(doc, 1, "r1", "knfleet", "knfleet:9", max_failed_indexes=0)["spec"]["maxFailedIndexes"] == 0
    c = spec["template"]["spec"]["containers"][0]
    assert c["args"][:4] == ["shard", "--fleet-file", "/etc/knfleet/fleet/fleet.json", "--kind"]
    assert c["args"][4] == "rollout" and c["args"][-4:] == ["--wave", "1", "--rollout", "r1"]
    secrets = [v["secret"]["secretName"] for v in spec["template"]["spec"]["volumes"] if "secret" in v]
    assert secrets == ["knfleet-fleet-w1-s0", "knfleet-fleet-w1-s1", "knfleet-fleet-w1-s2"]


# --- Secrets ----------------------------------------------------------------------------------------------------------
def test_secret_kubeconfigs_are_self_contained_with_one_context(tmp_path):
    objs, _ = rendered(tmp_path, [0, 0], shard_size=1, rollout="r1", converge=False)
    s0 = by(objs, "Secret", "knfleet-fleet-w0-s0")
    kc = yaml.safe_load(base64.b64decode(s0["data"]["c0.kubeconfig"]))
    assert kc["current-context"] == "one" and [c["name"] for c in kc["contexts"]] == ["one"]
    assert [c["name"] for c in kc["clusters"]] == ["c1"] and [u["name"] for u in kc["users"]] == ["u1"]
    assert base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode() == CA
    user = kc["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]).decode() == CERT
    assert base64.b64decode(user["client-key-data"]).decode() == KEY
    text = yaml.safe_dump(kc)
    for path_key in ("certificate-authority:", "client-certificate:", "client-key:", "tokenFile"):
        assert path_key not in text
    kc1 = yaml.safe_load(base64.b64decode(by(objs, "Secret", "knfleet-fleet-w0-s1")["data"]["c1.kubeconfig"]))
    assert kc1["current-context"] == "two" and kc1["users"][0]["user"] == {"token": "tok-123"}
    assert kc1["contexts"][0]["context"] == {"cluster": "c2", "user": "u2", "namespace": "x"}
    assert not [o for o in objs if o["kind"] == "CronJob"]  # --no-converge


def test_stdout_shows_no_secret_value(tmp_path, capsys):
    p = write_inventory(tmp_path, [0, 1])
    assert cli.main(["jobs", str(p), "--rollout", "r1"]) == 0
    out = capsys.readouterr().out
    docs = list(yaml.safe_load_all(out))
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert len(secrets) == 3  # one converge shard, two rollout shards (one per wave)
    assert all(v == "<redacted>" for s in secrets for v in s["data"].values())
    for secret_text in (KEY, CERT):
        assert secret_text.splitlines()[1] not in out
        assert base64.b64encode(secret_text.encode()).decode()[:20] not in out
    assert "tok-123" not in out


def test_out_writes_real_values_readable_by_the_owner_only(tmp_path, capsys):
    p = write_inventory(tmp_path, [0])
    out = tmp_path / "out"
    assert cli.main(["jobs", str(p), "--out", str(out)]) == 0
    files = sorted(out.iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    secret = yaml.safe_load(next(f for f in files if "-secret-" in f.name).read_text())
    assert yaml.safe_load(base64.b64decode(secret["data"]["c0.kubeconfig"]))["current-context"] == "one"
    assert capsys.readouterr().out == ""  # nothing on stdout with --out


def test_data_is_carried_in_fleet_json(tmp_path, capsys):
    p = write_inventory(tmp_path, [0])
    assert cli.main(["jobs", str(p), "--data", "smoke_cold=true", "--data", "wait_timeout=60"]) == 0
    cm = next(d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "ConfigMap")
    assert json.loads(cm["data"]["fleet.json"])["data"] == {"smoke_cold": True, "wait_timeout": 60}


# --- bad input --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "says"), [
    (["--fleet", "Bad_Name"], "--fleet = 'Bad_Name' is not allowed; use a DNS-1123 label"),
    (["--fleet", "x" * 31], "of at most 30 characters"),
    (["--schedule", "61 * * * *"], "the minute '61' is not allowed; use 0-59"),
    (["--schedule", "* * *"], "--schedule = '* * *' is not allowed; use five fields"),
    (["--schedule", "*/0 * * * *"], "step '0' is not allowed"),
    (["--schedule", "0 0 32 * *"], "the day of month '32' is not allowed; use 1-31"),
    (["--rollout", "R1"], "--rollout = 'R1' is not allowed"),
    (["--rollout", "r" * 50], "would be longer than 63 characters"),
    (["--namespace", "a.b"], "--namespace = 'a.b' is not allowed"),
    (["--apply"], "--apply needs --management-kubeconfig"),
    (["--apply", "--management-kubeconfig", "/nonexistent/k"], "--management-kubeconfig = '/nonexistent/k': no such"),
    (["--data", "novalue"], "--data 'novalue' is not allowed; use KEY=VALUE"),
])
def test_bad_options_exit_2_naming_the_field(tmp_path, capsys, args, says):
    p = write_inventory(tmp_path, [0])
    assert cli.main(["jobs", str(p), *args]) == 2
    captured = capsys.readouterr()
    assert says in captured.err and captured.out == ""


@pytest.mark.parametrize("args", [["--shard-size", "0"], ["--shard-size", "x"], ["--parallelism", "0"],
                                  ["--deadline", "-1"], ["--max-failed-clusters", "-1"]])
def test_bad_counts_exit_2(tmp_path, capsys, args):
    p = write_inventory(tmp_path, [0])
    with pytest.raises(SystemExit) as exc:
        cli.main(["jobs", str(p), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert args[0] in err and f"{args[1]!r} is not allowed; expected a whole number >=" in err


def bad_inventory(tmp_path: Path, host_data: str) -> Path:
    p = tmp_path / "fleet.py"
    p.write_text(f'fleet_hosts = [("@kube/c0", {host_data})]\n')
    return p


@pytest.mark.parametrize(("data", "says"), [
    ("{}", "c0: host data 'kubeconfig' = None is not allowed; every cluster run from Jobs needs the path"),
    ('{"kubeconfig": "/nonexistent/kc.yaml"}', "c0: host data 'kubeconfig' = '/nonexistent/kc.yaml': no such file"),
    ('{"kubeconfig": "KC", "kube_context": "three"}', "c0: host data 'kube_context' = 'three' is not allowed; the "
                                                      "kubeconfig KC has the contexts one, two"),
    ('{"kubeconfig": "KC", "rollout_wave": "x"}', "rollout_wave = 'x' is not allowed"),
])
def test_bad_hosts_exit_2_and_nothing_is_applied(tmp_path, capsys, data, says):
    kc = kubeconfig(tmp_path)
    p = bad_inventory(tmp_path, data.replace("KC", str(kc)))
    # --apply to a management cluster nobody listens at: the bad input is found before any request (exit 2, not 1)
    mgmt = tmp_path / "mgmt.yaml"
    mgmt.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "m",
                                    "clusters": [{"name": "m", "cluster": {"server": "https://127.0.0.1:9"}}],
                                    "contexts": [{"name": "m", "context": {"cluster": "m"}}]}))
    assert cli.main(["jobs", str(p), "--apply", "--management-kubeconfig", str(mgmt)]) == 2
    err = capsys.readouterr().err
    assert says.replace("KC", str(kc)) in err and "applied" not in err


def test_a_missing_certificate_file_is_named(tmp_path, capsys):
    kc = kubeconfig(tmp_path)
    (tmp_path / "client.crt").unlink()
    p = bad_inventory(tmp_path, f'{{"kubeconfig": "{kc}"}}')
    assert cli.main(["jobs", str(p)]) == 2
    assert "its client-certificate 'client.crt' cannot be read" in capsys.readouterr().err


def test_an_inventory_stem_that_is_no_fleet_name_asks_for_fleet(tmp_path, capsys):
    p = write_inventory(tmp_path, [0], stem="My_Fleet")
    assert cli.main(["jobs", str(p)]) == 2
    assert "the inventory file's stem 'My_Fleet' is not allowed as the fleet name" in capsys.readouterr().err
    assert cli.main(["jobs", str(p), "--fleet", "my-fleet"]) == 0


# --- the shard command's pure parts -----------------------------------------------------------------------------------
def test_shard_members_and_result_names(tmp_path):
    _, doc = rendered(tmp_path, [0, 1, 1, 1], shard_size=2)
    assert shard.members(doc, "converge", 1, None) == ["c2", "c3"]
    assert shard.members(doc, "rollout", 0, 1) == ["c1", "c2"]
    assert shard.result_name(doc, "converge", 1, "knfleet-fleet-converge-29000000", None, None) == \
        "knfleet-fleet-knfleet-fleet-converge-29000000-r1"
    assert shard.result_name(doc, "rollout", 0, "knfleet-fleet-r1-w1", 1, "r1") == "knfleet-fleet-r1-w1-s0"
    with pytest.raises(jobs.JobsError, match=r"--index = 2 is not allowed; this converge has shards 0-1"):
        shard.members(doc, "converge", 2, None)
    with pytest.raises(jobs.JobsError, match=r"--wave = 7 is not allowed; the fleet's waves are 0, 1"):
        shard.members(doc, "rollout", 0, 7)


def test_shard_inventory_is_the_hosts_data_with_the_mounted_kubeconfigs(tmp_path):
    import runpy

    _, doc = rendered(tmp_path, [0, 0], shard_size=2)
    f = tmp_path / "inv_shard.py"
    f.write_text(shard.inventory_text(doc, ["c0", "c1"], Path("/etc/knfleet/shards/0")))
    hosts = runpy.run_path(str(f))[shard.GROUP]
    assert [h for h, _ in hosts] == ["@kube/c0", "@kube/c1"]
    assert hosts[1][1] == {**doc["hosts"]["c1"], "kubeconfig": "/etc/knfleet/shards/0/c1.kubeconfig"}


def test_shard_bad_arguments_exit_2(tmp_path, capsys):
    _, doc = rendered(tmp_path, [0])
    f = tmp_path / "fleet.json"
    f.write_text(json.dumps(doc))
    assert shard.run(str(f), "converge", 5, str(tmp_path), "run", "knfleet") == 2
    assert "--index = 5 is not allowed" in capsys.readouterr().err
    assert shard.run(str(tmp_path / "none.json"), "converge", 0, str(tmp_path), "run", "knfleet") == 2
    assert "no such file" in capsys.readouterr().err
    bad = {**doc, "converge_shards": [["c0", "ghost"]]}
    f.write_text(json.dumps(bad))
    assert shard.run(str(f), "converge", 0, str(tmp_path), "run", "knfleet") == 2
    assert "the shards name the unknown host(s) ghost; allowed: the hosts of its 'hosts' (c0)" in \
        capsys.readouterr().err


def test_in_cluster_kubeconfig_uses_the_service_account(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_text(CA)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    path = jobs.in_cluster_kubeconfig(tmp_path)
    try:
        kc = yaml.safe_load(Path(path).read_text())
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.unlink(path)
    assert kc["clusters"][0]["cluster"] == {"server": "https://10.0.0.1:6443",
                                            "certificate-authority": str(tmp_path / "ca.crt")}
    assert kc["users"][0]["user"] == {"token": "sa-token"}
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(jobs.JobsError, match="KUBECONFIG is not set"):
        jobs.in_cluster_kubeconfig(tmp_path)


# --- the image --------------------------------------------------------------------------------------------------------
def test_containerfile_pins_its_base_and_holds_the_deploy():
    text = (REPO / "Containerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms, "no FROM"
    for image in froms:
        assert re.search(r":\d+\.\d+\.\d+-[a-z]+-[a-z]+$|@sha256:[0-9a-f]{64}$", image), f"{image} is not pinned"
    for path in ("deploy.py", "tasks/", "files/"):
        assert re.search(rf"^COPY\s+{re.escape(path)}\s", text, re.M), f"the image lacks {path}"
        assert (REPO / path).exists()
    assert re.search(r"^WORKDIR\s+/knfleet$", text, re.M)
    assert re.search(r'^ENTRYPOINT\s+\["knfleet"\]$', text, re.M)
    assert "-r requirements.lock" in text and "--no-deps" in text and "pip check" in text


def test_the_lock_pins_every_runtime_dependency():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line.strip())
            assert m, f"requirements.lock: {line!r} is not NAME==VERSION"
            lock[canonicalize_name(m[1])] = m[2]
    assert "knfleet" not in lock
    text = (REPO / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S)
    assert deps, "pyproject.toml: no [project] dependencies"
    found = re.findall(r'^\s*"([^"]+)"', deps[1], re.M)
    assert len(found) >= 6, found  # pyinfra, kubernetes, pyyaml, requests, jinja2, deepdiff
    for dep in found:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in lock, f"requirements.lock lacks {req.name}"
        assert req.specifier.contains(lock[name]), f"requirements.lock pins {name}=={lock[name]}, outside {dep}"
    assert "gevent" in lock and "kubernetes" in lock  # transitive ones too (pyinfra's)


def test_a_missing_kubeconfig_fails_its_cluster_only_in_the_result(tmp_path):
    _, doc = rendered(tmp_path, [0])
    got = shard.converge(doc, ["c0"], tmp_path / "empty", "converge shard 0", None)
    assert got["c0"].status == "failed" and "no kubeconfig" in got["c0"].errors[0]


def test_the_shard_runs_deploy_py_with_its_folder_importable(tmp_path, monkeypatch):
    """deploy.py imports tasks/ beside it: the shard makes its working directory importable as pyinfra's CLI does
    (found by running `knfleet shard` on a local cluster: ModuleNotFoundError: tasks). Here a deploy file that
    imports a module beside it, run by the shard's code path (run_wave) with nothing sent to the cluster."""
    import sys

    _, doc = rendered(tmp_path, [0])
    work = tmp_path / "work"
    work.mkdir()
    (work / "beside_the_deploy.py").write_text("VALUE = 1\n")
    (work / "deploy.py").write_text("import beside_the_deploy\n\nassert beside_the_deploy.VALUE == 1\n")
    (work / "c0.kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x"}}]}))
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in (str(REPO), str(work), "", ".")])
    got = shard.converge(doc, ["c0"], work, "converge shard 0", None)
    assert got["c0"].status == "converged", got["c0"].errors


def test_a_result_too_large_for_a_configmap_is_stored_compact(tmp_path):
    from knfleet.report.outcome import ClusterOutcome

    _, doc = rendered(tmp_path, [0])
    big = {f"c{i}": ClusterOutcome(f"c{i}", "changed", steps=[{"name": "x" * 1000}] * 40) for i in range(30)}
    cm = shard.result_configmap("r", "knfleet", doc, "run", big, "converge", None, None)
    data = json.loads(cm["data"]["outcome.json"])
    assert len(cm["data"]["outcome.json"]) < 900_000 and data["compact"] is True
    assert data["clusters"]["c29"]["status"] == "changed" and "steps" not in data["clusters"]["c29"]


def test_pods_run_as_the_images_user_and_can_read_their_mounted_kubeconfigs(tmp_path):
    """Review finding: the Secrets were mounted 0400 (root's) while the image runs as uid 65532: no shard could read
    its kubeconfigs on a real cluster. The pods now run as the Containerfile's USER with it as fsGroup."""
    user = re.search(r"^USER (\d+):(\d+)$", (REPO / "Containerfile").read_text(), re.M)
    assert user is not None
    uid, gid = int(user.group(1)), int(user.group(2))
    objs, doc = rendered(tmp_path, [0, 1], rollout="r1")
    templates = [by(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                 by(objs, "Job")["spec"]["template"]["spec"],
                 jobs.wave_job(doc, 0, "r1", "knfleet", "knfleet:x", 0)["spec"]["template"]["spec"]]
    for pod in templates:
        sc = pod["securityContext"]
        assert sc["runAsUser"] == uid and sc["runAsGroup"] == gid and sc["fsGroup"] == gid and sc["runAsNonRoot"]
        for v in pod["volumes"]:
            if "secret" in v:
                assert v["secret"]["defaultMode"] & 0o040  # group-readable: the fsGroup reads it
                assert not v["secret"]["defaultMode"] & 0o007  # never others'


def test_a_rollout_reads_its_own_immutable_fleet_and_holds_the_scheduled_converge(tmp_path):
    """Review finding: every apply rewrote the one fleet.json that the CronJob, the coordinator and its wave Jobs
    all read, so the next scheduled converge pushed a rollout's new state to every wave at once (a halt protected
    nothing), and a later apply re-cut a running rollout's shards. Now a rollout has its own immutable copy, and
    the CronJob applied with it is suspended (before its desired state changes) until the rollout converged."""
    objs, doc = rendered(tmp_path, [0, 1], rollout="r1")
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objs]
    snap = by(objs, "ConfigMap", "knfleet-fleet-r1-fleet")
    assert snap["immutable"] is True and json.loads(snap["data"]["fleet.json"]) == doc
    assert by(objs, "CronJob")["spec"]["suspend"] is True
    assert kinds.index(("CronJob", "knfleet-fleet-converge")) < kinds.index(("ConfigMap", "knfleet-fleet"))
    coord = by(objs, "Job")["spec"]["template"]["spec"]
    assert coord["volumes"] == [{"name": "fleet", "configMap": {"name": "knfleet-fleet-r1-fleet"}}]
    wave = jobs.wave_job(doc, 1, "r1", "knfleet", "knfleet:x", 0)["spec"]["template"]["spec"]
    assert {"name": "fleet", "configMap": {"name": "knfleet-fleet-r1-fleet"}} in wave["volumes"]
    plain, _ = rendered(tmp_path, [0, 1])
    assert by(plain, "CronJob")["spec"]["suspend"] is False
    assert [o["metadata"]["name"] for o in plain if o["kind"] == "ConfigMap"] == ["knfleet-fleet"]


@pytest.mark.parametrize("schedule", ["0 3 * * 7", "5-1 * * * *", "0 3 * * 1-7", "0 20-4 * * *"])
def test_schedules_the_cronjob_controller_refuses_are_refused_here(schedule):
    """Review finding: day of week 7 and reversed ranges passed here and were refused by the API server (robfig
    cron v3: day of week 0-6, a range's start not after its end) after earlier objects were applied."""
    with pytest.raises(jobs.JobsError) as err:
        jobs.check_schedule(schedule)
    assert schedule in str(err.value)


def test_a_fleet_json_over_a_configmaps_limit_is_refused_before_anything_is_applied(tmp_path):
    with pytest.raises(jobs.JobsError) as err:
        rendered(tmp_path, [0], data={"_notes": "x" * 1_100_000})
    assert "fleet.json" in str(err.value) and "1,000,000" in str(err.value)


def test_a_rollout_name_too_long_for_its_waves_indexed_job_is_refused(tmp_path):
    """Review finding: the API server also requires '<job>-<last index>' to be a DNS label; a rollout name that fit
    only without the index passed here and its coordinator then failed to create the wave's Job."""
    name = "r" * (63 - len("knfleet-fleet-rollout-"))  # the longest the coordinator Job's name allows
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rendered(tmp_path / "a", [999] * 10, rollout=name, shard_size=1)  # wave 999's Job: 60 characters, "-9" fits
    with pytest.raises(jobs.JobsError) as err:
        rendered(tmp_path / "b", [999] * 101, rollout=name, shard_size=1)  # "-100" does not
    assert "longer than 63" in str(err.value) and "wave 999" in str(err.value)


def test_a_shards_result_survives_a_management_cluster_blip_and_a_converge_result_goes_with_its_job(monkeypatch):
    """Review findings: one failed write lost a shard's result (every cluster of it then counted failed, converged
    ones included); converge results had no owner, so they piled up after the CronJob's history limits."""
    from knfleet.kube.client import KubeError, Unreachable
    from knfleet.report import outcome

    doc = {"fleet": "f"}
    results = {"c0": outcome.ClusterOutcome("c0", outcome.CONVERGED, host="@kube/c0")}
    monkeypatch.setenv("KNFLEET_JOB_UID", "uid-1")
    obj = shard.result_configmap("knfleet-f-job-1-r0", "knfleet", doc, "knfleet-f-converge-1", results, "converge",
                                 None, None)
    assert obj["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job",
                                                   "name": "knfleet-f-converge-1", "uid": "uid-1"}]
    rollout_obj = shard.result_configmap("x", "knfleet", doc, "r1", results, "rollout", 0, "r1")
    assert "ownerReferences" not in rollout_obj["metadata"]  # the coordinator reads it after its Job

    class Mgmt:
        def __init__(self, errors: list[Exception]) -> None:
            self.errors, self.applied = errors, []

        def apply(self, o: dict) -> None:
            if self.errors:
                raise self.errors.pop(0)
            self.applied.append(o)

    m = Mgmt([Unreachable("m", "apply", 0, "", "refused"), KubeError("m", "apply", 503, "", "busy")])
    shard.write_result(m, obj, sleep=lambda s: None)
    assert m.applied == [obj]
    forbidden = Mgmt([KubeError("m", "apply", 403, "Forbidden", "no")])
    with pytest.raises(KubeError):
        shard.write_result(forbidden, obj, sleep=lambda s: None)
