"""Issue 26 part 4: the pod runner runs knfleet's image as a local process: volumes written as a kubelet writes them,
container paths rewritten to where they are here, the command mapped to the image's entrypoint, the exit code as
the container's termination (pure parts: localcluster/runner/podspec.py; the runner with a fake API: pods.py)."""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path

import pytest

from localcluster.runner import podspec
from localcluster.runner.binaries import KWOK_IMAGE_TEST, for_image
from localcluster.runner.pods import PodRunner, image_dirs, knfleet_script
from localcluster.runner.podspec import StartError, WaitingError

KNFLEET = for_image("knfleet:0.1.0")
WEBHOOK = for_image("gcr.io/knative-releases/knative.dev/serving/cmd/webhook@sha256:1b79")
REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- images ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("image", ["knfleet:0.1.0", "registry.corp.example:5000/platform/knfleet:0.1.0",
                                   "ghcr.io/org/knfleet@sha256:" + "a" * 64])
def test_knfleets_image_is_recognised_in_any_registry_and_left_to_the_runner_by_kwok(image):
    import re

    b = for_image(image)
    assert b is not None and b.name == "knfleet" and not b.knative
    assert re.search(KWOK_IMAGE_TEST, image)


@pytest.mark.parametrize("image", ["knfleet-proxy:1", "registry/notknfleet:1", "nginx:1.27", "knfleet"])
def test_other_images_are_not_knfleets(image):
    import re

    assert for_image(image) is None and not re.search(KWOK_IMAGE_TEST, image)


# --- volumes ---------------------------------------------------------------------------------------------------------
def test_a_secret_volume_has_every_key_with_the_default_mode(tmp_path):
    files = podspec.volume_files({"name": "s", "secret": {"secretName": "kc"}},
                                 lambda kind, name: {"a.kubeconfig": b"A", "b.kubeconfig": b"B"}, {}, None)
    assert files == {"a.kubeconfig": (b"A", 0o644), "b.kubeconfig": (b"B", 0o644)}
    folder = podspec.write_volume(tmp_path, "s", files)
    assert (folder / "a.kubeconfig").read_bytes() == b"A" and mode(folder / "a.kubeconfig") == 0o644


def test_items_pick_and_rename_keys_with_their_own_mode_and_default_mode():
    read = {("configmap", "fleet"): {"fleet.json": b"{}", "other": b"x"}}
    vol = {"name": "f", "configMap": {"name": "fleet", "defaultMode": 0o440,
                                      "items": [{"key": "fleet.json", "path": "sub/f.json"},
                                                {"key": "other", "path": "o", "mode": 0o400}]}}
    files = podspec.volume_files(vol, lambda k, n: read.get((k, n)), {}, None)
    assert files == {"sub/f.json": (b"{}", 0o440), "o": (b"x", 0o400)}


def test_a_missing_required_source_keeps_the_container_waiting_and_an_optional_one_is_empty():
    with pytest.raises(WaitingError, match='secret "gone" not found') as err:
        podspec.volume_files({"name": "s", "secret": {"secretName": "gone"}}, lambda k, n: None, {}, None)
    assert err.value.reason == "ContainerCreating"
    assert podspec.volume_files({"name": "s", "secret": {"secretName": "gone", "optional": True}},
                                lambda k, n: None, {}, None) == {}
    with pytest.raises(WaitingError, match="has no key 'x'"):
        podspec.volume_files({"name": "c", "configMap": {"name": "c", "items": [{"key": "x", "path": "x"}]}},
                             lambda k, n: {"y": b""}, {}, None)
    assert podspec.volume_files(
        {"name": "c", "configMap": {"name": "c", "optional": True, "items": [{"key": "x", "path": "x"}]}},
        lambda k, n: {"y": b""}, {}, None) == {}


def test_the_injected_service_account_volume_holds_a_token_the_root_ca_and_the_namespace():
    vol = {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}
    asked = []

    def tokens(audience, seconds):
        asked.append((audience, seconds))
        return "tok"

    pod = {"metadata": {"namespace": "knfleet", "name": "p"}}
    files = podspec.volume_files(vol, lambda k, n: {"ca.crt": b"CA"} if n == "kube-root-ca.crt" else None, pod,
                                 tokens)
    assert files == {"token": (b"tok", 0o644), "ca.crt": (b"CA", 0o644), "namespace": (b"knfleet", 0o644)}
    assert asked == [(None, 3607)]


def test_an_empty_dir_is_a_folder_kept_across_restarts_and_other_kinds_are_refused_by_name(tmp_path):
    assert podspec.volume_files({"name": "scratch", "emptyDir": {}}, lambda k, n: None, {}, None) is None
    folder = podspec.write_volume(tmp_path, "scratch", None)
    (folder / "kept").write_text("1")
    assert (podspec.write_volume(tmp_path, "scratch", None) / "kept").exists()
    with pytest.raises(StartError, match="volume 'data' is a hostPath"):
        podspec.volume_files({"name": "data", "hostPath": {"path": "/data"}}, lambda k, n: None, {}, None)


