"""Issue 23 (security and ownership review), the parts that need no cluster: each test failed on main before its fix.

1. group data values never become objects (render.proxy_objects), 2. the parse cache is checked, 4. (pure parts)
refused model namespaces, the owner label, no prune without `models`, 5. transport and credentials, 6. report
input, metrics read back, bundle files read once, temporary files. The lock (3) and the cluster parts of 4 and 5
are in tests/integration/test_security.py (real API servers).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from knfleet.desired import plan, render, settings
from knfleet.errors import InputError
from tests.unit.bundle_fixture import fixture_bundle

CRB = ("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: pwn}\n"
       "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"
       "subjects: [{kind: ServiceAccount, name: default, namespace: default}]")


def desired(data: dict[str, Any]) -> plan.Desired:
    return plan.desired("@kube/c1", settings.Data(data), bundle_loader=lambda *_: fixture_bundle())


def every_object(d: plan.Desired) -> list[dict[str, Any]]:
    return [o for s in d.stages for o in s.objects]


# --- 1. a group data value never becomes an object ---------------------------------------------------------------
INJECTIONS = [
    ("proxy_image", "nginx:1.27.3-alpine\n---\n" + CRB),  # a second document: a ClusterRoleBinding to cluster-admin
    ("proxy_image", "nginx:1.27.3-alpine\n        securityContext: {privileged: true}"),  # a field of the container
    ("proxy_image", "nginx:1.27.3-alpine # a comment"),
    ("proxy_image", "nginx 1.27"),
    ("envoy_image", "docker.io/envoyproxy/envoy:v1.31.2\n---\n" + CRB),
    ("proxy_service_type", "NodePort\n---\n" + CRB),
    ("cluster_domain", "cluster.local;\n}\nserver { listen 9090; location / { return 200; } }\n#"),
]


@pytest.mark.parametrize(("key", "value"), INJECTIONS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(INJECTIONS)])
def test_a_group_data_value_that_is_not_what_its_field_holds_is_refused_naming_the_field(key, value):
    """On main `proxy_image` was pasted into the proxy manifest's YAML text: the first value gave the proxy stage a
    ClusterRoleBinding/pwn, the second a privileged container."""
    with pytest.raises(InputError) as err:
        desired({key: value})
    assert str(err.value).startswith(f"{key}: ") and "is not allowed" in str(err.value), str(err.value)


def test_the_proxy_holds_exactly_its_four_objects_with_the_values_set_in_them():
    d = desired({"proxy_image": "registry.corp.example:5000/library/nginx:1.27.3-alpine@sha256:" + "a" * 64,
                 "proxy_service_type": "LoadBalancer", "cluster_domain": "corp.internal",
                 "knative_defaults": {"max-revision-timeout-seconds": "1200"}})
    proxy = next(s for s in d.stages if s.name == "proxy")
    assert [(o["kind"], o["metadata"]["name"]) for o in proxy.objects] == [
        ("Namespace", "knative-nginx"), ("ConfigMap", "knative-nginx"), ("Deployment", "knative-nginx"),
        ("Service", "knative-nginx")]
    deployment = proxy.objects[2]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("registry.corp.example:5000/library/nginx:1.27.3-alpine@sha256:")
    assert "securityContext" not in container
    assert proxy.objects[3]["spec"]["type"] == "LoadBalancer"
    conf = proxy.objects[1]["data"]["default.conf"]
    assert "kourier.kourier-system.svc.corp.internal:80;" in conf and "proxy_read_timeout 1260s;" in conf
    assert "__" not in json.dumps(proxy.objects)
    assert not [o for o in every_object(d) if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == "pwn"]


def test_render_refuses_a_value_that_bypassed_the_settings_check():
    """Defence in depth: InstallSettings made without settings.from_data (a caller of the library) get the same check
    where the values meet the objects."""
    bad = settings.InstallSettings(proxy_image="nginx:1.27.3-alpine\n---\n" + CRB)
    with pytest.raises(InputError, match=r"^proxy_image: "):
        render.proxy_objects(bad)
    with pytest.raises(InputError, match=r"^proxy_service_type: "):
        render.proxy_objects(settings.InstallSettings(proxy_service_type="NodePort\nfoo: bar"))


@pytest.mark.parametrize("ref", [
    "nginx", "nginx:1.27.3-alpine", "vllm/vllm-openai:v0.6.3", "localhost:5000/a/b", "[::1]:5000/a:b",
    "registry.corp.example:5000/knative/knative-releases/knative.dev/serving/cmd/controller@sha256:" + "0" * 64,
    "docker.io/envoyproxy/envoy:v1.31.2@sha256:" + "f" * 64, "a__b/c.d-e--f:T_a.g-1"])
def test_image_references_of_the_distribution_grammar_are_accepted(ref):
    from knfleet.desired import imageref

    assert imageref.is_reference(ref), ref


@pytest.mark.parametrize("ref", [
    "", " nginx", "nginx ", "nginx:", "nginx:-tag", "Nginx/UPPER", "a/B", "nginx@sha256:abc", "a//b", "a/-b",
    "nginx\n", "nginx:1\n---\nkind: X", "x" * 256, "a:" + "t" * 129, "ngïnx", 7, None, ["nginx"]])
def test_values_that_are_not_image_references_are_refused(ref):
    from knfleet.desired import imageref

    assert not imageref.is_reference(ref), ref


# --- 2. the parse cache is checked against the bytes it came from ------------------------------------------------
@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of the test's own (KNFLEET_CACHE), and no parse remembered in this process."""
    monkeypatch.setenv("KNFLEET_CACHE", str(tmp_path / "cache"))
    render.clear_caches()
    yield tmp_path / "cache" / "bundles" / getattr(render, "CACHE_DIR", "parsed")  # (main: parsed/, unchecked)
    render.clear_caches()


