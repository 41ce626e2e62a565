"""Issue 13 part 3: broken files around a run (the real `pyinfra … deploy.py` CLI; no cluster is needed).

A tampered bundle file, a truncated kubeconfig, a kubeconfig naming a missing context, an inventory naming a missing
kubeconfig: exit code 2, an error naming the file and what is wrong, "nothing was changed", no traceback, and the
healthy cluster of the same inventory is not touched (its API server, a listener of the test, gets no request).
A cluster answering with a TLS certificate for another name fails that cluster, naming the certificate problem.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from localcluster import pki
from tests.conftest import REPO, SHARED_KNATIVE

pytestmark = pytest.mark.faults


class Listener:
    """A TLS (or plain) TCP listener that counts connections and closes them: a stand-in API server address."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.context, self.accepted = context, 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                if self.context is not None:
                    conn = self.context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                pass
            conn.close()

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept() (close alone would not); then it ends: no thread outlives
        # the test (pyinfra_cli, imported by later tests, monkey-patches threading with gevent and breaks the
        # import locks when a real thread is still running)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


def kubeconfig(path: Path, server: str, ca: Path | None = None, context: str = "ctx") -> Path:
    cluster = {"server": server, **({"certificate-authority": str(ca)} if ca else {"insecure-skip-tls-verify": True})}
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": "t0k3n-not-a-real-one"}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}], "current-context": context}))
    return path


def run(tmp: Path, hosts: list[tuple[str, dict]], *data: str) -> subprocess.CompletedProcess[str]:
    inv = tmp / "inv.py"
    inv.write_text(f"fleet = {hosts!r}\n")
    argv = [str(REPO / ".venv" / "bin" / "pyinfra"), str(inv), "deploy.py", "-y", *sum((["--data", d] for d in data),
                                                                                       [])]
    debug_log = REPO / "pyinfra-debug.log"
    existed = debug_log.exists()
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                         env=dict(os.environ, PYINFRA_PROGRESS="off"))
    assert existed or not debug_log.exists(), "pyinfra wrote a traceback to pyinfra-debug.log"
    assert "Traceback" not in out.stdout + out.stderr and "internal exception" not in out.stdout + out.stderr, \
        out.stdout + out.stderr
    return out


@pytest.fixture
def healthy(tmp_path):
    """A cluster of the same inventory that must not be touched: its 'API server' counts connections."""
    listener = Listener()
    yield listener, kubeconfig(tmp_path / "healthy.kubeconfig", f"https://127.0.0.1:{listener.port}")
    listener.close()


def bundle_dir() -> str:
    if not (SHARED_KNATIVE / "serving-core.yaml").exists():
        pytest.skip(f"no offline bundle at {SHARED_KNATIVE}")
    return str(SHARED_KNATIVE)


def bad_input(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "nothing was changed on any cluster" in out.stderr
    for n in needles:
        assert n in out.stderr, out.stderr


CASES = ("truncated", "missing-context", "missing-kubeconfig", "kubeconfig-not-a-path", "not-yaml")


@pytest.mark.parametrize("case", CASES)
def test_a_broken_kubeconfig_stops_the_whole_run_with_exit_2(case, tmp_path, healthy):
    listener, good = healthy
    broken = tmp_path / "broken.kubeconfig"
    data: dict = {"kubeconfig": str(broken)}
    if case == "truncated":
        text = kubeconfig(broken, "https://127.0.0.1:1").read_text()
        broken.write_text(text[: len(text) // 2])
        needle = f"cannot use kubeconfig {broken}"
    elif case == "missing-context":
        kubeconfig(broken, "https://127.0.0.1:1")
        data["kube_context"] = "prod-eu-9"
        needle = f"cannot use kubeconfig {broken} (context prod-eu-9)"
    elif case == "missing-kubeconfig":
        needle = f"kubeconfig {broken} does not exist"
    elif case == "kubeconfig-not-a-path":
        data["kubeconfig"] = ["a", "list"]
        needle = "'kubeconfig' = ['a', 'list'] is not allowed"
    else:
        broken.write_text("clusters: [\n  {server: \x00")
        needle = f"cannot use kubeconfig {broken}"
    out = run(tmp_path, [("@kube/healthy", {"kubeconfig": str(good)}), ("@kube/broken", data)],
              f"knative_bundle_dir={bundle_dir()}")
    bad_input(out, needle)
    assert listener.accepted == 0, "the healthy cluster was contacted"


def test_a_tampered_bundle_file_stops_the_run_naming_the_file_and_both_checksums(tmp_path, healthy):
    listener, good = healthy
    folder = tmp_path / "bundle"
    shutil.copytree(bundle_dir(), folder)
    core = folder / "serving-core.yaml"
    core.write_text(core.read_text().replace("replicas: 1", "replicas: 2", 1))
    out = run(tmp_path, [("@kube/healthy", {"kubeconfig": str(good)})], f"knative_bundle_dir={folder}")
    bad_input(out, "checksum mismatch for serving-core.yaml", "expected sha256 b4cf7529c1b2")
    assert listener.accepted == 0


def test_a_cluster_answering_with_a_certificate_for_another_name_fails_naming_it(tmp_path):
    ca = pki.make_ca(tmp_path, "tls")
    cert = pki.issue(ca, tmp_path, "other", "other", server_names=("other.example",))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)
    listener = Listener(ctx)
    try:
        kc = kubeconfig(tmp_path / "tls.kubeconfig", f"https://127.0.0.1:{listener.port}", ca=ca.cert)
        out = run(tmp_path, [("@kube/tls", {"kubeconfig": str(kc)})], f"knative_bundle_dir={bundle_dir()}",
                  "request_timeout=5")
    finally:
        listener.close()
    assert out.returncode == 1, out.stdout + out.stderr
    line = next(x for x in out.stderr.splitlines() if x.startswith("knfleet: tls:"))
    assert "FAILED (install) - preflight: API server not reachable" in line, line
    assert "certificate" in line and ("127.0.0.1" in line or "match" in line), line
    assert listener.accepted >= 1