def test_a_volume_is_rewritten_in_one_step_and_old_files_go(tmp_path):
    first = podspec.write_volume(tmp_path, "s", {"a": (b"1", 0o644)})
    target_before = os.readlink(first)
    second = podspec.write_volume(tmp_path, "s", {"b": (b"2", 0o600)})
    assert first == second and os.readlink(second) != target_before
    assert not (second / "a").exists() and (second / "b").read_bytes() == b"2" and mode(second / "b") == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("..s.") and p.is_dir()] == [os.readlink(second)]
    with pytest.raises(StartError, match="leaves the volume"):
        podspec.write_volume(tmp_path, "t", {"../escape": (b"x", 0o644)})


def test_secret_and_configmap_data_decode_to_bytes():
    assert podspec.decode("secret", {"k": base64.b64encode(b"\x00bin").decode()}) == {"k": b"\x00bin"}
    assert podspec.decode("configmap", {"t": "text"}, {"b": base64.b64encode(b"\x01").decode()}) == \
        {"t": b"text", "b": b"\x01"}


# --- paths -----------------------------------------------------------------------------------------------------------
def where(tmp: Path) -> podspec.Mounts:
    ctr = {"volumeMounts": [{"name": "fleet", "mountPath": "/etc/knfleet/fleet"},
                            {"name": "s0", "mountPath": "/etc/knfleet/shards/0"},
                            {"name": "s1", "mountPath": "/etc/knfleet/shards/1/"},
                            {"name": "one", "mountPath": "/etc/one.json", "subPath": "one.json"}]}
    dirs = {n: tmp / "v" / n for n in ("fleet", "s0", "s1", "one")}
    return podspec.mounts(ctr, dirs, {"/knfleet": tmp / "repo", "/opt/venv": tmp / "venv"})


def test_mount_paths_in_args_and_env_values_are_rewritten_by_whole_segments(tmp_path):
    w = where(tmp_path)
    v = tmp_path / "v"
    assert podspec.rewrite("/etc/knfleet/fleet/fleet.json", w) == f"{v}/fleet/fleet.json"
    assert podspec.rewrite("/etc/knfleet/shards/1", w) == f"{v}/s1"
    assert podspec.rewrite("--kubeconfigs=/etc/knfleet/shards/0", w) == f"--kubeconfigs={v}/s0"
    assert podspec.rewrite("a:/etc/knfleet/fleet:/opt/venv/bin", w) == f"a:{v}/fleet:{tmp_path}/venv/bin"
    assert podspec.rewrite("/etc/one.json", w) == f"{v}/one/one.json"
    # not a mount: a longer segment, a path below another folder, a relative path
    for same in ("/etc/knfleet/shards/10", "/etc/knfleet/fleetx", "/x/etc/knfleet/fleet", "etc/knfleet/fleet",
                 "/etc/knfleet", "/knfleet2/deploy.py"):
        assert podspec.rewrite(same, w) == same
    assert podspec.rewrite("/knfleet/deploy.py", w) == f"{tmp_path}/repo/deploy.py"


def test_a_local_path_written_in_is_never_rewritten_again(tmp_path):
    w = podspec.mounts({"volumeMounts": [{"name": "a", "mountPath": "/etc/a"}, {"name": "t", "mountPath": "/tmp"}]},
                       {"a": Path("/tmp/pods/x/a"), "t": Path("/var/scratch")}, {})
    assert podspec.rewrite("/etc/a/f /tmp/g", w) == "/tmp/pods/x/a/f /var/scratch/g"


def test_a_mount_of_a_volume_the_pod_lacks_is_refused():
    with pytest.raises(StartError, match="no volume 'gone'"):
        podspec.mounts({"volumeMounts": [{"name": "gone", "mountPath": "/x"}]}, {}, {})