def kourier_entry(folder: Path) -> Path:
    import hashlib

    return folder / f"{hashlib.sha256(fixture_bundle().text('kourier.yaml').encode()).hexdigest()}.json"


def kourier_stage() -> tuple[dict[str, Any], ...]:
    stages = render.install_stages(fixture_bundle(), settings.InstallSettings())
    return next(s for s in stages if s.name == "kourier").objects


PLANTED = [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "pwn"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}]


def test_a_planted_parse_cache_entry_is_not_believed(cache):
    """On main a file at <cache>/parsed/<sha256 of kourier.yaml>.json was used as found: after the bundle passed its
    checksum, the Kourier stage became a ClusterRoleBinding to cluster-admin."""
    good = kourier_stage()
    render.clear_caches()
    old = kourier_entry(cache.parent / "parsed")  # where main kept (and trusted) its entries
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text(json.dumps(PLANTED))
    assert kourier_stage() == good
    render.clear_caches()
    entry = kourier_entry(cache)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(json.dumps(PLANTED))  # the format main wrote
    assert kourier_stage() == good
    render.clear_caches()
    # the entry format with a header naming the right sha256, but made without this user's key
    header = {"format": render.CACHE_FORMAT, "source_sha256": entry.stem, "mac": "0" * 64}
    entry.write_text(json.dumps(header) + "\n" + json.dumps(PLANTED))
    assert kourier_stage() == good
    assert "ClusterRoleBinding" not in entry.read_text()  # rewritten with the real parse


@pytest.mark.parametrize("content", [b"{not json", b"", b"\x00\xff\xfe", b'{"format": 1}\n[', b"[1, 2", b"null"])
def test_a_corrupt_parse_cache_entry_is_parsed_again_and_rebuilt(cache, content):
    """On main a corrupt entry ended the run with a traceback (json.decoder.JSONDecodeError)."""
    good = kourier_stage()
    render.clear_caches()
    kourier_entry(cache).write_bytes(content)
    assert kourier_stage() == good
    render.clear_caches()
    assert render._cached(cache, render._cache_key(cache), kourier_entry(cache).stem) is not None  # rebuilt


def test_an_intact_entry_is_used_without_parsing_again(cache, monkeypatch):
    good = kourier_stage()
    render.clear_caches()

    def no_parse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("parsed again although the cache holds an intact entry")
    monkeypatch.setattr(render.yaml, "load_all", no_parse)
    assert kourier_stage() == good


