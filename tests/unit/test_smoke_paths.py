"""The smoke test's ways to the services: the proxy's external address, curl run inside a pod, exec's status,
and the simulated cloud load balancer that serves the proxy's address locally."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from knfleet.desired import plan, settings
from knfleet.kube.podexec import ExecResult, status_of
from knfleet.run import smoke
from localcluster import nodes
from localcluster.simulator.loadbalancer import LoadBalancers, candidates, ready_target
from tests.unit.test_plan import desired


def _svc(type_: str, ingress: list | None = None, node_port: int | None = 31080) -> dict:
    port = {"name": "http", "port": 80, "targetPort": "http", **({"nodePort": node_port} if node_port else {})}
    return {"spec": {"type": type_, "ports": [port]},
            "status": {"loadBalancer": {"ingress": ingress}} if ingress is not None else {}}


@pytest.mark.parametrize(("svc", "node", "url"), [
    (_svc("LoadBalancer", [{"ip": "203.0.113.7"}]), None, "http://203.0.113.7:80"),
    (_svc("LoadBalancer", [{"hostname": "lb.example.com"}]), "10.0.0.5", "http://lb.example.com:80"),
    (_svc("LoadBalancer", [{"ip": "2001:db8::7"}]), None, "http://[2001:db8::7]:80"),
    (_svc("LoadBalancer", []), None, None),  # pending: the cloud has not given it an address yet
    (_svc("LoadBalancer", []), "10.0.0.5", "http://10.0.0.5:31080"),  # pending, but its NodePort works
    (_svc("NodePort"), "10.0.0.5", "http://10.0.0.5:31080"),
    (_svc("NodePort"), None, None),  # no node address in host data
    (_svc("ClusterIP", node_port=None), "10.0.0.5", None),
    ({}, "10.0.0.5", None),  # no proxy Service at all
])
def test_proxy_url_from_the_services_status_or_a_node_address(svc, node, url):
    assert smoke.proxy_url(svc, node) == url


class _Answer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        seen.append((self.path, self.headers["Host"], body))
        if self.headers["Host"].startswith("gone."):  # a host no route serves (any more)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        out = json.dumps({"model": body["model"], "choices": [{"message": {"role": "assistant", "content": "2"}}],
                          "usage": {"total_tokens": 3}}, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *_: object) -> None:
        return


seen: list = []


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    seen.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _local_exec(command: list[str], timeout: float) -> ExecResult:
    """Run the command here, as kwok's local exec does in a pod's place."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as err:
        return ExecResult(None, "", "", f'exec: "{command[0]}": executable file not found in $PATH ({err})')
    return ExecResult(done.returncode, done.stdout, done.stderr)


def test_the_runbooks_curl_inside_a_pod_answers_with_status_and_body(server):
    send = smoke.over_exec(_local_exec, server, "qwen7b.ns.svc.cluster.local", "qwen7b")
    result = smoke.chat("ns/qwen7b", send, "qwen7b", 10, was_at_zero=False)
    assert result.ok and result.status == 200 and result.attempts == 1, result
    path, host, body = seen[0]
    assert (path, host) == ("/v1/chat/completions", "qwen7b.ns.svc.cluster.local")
    assert body == smoke.runbook_request("qwen7b")  # the Chinese prompt arrives intact


def test_curl_that_gets_no_answer_is_retried_until_the_deadline_and_says_why():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    send = smoke.over_exec(_local_exec, f"http://127.0.0.1:{port}", "h", "m")
    result = smoke.chat("ns/m", send, "m", 1, was_at_zero=False)
    assert not result.ok and result.attempts >= 2
    assert "no good answer within 1s" in result.error and "curl in the pod" in result.error
    assert "Connection refused" in result.error or "Failed to connect" in result.error, result.error


def test_a_pod_without_curl_fails_at_once_naming_it():
    def no_curl(command: list[str], timeout: float) -> ExecResult:
        return _local_exec(["/nonexistent/curl", *command[1:]], timeout)

    result = smoke.chat("ns/m", smoke.over_exec(no_curl, "http://x", "h", "m"), "m", 30, was_at_zero=False)
    assert not result.ok and result.attempts == 1 and "the pod has no curl" in result.error


@pytest.mark.parametrize(("text", "code", "message"), [
    ('{"metadata":{},"status":"Success"}', 0, ""),
    ('{"status":"Failure","message":"command terminated with non-zero exit code: exit status 7",'
     '"reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}', 7,
     "command terminated with non-zero exit code: exit status 7"),
    ('{"status":"Failure","message":"exec: \\"curl\\": executable file not found in $PATH"}', None,
     'exec: "curl": executable file not found in $PATH'),
    ("", None, "the exec stream ended without a status"),
])
def test_exec_status_channel(text, code, message):
    assert status_of(text) == (code, message)


@pytest.mark.parametrize(("key", "value"), [("smoke_via", "ssh"), ("smoke_via", 1),
                                            ("proxy_node_address", "http://10.0.0.1"),
                                            ("proxy_node_address", "10.0.0.1:30080"), ("smoke_proxy", "maybe")])
def test_smoke_path_settings_name_the_field(key, value):
    with pytest.raises(settings.SettingsError, match=f"^{key}: "):
        settings.from_data(settings.Data({key: value}))