# --- command and working directory ---------------------------------------------------------------------------------
def test_the_command_maps_to_the_images_entrypoint_with_args_expanded_then_rewritten(tmp_path):
    w = where(tmp_path)
    env = {"JOB_COMPLETION_INDEX": "1", "KNFLEET_RUN": "fleet-converge-29"}
    ctr = {"image": "knfleet:0.1.0", "command": ["knfleet"],
           "args": ["shard", "--kubeconfigs", "/etc/knfleet/shards/$(JOB_COMPLETION_INDEX)", "--run",
                    "$(KNFLEET_RUN)", "--literal", "$$(KNFLEET_RUN)", "$(UNKNOWN)"]}
    script = tmp_path / "venv" / "bin" / "knfleet"
    assert podspec.argv(KNFLEET, script, ctr, env, w) == [
        str(script), "shard", "--kubeconfigs", f"{tmp_path}/v/s1", "--run", "fleet-converge-29", "--literal",
        "$(KNFLEET_RUN)", "$(UNKNOWN)"]
    # command [entrypoint, more...]: the rest goes before args; no command: the image's entrypoint
    assert podspec.argv(KNFLEET, script, {**ctr, "command": ["/opt/venv/bin/knfleet", "rollout"], "args": []},
                        env, w) == [str(script), "rollout"]
    assert podspec.argv(KNFLEET, script, {"args": ["--version"]}, env, w) == [str(script), "--version"]
    assert podspec.argv(WEBHOOK, Path("/b/webhook"), {"command": ["/ko-app/webhook"]}, env, w) == ["/b/webhook"]


def test_a_command_not_in_the_image_is_a_start_error_naming_it(tmp_path):
    with pytest.raises(StartError, match=r"command 'sh' is not in image knfleet:0.1.0.*\(knfleet, /opt/venv/bin/"):
        podspec.argv(KNFLEET, tmp_path / "knfleet", {"image": "knfleet:0.1.0", "command": ["sh", "-c", "x"]}, {}, [])


def test_the_working_dir_is_the_checkout_for_knfleets_workdir_and_the_pod_folder_for_knative(tmp_path):
    w = where(tmp_path)
    assert podspec.working_dir({"workingDir": "/knfleet"}, KNFLEET, w, tmp_path / "pod") == tmp_path / "repo"
    assert podspec.working_dir({}, KNFLEET, w, tmp_path / "pod") == tmp_path / "repo"  # the image's WORKDIR
    assert podspec.working_dir({"workingDir": "/etc/knfleet/fleet"}, KNFLEET, w, tmp_path) == tmp_path / "v" / "fleet"
    assert podspec.working_dir({}, WEBHOOK, [], tmp_path / "pod") == tmp_path / "pod"
    with pytest.raises(StartError, match="workingDir /srv is neither"):
        podspec.working_dir({"workingDir": "/srv"}, KNFLEET, w, tmp_path)


def test_knfleets_image_is_this_checkout_and_the_runners_venv():
    assert knfleet_script() == Path(sys.executable).parent / "knfleet"
    assert image_dirs(KNFLEET) == {"/knfleet": REPO, "/opt/venv": Path(sys.prefix)}
    assert image_dirs(WEBHOOK) == {}


# --- the runner with a fake API: what a kubelet writes -------------------------------------------------------------
class FakeCore:
    def __init__(self, objects: dict[tuple[str, str], dict[str, str]] | None = None) -> None:
        self.patches: list[dict] = []
        self.objects = objects or {}

    def patch_namespaced_pod_status(self, name: str, ns: str, body: dict, **_: object) -> None:
        self.patches.append(body["status"])

    def _read(self, kind: str, name: str):
        from types import SimpleNamespace

        from kubernetes.client.rest import ApiException

        if (kind, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=self.objects[(kind, name)], binary_data=None)

    def read_namespaced_secret(self, name: str, ns: str):
        return self._read("secret", name)

    def read_namespaced_config_map(self, name: str, ns: str):
        return self._read("configmap", name)

    def create_namespaced_service_account_token(self, sa: str, ns: str, body):
        from types import SimpleNamespace

        return SimpleNamespace(status=SimpleNamespace(token=f"token-of-{sa}"))


def knfleet_pod(args: list[str], uid: str = "u1", **ctr) -> dict:
    return {"metadata": {"name": "fleet-w0-0-abc", "namespace": "knfleet", "uid": uid,
                         "labels": {"batch.kubernetes.io/job-completion-index": "0", "job-name": "fleet-w0"}},
            "spec": {"nodeName": "kwok-cpu-1", "restartPolicy": "Never", "serviceAccountName": "fleet-shard",
                     "volumes": [{"name": "fleet", "configMap": {"name": "fleet"}},
                                 {"name": "s0", "secret": {"secretName": "fleet-w0-s0", "defaultMode": 0o400}}],
                     "containers": [{"name": "knfleet", "image": "knfleet:0.1.0", "command": ["knfleet"],
                                     "workingDir": "/knfleet", "args": args,
                                     "volumeMounts": [{"name": "fleet", "mountPath": "/etc/knfleet/fleet"},
                                                      {"name": "s0", "mountPath": "/etc/knfleet/shards/0"}],
                                     "env": [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                                         "fieldPath": "metadata.labels['batch.kubernetes.io/job-completion-index']"}}},
                                             {"name": "FLEET", "value": "/etc/knfleet/fleet/fleet.json"}],
                                     **ctr}]},
            "status": {"podIP": "10.0.0.9"}}