def test_the_parse_cache_folder_is_private_to_its_user(cache):
    cache.mkdir(parents=True)
    os.chmod(cache, 0o777)  # as a umask of 0 or a careless hand left it
    kourier_stage()
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)
    assert oct(kourier_entry(cache).stat().st_mode & 0o777) == oct(0o600)
    assert oct((cache / ".key").stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the folder to another user")
def test_a_parse_cache_folder_of_another_user_is_not_used(cache):
    good = kourier_stage()
    render.clear_caches()
    entry = kourier_entry(cache)
    entry.write_text(json.dumps(PLANTED))
    os.chown(cache, 65534, 65534)
    assert kourier_stage() == good
    assert "ClusterRoleBinding" in entry.read_text()  # not used, and not written either


# --- 6. reports: validated input, metrics read back, bundle files read once, temporary files ----------------------
def _report() -> dict[str, Any]:
    """A rollout's report with every kind of entry a page shows: steps, smoke results, field-level changes and a
    progressive rollout."""
    from tests.unit.test_reports import converged_rollout

    data = converged_rollout()
    c1 = data["clusters"]["c1"]
    c1["changes"] = [{"object": "ConfigMap/knative-serving/config-domain", "stage": "config", "why": "differs",
                      "patch": [{"op": "replace", "path": "/data/a", "value": "1", "old": "2", "field": "data.a",
                                 "manager": "kubectl-edit", "time": "2026-11-27T10:00:00Z"}]}]
    figures = {"requests": 20, "errors": 0, "p95_s": 0.41, "ttft_p95_s": 0.1}
    c1["rollouts"] = [{"service": "ns/a", "outcome": "promoted", "candidate": "a-2", "stable": "a-1", "surge": False,
                       "resumed_at": None, "reason": "", "steps": [
                           {"percent": 25, "ok": True, "check": "", "stable": figures, "candidate": figures}]}]
    return data


def knfleet_report(tmp_path: Path, data: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from knfleet import cli

    path = tmp_path / "r.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    code = cli.main(["report", str(path), "-o", str(tmp_path / "r.html")])
    return code, capsys.readouterr().err


BROKEN_REPORTS = [
    (lambda r: r["clusters"]["c1"]["smoke"][0].pop("service"), "clusters.c1.smoke[0].service: missing"),
    (lambda r: r["clusters"]["c1"]["smoke"][0].update(latency_s="fast"), "clusters.c1.smoke[0].latency_s: 'fast'"),
    (lambda r: r["clusters"]["c1"]["smoke"][0].update(latency_s=None), "clusters.c1.smoke[0].latency_s: None"),
    (lambda r: r["clusters"]["c1"]["smoke"][0].pop("ok"), "clusters.c1.smoke[0].ok: missing"),
    (lambda r: r["clusters"]["c1"]["steps"][0].update(seconds="1.5"), "clusters.c1.steps[0].seconds: '1.5'"),
    (lambda r: r["clusters"]["c1"]["steps"][1].pop("title"), "clusters.c1.steps[1].title: missing"),
    (lambda r: r["clusters"]["c1"].update(errors="boom"), "clusters.c1.errors: 'boom'"),
    (lambda r: r["clusters"]["c1"].update(wave="0"), "clusters.c1.wave: '0'"),
    (lambda r: r["clusters"]["c2"].update(steps={"title": "x"}), "clusters.c2.steps: {'title': 'x'}"),
    (lambda r: r["clusters"].update(c3=[]), "clusters.c3: [] is not allowed"),
    (lambda r: r.update(finished="yesterday"), "report.finished: 'yesterday'"),
    (lambda r: r.update(finished=1e300), "report.finished: 1e+300"),
]


@pytest.mark.parametrize(("spoil", "needle"), BROKEN_REPORTS, ids=[n.split(":")[0] for _, n in BROKEN_REPORTS])
def test_knfleet_report_refuses_a_malformed_report_naming_the_file_and_field(tmp_path, capsys, spoil, needle):
    """On main a missing key or a string where a number belongs ended `knfleet report` with a traceback."""
    data = _report()
    spoil(data)
    code, err = knfleet_report(tmp_path, data, capsys)
    assert code == 2, err
    assert f"{tmp_path / 'r.json'}: {needle}" in err, err
    assert not (tmp_path / "r.html").exists()


def test_knfleet_report_survives_any_damage_to_a_report(tmp_path, capsys):
    """Hypothesis spoils a real report anywhere (a key dropped, a value of another type, NaN): the page is written
    (exit 0) or the file is refused naming it (exit 2); never a traceback."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    junk = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                     st.text(max_size=6), st.just([]), st.just({}), st.lists(st.integers(), max_size=2),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))

    def paths(obj: Any, at: tuple = ()) -> list[tuple]:
        out = [at]
        if isinstance(obj, dict):
            out += [p for k, v in obj.items() for p in paths(v, (*at, k))]
        elif isinstance(obj, list):
            out += [p for i, v in enumerate(obj) for p in paths(v, (*at, i))]
        return out

    base = _report()
    every = [p for p in paths(base) if p and p != ("schema",)]
    codes = {0: 0, 2: 0}

    @hsettings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(every), st.booleans(), junk), min_size=1, max_size=3))
    def spoil(changes: list[tuple[tuple, bool, Any]]) -> None:
        data = json.loads(json.dumps(base))
        for at, drop, value in changes:
            parent: Any = data
            try:
                for k in at[:-1]:
                    parent = parent[k]
                if drop and isinstance(parent, dict):
                    parent.pop(at[-1], None)
                else:
                    parent[at[-1]] = copy.deepcopy(value)  # never one object in two places (or in itself)
            except (KeyError, IndexError, TypeError):
                continue
        code, err = knfleet_report(tmp_path, data, capsys)
        assert code in (0, 2), err
        assert "Traceback" not in err
        if code == 2:
            assert str(tmp_path / "r.json") in err
        codes[code] += 1
    spoil()
    assert codes[0] and codes[2] > 50, codes  # both outcomes were exercised


@pytest.mark.parametrize("odd", ["a\rb", "a\u2028b", "a\u2029b", "a\x85b", "a\x1cb", "a\x0bb", "a\x0cb"])
def test_metrics_counters_carry_on_when_a_label_value_holds_a_line_break_other_than_newline(tmp_path, odd):
    """On main the previous file was read back with str.splitlines(), which also breaks at \\r, U+2028 …: the
    sample with such a label value was cut in two, and its counter started from nothing again."""
    from knfleet.report import metrics

    data = _report()
    data["clusters"][f"c{odd}"] = data["clusters"].pop("c1")
    path = tmp_path / "knfleet.prom"
    for _ in range(3):
        metrics.write(str(path), data)
    found = metrics.parse_previous(path.read_bytes().decode())  # as the next write reads it back
    assert found[(metrics.RUNS, (("cluster", f"c{odd}"), ("outcome", "changed")))] == 3
    assert found[(metrics.CHANGED_TOTAL, (("cluster", f"c{odd}"),))] == 9


def test_a_vendor_bundle_file_is_hashed_and_parsed_from_the_same_bytes(tmp_path, monkeypatch):
    """On main `_vendor` hashed the file's bytes, then read the file a second time for its text: a file changed
    in between (a writer racing the run) was used unverified. Here the file is changed right after it is hashed."""
    import hashlib

    from knfleet.desired import bundle

    good = fixture_bundle().text("serving-core.yaml").encode()
    folder = tmp_path / "vendor"
    folder.mkdir()
    for name in ("serving-crds.yaml", "kourier.yaml"):
        (folder / name).write_text(fixture_bundle().text(name))
    target = folder / "serving-core-v1.17.0.yaml"
    target.write_bytes(good)
    real = bundle.sha256

    def hash_then_tamper(data: bytes) -> str:
        digest = real(data)
        if data == good:
            target.write_text(good.decode() + "\n---\n" + CRB + "\n")
        return digest
    monkeypatch.setattr(bundle, "sha256", hash_then_tamper)
    pins = {name: real((folder / name).read_bytes()) for name in ("serving-crds.yaml", "kourier.yaml")}
    monkeypatch.setitem(bundle.PINS, "9.9.9", {**bundle.PINS["1.17.0"], **pins})
    loaded = bundle.load.__wrapped__("9.9.9", str(folder), (), None,
                                     (("serving-core.yaml", target.name, hashlib.sha256(good).hexdigest()),))
    assert loaded.text("serving-core.yaml").encode() == good
    assert "ClusterRoleBinding" not in loaded.text("serving-core.yaml")


def _plant_links(folder: Path, name: str, victim: Path) -> list[Path]:
    """Symlinks at every temporary name main used for `name` (`name.tmp`, `.name.tmp`, `.name.<pid>.tmp`,
    `stem.<pid>.tmp`, `name.part`), each pointing at `victim`."""
    stem = name.rsplit(".", 1)[0]
    links = [folder / n for n in (f"{name}.tmp", f".{name}.tmp", f".{name}.{os.getpid()}.tmp",
                                  f"{stem}.{os.getpid()}.tmp", f"{stem}.part")]
    for link in links:
        link.symlink_to(victim)
    return links


@pytest.mark.parametrize("what", ["json report", "html page", "metrics", "rollout state"])
def test_report_files_are_written_through_a_temporary_file_created_exclusively(tmp_path, what):
    """On main each writer used a predictable temporary name and followed a symlink put there: the report went
    into the file the link named (here `victim`, which stands for any file the runner may write)."""
    from knfleet import fsio
    from knfleet.report import html, metrics, outcome

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    folder = tmp_path / "out"
    folder.mkdir()
    name = {"json report": "run.json", "html page": "run.html", "metrics": "knfleet.prom",
            "rollout state": "rollout-inv.state.json"}[what]
    links = _plant_links(folder, name, victim)
    write = {"json report": lambda p: outcome.write(p, _report()), "html page": lambda p: html.write(p, [_report()]),
             "metrics": lambda p: metrics.write(p, _report()),
             "rollout state": lambda p: fsio.write_atomic(p, "{}")}[what]
    write(str(folder / name))
    assert victim.read_text() == "precious\n"
    assert (folder / name).is_file() and not (folder / name).is_symlink()
    assert all(link.is_symlink() for link in links)  # left as they were
    assert sorted(p.name for p in folder.iterdir() if not p.is_symlink()) == [name]  # no temporary file left


def test_the_rollout_writes_its_state_with_the_exclusive_writer():
    """The rollout's state file goes through fsio.write_atomic (the writer the test above proves); on main it wrote
    `<state>.tmp` with write_text."""
    import inspect

    from knfleet.fleet import rollout

    source = inspect.getsource(rollout.rollout)
    assert "fsio.write_atomic(state_path" in source and ".tmp" not in source


def test_the_parse_cache_writes_through_a_temporary_file_created_exclusively(cache, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    cache.mkdir(parents=True)
    entry = kourier_entry(cache)
    _plant_links(cache, entry.name, victim)
    (cache / f"{entry.stem}.{os.getpid()}.tmp").unlink()
    (cache / f"{entry.stem}.{os.getpid()}.tmp").symlink_to(victim)
    kourier_stage()
    assert victim.read_text() == "precious\n"
    assert render._cached(cache, render._cache_key(cache), entry.stem) is not None


# --- 5. credentials and transport ------------------------------------------------------------------------------------
class Recorder:
    """A plain-HTTP server on a loopback port that records every request (and its Authorization header) and
    answers like an API server's /version (or a chat completion)."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.seen = []
        answer = json.dumps(body if body is not None else {"gitVersion": "v1.32.5", "major": "1", "minor": "32"})

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                return

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen.append((self.command, self.path, self.headers.get("Authorization"), self.headers.get("Host")))
                data = answer.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def kubeconfig(path: Path, server: str, user: dict[str, Any], **cluster: Any) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}], "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}]}))
    return path