def test_rights_follow_the_smoke_path():
    def rights(data: dict) -> set[str]:
        return {str(r) for r in plan.plan(desired({"models": [{}], **data}))[0].rights}

    forward, via_exec = rights({}), rights({"smoke_via": "exec"})
    assert "create pods/portforward in kourier-system" in forward
    assert "create pods/exec in knative-nginx" not in forward
    assert {"create pods/exec in knative-nginx", "list pods in knative-nginx"} <= via_exec
    assert "create pods/portforward in kourier-system" not in via_exec
    assert "get services in knative-nginx" in forward
    assert "get services in knative-nginx" not in rights({"smoke_proxy": False})
    step = plan.plan(desired({"models": [{}], "smoke_via": "exec", "proxy_node_address": "10.0.0.5",
                              "cluster_domain": "corp.internal"}))[-1]
    assert (step.via, step.proxy, step.proxy_node_address, step.cluster_domain) == \
        ("exec", True, "10.0.0.5", "corp.internal")


def test_kwok_config_serves_exec_in_the_proxy_pods_with_the_pod_network():
    docs = list(yaml.safe_load_all(nodes.kwok_config(100, 41001, 41002)))
    execs = [d for d in docs if d.get("kind") == "ClusterExec"]
    assert len(execs) == 1 and execs[0]["spec"]["selector"] == {"matchNamespaces": ["knative-nginx"]}
    envs = {e["name"]: e["value"] for e in execs[0]["spec"]["execs"][0]["local"]["envs"]}
    assert envs["http_proxy"] == "http://127.0.0.1:41001"  # kourier-internal's gateway
    forwards = {(d["spec"]["selector"]["matchNamespaces"][0], f["ports"][0]): f["target"]["port"]
                for d in docs if d.get("kind") == "ClusterPortForward" for f in d["spec"]["forwards"]}
    assert forwards == nodes.pod_ports(41001, 41002)


def test_load_balancer_addresses_differ_per_cluster_and_are_loopback():
    a, b = candidates("/tmp/one/local-1"), candidates("/tmp/two/local-1")
    assert a[0] != b[0] and len(set(a)) == len(a)
    assert all(ip.startswith("127.") and int(ip.split(".")[1]) >= 200 for ip in a + b)


def test_ready_target_needs_a_ready_address():
    ep = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 8080}]}]}
    assert ready_target(ep, "http") == 8080
    assert ready_target({"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}],
                                      "ports": [{"name": "http", "port": 8080}]}]}, "http") is None
    assert ready_target(None, "http") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_simulated_cloud_balancer_writes_an_address_and_relays_only_to_ready_backends(server):
    backend = int(server.rsplit(":", 1)[1])
    port = _free_port()  # the Service's port (80 on a cloud; a free one here, to need no privilege in this test)
    svc = {"metadata": {"namespace": "knative-nginx", "name": "knative-nginx"},
           "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": port, "targetPort": "http"}]}}
    ready = {"metadata": {"namespace": "knative-nginx", "name": "knative-nginx"},
             "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 8080}]}]}
    written: list = []
    lbs = LoadBalancers("/tmp/unit-test-cluster", {("knative-nginx", 8080): backend}, log=lambda _: None)
    try:
        lbs.reconcile([svc], [ready], lambda ns, name, status: written.append((ns, name, status)))
        ip = written[0][2]["loadBalancer"]["ingress"][0]["ip"]
        assert written == [("knative-nginx", "knative-nginx", {"loadBalancer": {"ingress": [{"ip": ip,
                                                                                            "ipMode": "VIP"}]}})]
        url = smoke.proxy_url({**svc, "status": written[0][2]}, None)
        assert url == f"http://{ip}:{port}"
        assert smoke.chat("ns/m", smoke.over_http(url, "m.ns.example.com", "m"), "m", 5, False).ok
        assert seen[-1][1] == "m.ns.example.com"
        # the status already says so: no second write
        lbs.reconcile([{**svc, "status": written[0][2]}], [ready], lambda *a: written.append(a))
        assert len(written) == 1
        # no ready backend: the connection is closed, as a balancer with no healthy target does
        lbs.reconcile([{**svc, "status": written[0][2]}], [{**ready, "subsets": []}], lambda *a: written.append(a))
        result = smoke.chat("ns/m", smoke.over_http(url, "m.ns.example.com", "m"), "m", 1, False)
        assert not result.ok and "no good answer" in result.error
        # the Service is no longer a LoadBalancer: the address is released
        lbs.reconcile([], [ready], lambda *a: written.append(a))
        with pytest.raises(OSError), socket.create_connection((ip, port), timeout=2):
            pass
    finally:
        lbs.close()


def test_a_retry_asks_for_the_host_again_when_knative_moved_the_service(server):
    # the domain changed while smoking: the first Host read answers 404 for good, the service's new one 200
    hosts = iter(["gone.ns.example.com", "m.ns.changed.example"])
    result = smoke.chat("ns/m", smoke.over_http(server, lambda: next(hosts), "m"), "m", 10, False)
    assert result.ok and result.attempts == 2, result
    assert [h for _, h, _ in seen] == ["gone.ns.example.com", "m.ns.changed.example"]


def test_smoke_hosts_reads_status_url_again_only_for_a_retry():
    from knfleet.run.services import smoke_hosts as _smoke_hosts

    class Cluster:
        gets = 0

        def get(self, *_: object) -> dict:
            self.gets += 1
            return {"status": {"url": "http://m.ns.changed.example"}}

    cluster = Cluster()
    host = _smoke_hosts(cluster, {"status": {"url": "http://m.ns.example.com"}}, "ns", "m", "fallback")
    assert host() == "m.ns.example.com" and cluster.gets == 0  # the first attempt: no request of its own
    assert host() == "m.ns.changed.example" and cluster.gets == 1
