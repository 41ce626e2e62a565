"""Issue 24 acceptance (field-level diff) on a real local cluster with Knative's real webhook and controller: after a
`kubectl edit` of a model service's env value and a `kubectl patch` of a config-autoscaler key, `knfleet diff` exits 1
and prints exactly those two fields, each with its last writer (kubectl-edit, kubectl-patch); `pyinfra … --dry` shows
the same; the JSON reports hold the two operations; env and Secret-backed values never appear; a converged cluster
prints nothing and exits 0; a cluster that does not answer exits 3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from localcluster.cluster import Spec
from tests.conftest import REPO
from tests.integration.test_rollout import knfleet
from tests.kube import Kube

pytestmark = pytest.mark.integration

NS, SVC = "knative-qwen7b", "knative-qwen7b-svc"
TOKEN = "hf_diff_test_Zq81vW0c"  # the Secret's value: must never be printed
INLINE = "hf_inline_leak_K3p9xQ"  # a token someone pastes into env by hand: must never be printed either
MODEL = {"env": {"MAX_MODEL_LEN": "8192"}, "secret_env": {"HF_TOKEN": {"secret": "hf", "key": "token"}}}
ENV_FIELD = "spec.template.spec.containers[name=vllm].env[name=MAX_MODEL_LEN].value"
WINDOW_FIELD = "data.stable-window"
WHEN = r"\d{4}-\d\d-\d\dT\d\d:\d\dZ"
NEVER = (TOKEN, INLINE, "16384", "8192")


@pytest.fixture(scope="module")
def cluster(pool, shared_knative, tmp_path_factory):
    kube = pool.start("diff", Spec(ready_delay_ms=300, time_factor=0.05), group="diff")
    kube.run("create", "namespace", NS)
    kube.run("-n", NS, "create", "secret", "generic", "hf", f"--from-literal=token={TOKEN}")
    folder = tmp_path_factory.mktemp("diff")
    host = {"kubeconfig": str(kube.kubeconfig), "knative_bundle_dir": str(shared_knative), "models": [MODEL]}
    inv = folder / "fleet.py"
    inv.write_text(f"local = [('@kube/{kube.name}', {host!r})]\n")  # group `local`: group_data/local.py applies
    first = deploy(inv, "-y")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    yield inv, kube, folder
    pool.stop(kube)


def deploy(inv: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / ".venv" / "bin" / "pyinfra"), str(inv), "deploy.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYINFRA_PROGRESS": "off", **(env or {})})


def kubectl_edit(kube: Kube, tmp: Path, pattern: str, replacement: str, *target: str) -> None:
    """`kubectl edit` as a person runs it (field manager kubectl-edit), with an editor that rewrites one place of
    the YAML it is given (a regular expression and its replacement)."""
    editor = tmp / "editor.py"
    editor.write_text("import re, sys\nfrom pathlib import Path\np = Path(sys.argv[1])\n"
                      f"pattern, replacement = {pattern!r}, {replacement!r}\n"
                      "text, n = re.subn(pattern, replacement, p.read_text(), count=1)\n"
                      "assert n == 1, 'nothing to edit'\np.write_text(text)\n")
    run = subprocess.run([kube.kubectl_bin, f"--kubeconfig={kube.kubeconfig}", "edit", *target],
                         env={**os.environ, "KUBE_EDITOR": f"{sys.executable} {editor}"}, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def field_lines(text: str) -> list[str]:
    """The changed-field lines of knfleet's diff output (indented under their object; pyinfra's prefix dropped)."""
    return [m.group(2) for x in text.splitlines() if (m := re.match(r"^(\s*\[@kube/[^]]+\] )?\s{6}(\S.*)$", x))]


def ops_of(report: dict, cluster: str) -> list[dict]:
    return [op for obj in report["clusters"][cluster]["changes"] for op in obj["patch"]]


def assert_never_shown(*texts: str) -> None:
    for text in texts:
        for value in NEVER:
            assert value not in text, f"{value} printed in clear"


def test_a_converged_cluster_prints_nothing_and_exits_0(cluster):
    inv, kube, _ = cluster
    run = knfleet("diff", str(inv))
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    # without knfleet's notes every object is compared by a dry run: the normalising leaves nothing either
    kube.run("-n", "kube-system", "delete", "configmap", "knfleet-state")
    run = knfleet("diff", str(inv))
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_an_edit_and_a_patch_show_as_exactly_two_fields_with_their_last_writers(cluster, tmp_path):
    inv, kube, _ = cluster
    kubectl_edit(kube, tmp_path, r'value: "8192"', 'value: "16384"', "-n", NS, "ksvc", SVC)
    env = kube.json("get", "ksvc", SVC, "-n", NS)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MAX_MODEL_LEN", "value": "16384"} in env
    kube.run("-n", "knative-serving", "patch", "configmap", "config-autoscaler", "-p",
             '{"data": {"stable-window": "90s"}}')

    report, page = tmp_path / "diff.json", tmp_path / "diff.html"
    run = knfleet("diff", str(inv), "--report", str(report), "--report-html", str(page))
    assert run.returncode == 1, run.stdout + run.stderr
    lines = field_lines(run.stdout)
    assert len(lines) == 2, run.stdout
    assert re.fullmatch(rf'{re.escape(WINDOW_FIELD)}: "90s" -> "60s"\s+kubectl-patch {WHEN}', lines[0]), lines
    assert re.fullmatch(rf"{re.escape(ENV_FIELD)}: \(changed\)\s+kubectl-edit {WHEN}", lines[1]), lines
    assert "ConfigMap/knative-serving/config-autoscaler (config)" in run.stdout
    assert f"Service/{NS}/{SVC} (services)" in run.stdout

    rep = json.loads(report.read_text())
    assert rep["kind"] == "diff" and rep["exit_code"] == 1
    ops = sorted(ops_of(rep, kube.name), key=lambda o: o["field"])
    assert [(o["op"], o["field"], o["manager"]) for o in ops] == [
        ("replace", WINDOW_FIELD, "kubectl-patch"), ("replace", ENV_FIELD, "kubectl-edit")]
    window, env_op = ops
    assert (window["path"], window["old"], window["value"]) == ("/data/stable-window", "90s", "60s")
    live = kube.json("get", "ksvc", SVC, "-n", NS)
    index = [e["name"] for e in live["spec"]["template"]["spec"]["containers"][0]["env"]].index("MAX_MODEL_LEN")
    assert env_op["path"] == f"/spec/template/spec/containers/0/env/{index}/value"
    assert env_op["value"] == env_op["old"] == "(changed)"
    # the times are the managers' own, as the live object's managedFields say
    times = {m["manager"]: m["time"] for m in kube.json("get", "ksvc", SVC, "-n", NS, "--show-managed-fields")[
        "metadata"]["managedFields"]}
    assert env_op["time"] == times["kubectl-edit"]
    assert "<details" in page.read_text() and ENV_FIELD in page.read_text()
    assert_never_shown(run.stdout, run.stderr, report.read_text(), page.read_text())

    # pyinfra --dry: the same two fields in its output and in the run's JSON report; nothing changes
    before = kube.json("get", "ksvc", SVC, "-n", NS)["metadata"]["resourceVersion"]
    dry_report = tmp_path / "dry.json"
    dry = deploy(inv, "--dry", env={"KNFLEET_REPORT": str(dry_report)})
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    out = dry.stdout + dry.stderr
    dry_lines = field_lines(out)
    assert len(dry_lines) == 2, out[-4000:]
    assert re.fullmatch(rf'{re.escape(WINDOW_FIELD)}: "90s" -> "60s"\s+kubectl-patch {WHEN}', dry_lines[0])
    assert re.fullmatch(rf"{re.escape(ENV_FIELD)}: \(changed\)\s+kubectl-edit {WHEN}", dry_lines[1])
    dry_ops = sorted(ops_of(json.loads(dry_report.read_text()), kube.name), key=lambda o: o["field"])
    assert [(o["op"], o["path"], o["manager"]) for o in dry_ops] == [(o["op"], o["path"], o["manager"]) for o in ops]
    assert kube.json("get", "ksvc", SVC, "-n", NS)["metadata"]["resourceVersion"] == before
    assert_never_shown(out, dry_report.read_text())

    # a converge repairs both; then the cluster prints nothing again
    fixed = deploy(inv, "-y")
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    assert kube.json("get", "configmap", "config-autoscaler", "-n", "knative-serving")["data"]["stable-window"] \
        == "60s"
    run = knfleet("diff", str(inv))
    assert (run.returncode, run.stdout) == (0, ""), run.stdout + run.stderr


def test_a_token_pasted_into_env_is_never_printed(cluster, tmp_path):
    """Someone replaces the Secret reference with the token itself: the diff names the field and who did it, and
    never the value."""
    inv, kube, _ = cluster
    kubectl_edit(kube, tmp_path, r"(name: HF_TOKEN\n\s+)valueFrom:\n\s+secretKeyRef:\n\s+key: token\n\s+name: hf",
                 rf"\g<1>value: {INLINE}", "-n", NS, "ksvc", SVC)
    env = kube.json("get", "ksvc", SVC, "-n", NS)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "HF_TOKEN", "value": INLINE} in env
    report = tmp_path / "diff.json"
    run = knfleet("diff", str(inv), "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    report.write_text(run.stdout)
    ops = ops_of(json.loads(run.stdout), kube.name)
    fields = {o["field"]: o for o in ops}
    token = "spec.template.spec.containers[name=vllm].env[name=HF_TOKEN]"
    assert {f"{token}.value", f"{token}.valueFrom"} <= set(fields), fields
    assert fields[f"{token}.value"]["op"] == "remove" and fields[f"{token}.value"]["old"] == "(changed)"
    assert fields[f"{token}.value"]["manager"] == "kubectl-edit"
    assert fields[f"{token}.valueFrom"]["value"] == {"secretKeyRef": {"key": "token", "name": "hf"}}  # a reference
    text_run = knfleet("diff", str(inv))
    assert f"{token}.value: (changed) -> (none)" in text_run.stdout, text_run.stdout
    assert_never_shown(run.stdout, run.stderr, text_run.stdout, text_run.stderr)
    fixed = deploy(inv, "-y")
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    assert_never_shown(fixed.stdout, fixed.stderr)


def test_a_cluster_that_does_not_answer_exits_3_and_the_others_are_still_compared(cluster, tmp_path):
    inv, kube, _ = cluster
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    for c in config["clusters"]:
        c["cluster"]["server"] = "https://127.0.0.1:9"  # discard: nothing listens
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    both = tmp_path / "both.py"
    ns: dict = {}
    exec(inv.read_text(), ns)  # noqa: S102 - the test's own inventory
    hosts = [*ns["local"], ("@kube/gone", {**ns["local"][0][1], "kubeconfig": str(dead)})]
    both.write_text(f"local = {hosts!r}\n")
    kube.run("-n", "knative-serving", "patch", "configmap", "config-autoscaler", "-p",
             '{"data": {"stable-window": "90s"}}')
    try:
        run = knfleet("diff", str(both))
        assert run.returncode == 3, run.stdout + run.stderr
        assert "knfleet diff: gone: API server not reachable" in run.stderr
        report = json.loads(knfleet("diff", str(both), "--json").stdout)
        assert [f["reason"] for f in report["clusters"]["gone"]["failures"]] == ["Unreachable"]
        assert report["clusters"]["gone"]["status"] == "unreachable" and report["exit_code"] == 3
        assert [x.split(":")[0] for x in field_lines(run.stdout)] == [WINDOW_FIELD]  # the other one still compared
    finally:
        kube.run("-n", "knative-serving", "patch", "configmap", "config-autoscaler", "-p",
                 '{"data": {"stable-window": "60s"}}')