@pytest.fixture
def recorder() -> Any:
    r = Recorder()
    yield r
    r.close()


def test_a_credential_is_never_sent_to_a_plain_http_api_server(tmp_path, recorder):
    """On main the bearer token went to http:// in clear text without a word (the server received it)."""
    from knfleet.kube.client import Cluster, Target

    path = kubeconfig(tmp_path / "kc", recorder.url, {"token": "s3cr3t-bearer"})
    cluster = Cluster(Target("plain", str(path)))
    with pytest.raises(InputError) as err:
        cluster.version()
    assert f"the API server {recorder.url} is plain http://" in str(err.value) and "allow_insecure" in str(err.value)
    assert "s3cr3t-bearer" not in str(err.value)
    assert recorder.seen == []
    # allowed on purpose (host data allow_insecure: true): it goes, and the run says so
    allowed = Cluster(Target("plain", str(path), allow_insecure=True))
    assert allowed.version() == "v1.32.5"
    assert recorder.seen[-1][2] == "Bearer s3cr3t-bearer"
    assert any("plain http://" in w and "clear text" in w for w in allowed.warnings)
    allowed.close()
    # without a credential there is nothing to protect: `kubectl proxy` on loopback, say
    anonymous = Cluster(Target("proxy", str(kubeconfig(tmp_path / "anon", recorder.url, {}))))
    assert anonymous.version() == "v1.32.5" and anonymous.warnings == []
    anonymous.close()