def run_until_done(runner: PodRunner, pod: dict, ticks: int = 200) -> dict:
    import time

    for _ in range(ticks):
        runner.reconcile([pod])
        if runner.core.patches and runner.core.patches[-1]["phase"] in ("Succeeded", "Failed"):
            return runner.core.patches[-1]
        time.sleep(0.05)
    raise AssertionError(f"the pod did not finish: {runner.core.patches[-1:]}")


@pytest.fixture
def runner(tmp_path: Path) -> PodRunner:
    r = PodRunner(None, tmp_path, tmp_path / "bin", "https://127.0.0.1:1", "", log=lambda m: None)
    r.core = FakeCore({("configmap", "fleet"): {"fleet.json": '{"fleet": "f"}'},
                       ("secret", "fleet-w0-s0"): {"a.kubeconfig": base64.b64encode(b"apiVersion: v1").decode()}})
    return r


def test_a_knfleet_pod_runs_this_checkouts_knfleet_with_its_volumes_and_the_exit_code_is_its_termination(runner):
    # `knfleet lint` of the mounted fleet.json (no model manifest: exit 1 naming the rewritten path) and of a path
    # relative to the working dir /knfleet (this checkout)
    pod = knfleet_pod(["lint", "$(FLEET)", "inventories/example.py"])
    status = run_until_done(runner, pod)
    (st,) = status["containerStatuses"]
    assert status["phase"] == "Failed" and st["state"]["terminated"]["exitCode"] == 1
    assert st["state"]["terminated"]["reason"] == "Error" and not st["ready"]
    (c,) = runner.containers.values()
    log = c.log.read_text()
    volumes = runner.pod_dir(c) / "volumes"
    assert f"{volumes}/fleet/fleet.json" in log, log
    assert "inventories/example.py: no such file" not in log, log  # the checkout is the working dir
    assert (volumes / "fleet" / "fleet.json").read_text() == '{"fleet": "f"}'
    assert mode(volumes / "s0" / "a.kubeconfig") == 0o400
    assert "token-of-fleet-shard" in (runner.pod_dir(c) / "kubeconfig").read_text()


def test_a_knfleet_pod_that_exits_0_succeeds(runner):
    status = run_until_done(runner, knfleet_pod(["lint", "inventories/example.py"]))
    (st,) = status["containerStatuses"]
    (c,) = runner.containers.values()
    assert status["phase"] == "Succeeded"
    assert st["state"]["terminated"]["exitCode"] == 0 and st["state"]["terminated"]["reason"] == "Completed"
    # the container's ID stays once it exited, as a kubelet keeps it: the process that ran
    assert st["containerID"] == st["state"]["terminated"]["containerID"] == c.container_id
    assert c.container_id and c.container_id.startswith("knfleet-runner://")


def test_a_pod_whose_command_is_not_in_the_image_fails_with_a_start_error_and_is_not_retried(runner):
    status = run_until_done(runner, knfleet_pod(["-c", "true"], command=["sh"]))
    (st,) = status["containerStatuses"]
    assert status["phase"] == "Failed"
    assert st["state"]["terminated"]["exitCode"] == 128 and st["state"]["terminated"]["reason"] == "StartError"
    assert "command 'sh' is not in image knfleet:0.1.0" in st["state"]["terminated"]["message"]


def test_a_pod_whose_secret_is_missing_waits_and_starts_once_it_exists(runner):
    pod = knfleet_pod(["lint", "inventories/example.py"])
    pod["spec"]["volumes"][1]["secret"]["secretName"] = "later"
    runner.reconcile([pod])
    status = runner.core.patches[-1]
    (st,) = status["containerStatuses"]
    assert status["phase"] == "Pending" and st["state"]["waiting"]["reason"] == "ContainerCreating"
    assert 'secret "later" not found' in st["state"]["waiting"]["message"]
    (c,) = runner.containers.values()
    runner.core.objects[("secret", "later")] = {}
    c.next_start = 0
    assert run_until_done(runner, pod)["phase"] == "Succeeded"


def test_a_missing_env_key_is_a_create_container_config_error(runner):
    pod = knfleet_pod(["--version"])
    pod["spec"]["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "fleet", "key": "nope"}}})
    runner.reconcile([pod])
    (st,) = runner.core.patches[-1]["containerStatuses"]
    assert st["state"]["waiting"] == {"reason": "CreateContainerConfigError",
                                      "message": "couldn't find key nope in ConfigMap knfleet/fleet"}


def test_a_killed_process_is_exit_code_137(runner):
    import signal

    pod = knfleet_pod(["lint", "inventories/example.py"])
    runner.reconcile([pod])
    (c,) = runner.containers.values()
    assert c.pid is not None
    os.kill(c.pid, signal.SIGKILL)
    status = run_until_done(runner, pod)
    assert status["phase"] == "Failed"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