def test_the_deploy_refuses_a_plain_http_api_server_with_a_credential_before_sending_anything(tmp_path, recorder):
    from tests.unit.test_bad_files import bad_input, run

    path = kubeconfig(tmp_path / "kc", recorder.url, {"token": "s3cr3t-bearer"})
    out = run(tmp_path, [("@kube/plain", {"kubeconfig": str(path)})])
    bad_input(out, "plain: kubeconfig", "is plain http://", "allow_insecure: true")
    assert recorder.seen == [] and "s3cr3t-bearer" not in out.stdout + out.stderr
    out = run(tmp_path, [("@kube/plain", {"kubeconfig": str(path), "allow_insecure": "maybe"})])
    bad_input(out, "allow_insecure: 'maybe' is not allowed")


def test_insecure_skip_tls_verify_is_a_warning_of_the_client_and_of_doctor(tmp_path):
    """On main a kubeconfig with insecure-skip-tls-verify was used without a word."""
    from knfleet.fleet import doctor, inventory
    from knfleet.kube.client import Cluster, Target
    from tests.unit.test_bad_files import Listener

    listener = Listener()
    try:
        path = kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{listener.port}", {"token": "t"},
                          **{"insecure-skip-tls-verify": True})
        cluster = Cluster(Target("skip", str(path)))
        cluster.connect()
        assert [w for w in cluster.warnings if "insecure-skip-tls-verify is set" in w], cluster.warnings
        cluster.close()
        d = doctor.diagnose(inventory.Cluster("@kube/skip", "skip", 0, (), {"kubeconfig": str(path)}))
        assert not d.ok and any("insecure-skip-tls-verify" in w for w in d.warnings), d
        assert "WARN  kubeconfig" in d.line(8) and "insecure-skip-tls-verify" in d.line(8)
    finally:
        listener.close()


FAILING_PLUGIN = """#!/bin/sh
echo "error: your session expired; last token was eyJhbGciOi-PLUGIN-SECRET" >&2
echo '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
       "status": {"token": "PLUGIN-SECRET-STDOUT"}}'
exit 3
"""


def plugin_kubeconfig(tmp_path: Path, server: str, script: str = FAILING_PLUGIN) -> tuple[Path, Path]:
    plugin = tmp_path / "get-token"
    plugin.write_text(script)
    plugin.chmod(0o755)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                     "interactiveMode": "Never"}}
    return kubeconfig(tmp_path / "kc", server, user), plugin


def test_a_failing_credential_plugin_is_an_error_naming_it_and_its_exit_code_without_its_output(
        tmp_path, recorder, caplog, capfd):
    """On main the failure was only logged, with the plugin's stderr (which may hold a token), and requests went
    out anonymous."""
    import logging

    from knfleet.kube.client import Cluster, CredentialError, Target

    path, plugin = plugin_kubeconfig(tmp_path, recorder.url)
    cluster = Cluster(Target("sso", str(path)))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(CredentialError) as err:
            cluster.version()
        with pytest.raises(CredentialError):  # said again, the plugin not run again
            cluster.version()
    text = str(err.value)
    assert f"the credential plugin {str(plugin)!r} of user 'u'" in text and "exit code 3" in text, text
    assert recorder.seen == []  # nothing went out, anonymous or otherwise
    out = capfd.readouterr()
    everything = text + caplog.text + out.out + out.err
    assert "PLUGIN-SECRET" not in everything, everything


def test_a_credential_plugin_failing_later_is_logged_without_its_output(tmp_path, caplog):
    """A token refreshed mid-run goes through the kubernetes package's own logging: the plugin's output is cut."""
    import logging

    from knfleet.kube import client

    logger = logging.getLogger()
    if client._FILTER not in logger.filters:
        logger.addFilter(client._FILTER)
    with caplog.at_level(logging.DEBUG):
        record = logging.LogRecord("root", logging.ERROR, os.path.join("x", client._EXEC_SOURCE), 1,
                                   "exec: process returned 3. token=PLUGIN-SECRET", (), None)
        logger.handle(record)
    assert "exit code 3" in caplog.text and "PLUGIN-SECRET" not in caplog.text


def test_a_run_with_a_failing_credential_plugin_fails_that_cluster_naming_the_plugin(tmp_path, recorder):
    from tests.unit.test_bad_files import bundle_dir, run

    path, plugin = plugin_kubeconfig(tmp_path, recorder.url)
    out = run(tmp_path, [("@kube/sso", {"kubeconfig": str(path), "knative_bundle_dir": bundle_dir()})])
    text = out.stdout + out.stderr
    assert out.returncode not in (0, 2), text
    assert "knfleet: sso: FAILED" in text and str(plugin) in text and "exit code 3" in text, text
    assert "PLUGIN-SECRET" not in text
    assert recorder.seen == []


def test_smoke_requests_to_a_loopback_port_forward_use_no_proxy(monkeypatch):
    """On main HTTP_PROXY applied to the port-forward's listener on 127.0.0.1: the request (and the answer) went to
    the proxy, which cannot even reach this machine's loopback."""
    from knfleet.run import smoke

    body = {"model": "qwen7b", "choices": [{"message": {"role": "assistant", "content": "2"}}], "usage": {}}
    service, proxy = Recorder(body=body), Recorder(status=502, body={"error": "proxy"})
    try:
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(var, proxy.url)
        for var in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(var, raising=False)
        for base in (service.url, service.url.replace("127.0.0.1", "localhost")):
            result = smoke.chat("ns/svc", smoke.over_http(base, "svc.ns.example.com", "qwen7b"), "qwen7b", 3, False)
            assert result.ok, result
        assert proxy.seen == []
        assert [s[3] for s in service.seen] == ["svc.ns.example.com"] * 2
        assert smoke.loopback("http://[::1]:8080") and not smoke.loopback("http://203.0.113.7:80")
    finally:
        service.close()
        proxy.close()


# --- 4. ownership: the pure rules ------------------------------------------------------------------------------------
@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", "default", "knative-serving",
                                       "kourier-system", "knative-nginx"])
def test_a_model_in_a_namespace_of_kubernetes_or_knative_is_refused(namespace):
    """On main a model's namespace could be kube-system or knative-serving: knfleet then force-applied that
    Namespace with its labels (and an uninstall deletes the release namespaces with all they hold)."""
    with pytest.raises(InputError) as err:
        desired({"models": [{"name": "m", "namespace": namespace}]})
    text = str(err.value)
    assert f"namespace = '{namespace}' is not allowed" in text and "kube-*" in text, text


def test_model_services_carry_the_owner_label_and_namespaces_are_not_applied():
    d = desired({"models": [{"name": "a", "namespace": "team-a"}], "owner": "inventory-a"})
    services = next(s for s in d.stages if s.name == "services")
    assert [o["kind"] for o in services.objects] == ["Service"]  # main applied Namespace team-a with its labels
    assert services.objects[0]["metadata"]["labels"]["knfleet.dev/owner"] == "inventory-a"
    own = next(s for s in plan.plan(d) if isinstance(s, plan.Own))
    assert own.namespaces == ("team-a",) and own.owner == "inventory-a" and own.adopt == ()
    assert plan.Right("create", "", "namespaces") in plan.install_rights(d)
    adopting = next(s for s in plan.plan(desired({"models": [{"name": "a", "adopt": True}]}))
                    if isinstance(s, plan.Own))
    assert adopting.adopt == ("knative-qwen7b/a",)


@pytest.mark.parametrize(("data", "needle"), [
    ({"owner": "Team A"}, "owner: 'Team A' is not allowed"), ({"owner": "x" * 64}, "owner: 'xxxxxxxx"),
    ({"owner": 7}, "owner: 7 is not allowed"),
    ({"uninstall_foreign": "yes"}, "uninstall_foreign: 'yes' is not allowed"),
    ({"models": [{"adopt": "yes"}]}, "adopt = 'yes' is not allowed"),
    ({"models": [{"image": "vllm/vllm-openai:v0.6.3\n---\nkind: X"}]}, "image = 'vllm/vllm-openai:v0.6.3\\n"),
])
def test_the_new_data_keys_are_checked(data, needle):
    with pytest.raises(InputError) as err:
        desired(data)
    assert needle in str(err.value), str(err.value)


def managed(manager: str, operation: str = "Apply") -> list[dict[str, Any]]:
    return [{"manager": manager, "operation": operation, "apiVersion": "serving.knative.dev/v1"}]


def ksvc(ref: str, owner: str | None = None, fields: list[dict[str, Any]] | None = None, **meta: Any) -> dict:
    ns, name = ref.split("/")
    labels = {"app.kubernetes.io/managed-by": "knfleet", **({"knfleet.dev/owner": owner} if owner else {})}
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "uid": f"uid-{name}",
                         "managedFields": fields if fields is not None else managed("knfleet"), **meta}}


def test_the_forced_apply_never_takes_over_a_service_knfleet_did_not_create():
    from knfleet.desired import ownership

    live = {"a/hand": ksvc("a/hand", fields=managed("kubectl-client-side-apply", "Update")),
            "a/theirs": ksvc("a/theirs", "team-b"), "a/legacy": ksvc("a/legacy"), "a/mine": ksvc("a/mine", "team-a")}
    problems = ownership.takeover_problems(["a/hand", "a/theirs", "a/legacy", "a/mine", "a/new"], live, "team-a")
    assert len(problems) == 2
    assert "Knative Service a/hand exists and knfleet did not create it (managed by kubectl-client-side-apply)" \
        in problems[0] and "adopt: true" in problems[0]
    assert "a/theirs belongs to knfleet owner 'team-b'" in problems[1]
    assert ownership.takeover_problems(["a/hand", "a/theirs"], live, "team-a", adopt=["a/hand", "a/theirs"]) == []


def test_prune_deletes_only_the_owners_services_that_knfleet_applied():
    from knfleet.desired import ownership

    live = [ksvc("a/gone", "team-a"), ksvc("a/kept", "team-a"), ksvc("a/other", "team-b"),
            ksvc("a/copied", "team-a", fields=managed("helm", "Update")),
            ksvc("a/leaving", "team-a", deletionTimestamp="2026-01-01T00:00:00Z")]
    delete, left = ownership.prunable(live, ["a/kept"], "team-a")
    assert [ownership.name_of(o) for o in delete] == ["a/gone"]
    assert left == ["a/copied (carries owner 'team-a' but is managed by helm, not knfleet)"]


def test_uninstall_names_what_it_did_not_create_in_the_release_namespaces():
    from knfleet.desired import ownership

    def obj(api: str, kind: str, ns: str, name: str, fields: list | None = None, **extra: Any) -> dict:
        return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns,
                                                              "managedFields": fields or [], **extra}}
    release = [obj("v1", "ConfigMap", "knative-serving", "config-domain")]
    found = [
        obj("v1", "ConfigMap", "knative-serving", "config-domain", managed("knfleet")),  # the release's
        obj("v1", "ConfigMap", "knative-serving", "kube-root-ca.crt", managed("kube-controller-manager", "Update")),
        obj("v1", "Secret", "knative-serving", "webhook-certs", managed("webhook", "Update")),  # Knative made it
        obj("batch/v1", "Job", "knative-serving", "storage-version-migration-x", managed("knfleet", "Update")),
        obj("v1", "ConfigMap", "knative-serving", "no-manager-known"),  # who made it cannot be told: named
        obj("apps/v1", "ReplicaSet", "kourier-system", "x-1", managed("kube-controller-manager", "Update")),
        obj("v1", "Secret", "knative-nginx", "tls", managed("kubectl-create", "Update")),  # a user's
        obj("v1", "PersistentVolumeClaim", "knative-serving", "data", managed("kubectl-client-side-apply", "Update")),
        obj("v1", "ConfigMap", "kourier-system", "made-for", managed("someone", "Update"),
            ownerReferences=[{"kind": "Deployment", "name": "x"}]),
    ]
    assert ownership.foreign_objects(found, release) == [
        "ConfigMap knative-serving/no-manager-known (managed by no field manager)",
        "PersistentVolumeClaim knative-serving/data (managed by kubectl-client-side-apply)",
        "Secret knative-nginx/tls (managed by kubectl-create)"]


def test_model_manifests_follow_the_same_ownership_rules(tmp_path):
    """The services of `model_manifests` (a user's own Knative Service YAML): the owner label, the Own step (with
    model_manifest_settings' adopt), no namespace of Kubernetes or Knative; `default` stays where a manifest without
    a namespace goes (kubectl's), and knfleet never makes nor labels it."""
    from tests.unit.test_manifests import NS, runbook, write

    f = write(tmp_path / "q.yaml", NS, runbook())
    d = desired({"model_manifests": [str(f)], "owner": "team-q",
                 "model_manifest_settings": {"knative-qwen7b-svc": {"adopt": True}}})
    services = next(s for s in d.stages if s.name == "services")
    assert [o["kind"] for o in services.objects] == ["Namespace", "Service"]  # the file's own Namespace is applied
    assert services.objects[1]["metadata"]["labels"]["knfleet.dev/owner"] == "team-q"
    steps = plan.plan(d)
    own = next(s for s in steps if isinstance(s, plan.Own))
    assert own.adopt == ("knative-qwen7b/knative-qwen7b-svc",) and own.namespaces == ()
    assert next(s for s in steps if isinstance(s, plan.Prune)).owner == "team-q"
    for ns in ("kube-system", "knative-serving"):
        with pytest.raises(InputError, match=f"metadata.namespace.*{ns}.*namespace of your own"):
            desired({"model_manifests": [str(write(tmp_path / f"{ns}.yaml", runbook(ns=ns)))]})
    with pytest.raises(InputError, match="adopt"):
        desired({"model_manifests": [str(f)], "model_manifest_settings": {"knative-qwen7b-svc": {"adopt": "yes"}}})
    theirs = runbook(meta={"labels": {"knfleet.dev/owner": "team-b"}})
    with pytest.raises(InputError, match=r"knfleet.dev/owner\] = 'team-b' is not allowed"):
        desired({"model_manifests": [str(write(tmp_path / "b.yaml", NS, theirs))]})
