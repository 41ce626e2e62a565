"""Issue 13 part 3: bad group and host data never ends in a traceback (fuzzed with hypothesis, no cluster).

Every example goes through the path a deploy takes (deploy.prepare -> plan.desired: settings, models, the
config webhook's verdict, lint, render, plan) and, separately, `knfleet lint`'s path for a group data module.
Either the data is accepted and renders to objects the apply can send (JSON), or the run stops with exit code 2
and one error that names the field and says what is allowed. Anything else (a traceback) fails the test, and
hypothesis prints the smallest example and the seed to replay it (`--hypothesis-seed`).

Examples per run: KNFLEET_FUZZ_EXAMPLES (default 600 for the deploy's path, a third of it for lint's).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knfleet import cli
from knfleet.desired import lint, models, plan
from knfleet.desired import settings as ksettings
from knfleet.run import deploy
from tests.unit.bundle_fixture import fixture_bundle

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("KNFLEET_FUZZ_EXAMPLES", "600"))
# What "what is allowed" reads like in knfleet's messages.
ALLOWED_WORDS = ("allowed", "use ", "expected", "supported", "must", "should", "only", "not a valid", "invalid",
                 "at most", "at least", "between", "greater", "less", "defined twice", "refuse", "never")
BASE: dict[str, Any] = cli.group_data_values(REPO / "group_data" / "local.py")
BASE.pop("knative_bundle_dir", None)


def _loader(version: str, folder: str | None = None, optional: tuple[str, ...] = ()) -> Any:  # noqa: ARG001
    return fixture_bundle()


# --- values ------------------------------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=70000), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.text(alphabet="äöü€名前🙂ß\u200b\x00\n ", max_size=8),
    st.sampled_from(["", " ", "true", "false", "0", "-1", "1e9", "1.5", "60s", "-5s", "1h", "Qwen", "kpa", "hpa",
                     "public", "cluster-local", "enabled", "disabled", "LoadBalancer", "nodeport", "8Gi", "500m",
                     "http://x", "ftp://x", "1.17.0", "1.17.2", "1.18.0", "install", "uninstall", "delete"]),
)
junk = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), kids, max_size=4)),
    max_leaves=8)


def misspell(key: str, how: int, at: int) -> str:
    i = at % len(key)
    if how == 0:
        return key[:i] + key[i + 1:]
    if how == 1:
        return key[:i] + key[i] + key[i:]
    if how == 2 and i + 1 < len(key):
        return key[:i] + key[i + 1] + key[i] + key[i + 2:]
    return key.replace("_", "-") if "_" in key else key.upper()


# Names Kubernetes refuses for a Service or a namespace (a DNS-1035/1123 label).
BAD_NAMES = st.one_of(
    st.sampled_from(["Bad_Name", "UPPER", "-lead", "trail-", "a.b", "", "x" * 64, "名前", "ünïcode", "a b", "1" * 70]),
    st.text(min_size=1, max_size=80).filter(lambda s: not models.NAME.match(s) or len(s) > 63))

CONFIG_KEYS = {"knative_autoscaler": ksettings.AUTOSCALER_KEYS, "knative_defaults": ksettings.DEFAULTS_KEYS,
               "knative_deployment": ksettings.DEPLOYMENT_KEYS, "knative_features": ksettings.FEATURES_KEYS,
               "knative_network": ksettings.NETWORK_KEYS}
MUST_REFUSE = "!must-refuse"  # a marker among the names: this example is invalid whatever else it holds
# values that would add objects or fields if pasted into YAML text (issue 23), and other non-references
INJECTIONS = ["nginx:1.27.3-alpine\n---\nkind: ClusterRoleBinding\nmetadata: {name: pwn}",
              "nginx:1.27.3-alpine\n        securityContext: {privileged: true}", "nginx:1 # x", "nginx 1", "NGINX:"]
MODEL_KEYS = tuple(f.name for f in models.fields(models.Model))


@st.composite
def bad_model(draw: Any, names: list[str]) -> dict[str, Any]:
    """A model mapping, mostly sane, with a few keys spoilt; the keys it spoilt go into `names`."""
    m: dict[str, Any] = draw(st.sampled_from([
        {}, {"name": "small", "gpus": 0, "autoscaling": {"min_scale": 0, "max_scale": 2}},
        {"name": "big", "namespace": "llm", "gpus": 2, "cpu": "8", "memory": "32Gi", "env": {"LEVEL": "INFO"},
         "secret_env": {"HF_TOKEN": {"secret": "hf", "key": "token"}}, "node_selector": {"gpu": "a100"}},
    ])).copy()
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 7))
        key = draw(st.sampled_from(MODEL_KEYS))
        names.append(key)
        if kind == 0:
            m[key] = draw(junk)
        elif kind == 1:
            m[draw(st.sampled_from(["name", "namespace"]))] = draw(BAD_NAMES)
            names += ["name", "namespace"]
        elif kind == 2:
            typo = misspell(key, draw(st.integers(0, 3)), draw(st.integers(0, 40)))
            m[typo] = draw(junk)
            names.append(typo)
        elif kind == 3:
            sub = draw(st.sampled_from([*models.AUTOSCALING_KEYS, "min-scale", "maxScale", "initial_scal"]))
            old = m.get("autoscaling")
            m["autoscaling"] = {**(old if isinstance(old, dict) else {}), sub: draw(junk)}
            names += ["autoscaling", sub]
        elif kind == 4:  # huge lists
            m[draw(st.sampled_from(["args", "tolerations"]))] = [draw(scalars)] * draw(st.integers(1000, 20000))
            names += ["args", "tolerations"]
        elif kind == 5:
            m[draw(st.sampled_from(["env", "secret_env", "node_selector"]))] = draw(
                st.dictionaries(st.text(max_size=10), junk, max_size=3))
            names += ["env", "secret_env", "node_selector"]
        elif kind == 6:
            m[key] = draw(st.sampled_from([-1, 0, 2**63, 65536, -(2**31), 10**20, 1.5, float("nan")]))
        else:
            m["env"] = {draw(st.sampled_from(["HF_TOKEN", "api_key", "MY_PASSWORD"])): draw(st.text(max_size=10))}
            names.append("env")
    # Last, so nothing above can repair it: something Kubernetes (or knfleet's rules) always refuses.
    refuse = draw(st.integers(0, 7))
    if refuse == 1:
        m[draw(st.sampled_from(["name", "namespace"]))] = draw(BAD_NAMES)
    elif refuse == 2:
        m["env"] = {draw(st.sampled_from(["1ABC", "a b", "x=y", "名前", "a/b", "9"])): "v"}
    elif refuse == 3:
        m["secret_env"] = {"HF": {"secret": draw(st.sampled_from(["Bad_Name", "a..b", "x" * 300, "-a", "名前"])),
                                  "key": draw(st.sampled_from(["token", "a b", "k/y", "名前"]))}}
    elif refuse == 4:
        m["node_selector"] = {draw(st.sampled_from(["gpu", "a b", "x" * 70, "/gpu"])):
                              draw(st.sampled_from(["a b", "x=y", "名前", "a" * 64, "-a"]))}
    elif refuse in (5, 6):
        m[draw(st.sampled_from(["cpu", "memory", "shm_size"]))] = draw(st.sampled_from(
            ["nan", "-1", "0", "8 Gi", "32GB", "一", "1.2.3"]))
    elif refuse == 7:  # a namespace of Kubernetes or Knative (issue 23)
        m["namespace"] = draw(st.sampled_from(["kube-system", "kube-public", "default", "knative-serving",
                                               "kourier-system", "knative-nginx"]))
    if refuse:
        names += ["name", "namespace", "env", "secret_env", "node_selector", "cpu", "memory", "shm_size",
                  MUST_REFUSE]
    return m


def clear_model_marks(names: list[str], injected: list[str]) -> None:
    """The models are replaced: their must-refuse marks go; those of injected values (kind 7) stay."""
    while MUST_REFUSE in names:
        names.remove(MUST_REFUSE)
    names += [MUST_REFUSE] * len(injected)


@st.composite
def bad_data(draw: Any) -> tuple[dict[str, Any], list[str]]:
    """Group/host data as a deploy of group `local` sees it, with some keys spoilt; the names an error may name."""
    data = dict(BASE)
    names: list[str] = []
    injected: list[str] = []  # keys whose value (kind 7) must be refused, as long as no later spoil replaces it
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 7))
        key = draw(st.sampled_from([k for k in ksettings.DATA_KEYS if k not in ("kubeconfig", "kube_context",
                                                                                   "rollout_wave", "cluster_name")]))
        if kind == 0:  # wrong type or value of a known key
            if key == "models":  # the models before (which may have had to be refused) are replaced
                clear_model_marks(names, injected)
            while key in injected:  # an injected value replaced: its mark goes with it
                injected.remove(key)
                names.remove(MUST_REFUSE)
            data[key] = draw(junk)
            names.append(key)
        elif kind == 1:  # unknown or misspelt key
            typo = draw(st.one_of(st.just(misspell(key, draw(st.integers(0, 3)), draw(st.integers(0, 40)))),
                                  st.text(min_size=1, max_size=20), st.sampled_from(["replicas", "domain", "model"])))
            data[typo] = draw(junk)
            names.append(typo)
        elif kind == 2:  # a config map with bad keys or values
            cm = draw(st.sampled_from(sorted(CONFIG_KEYS)))
            sub = draw(st.one_of(st.sampled_from(CONFIG_KEYS[cm]), st.text(max_size=12)))
            old = data.get(cm)
            data[cm] = {**(old if isinstance(old, dict) else {}), sub: draw(junk)}
            names += [cm, sub]
        elif kind == 3:  # bad models
            clear_model_marks(names, injected)  # the models before are replaced
            items = [draw(bad_model(names)) for _ in range(draw(st.integers(1, 4)))]
            data["models"] = items
            names.append("models")
        elif kind == 4:  # duplicate service names
            clear_model_marks(names, injected)
            data["models"] = [{"name": "twin"}, {"name": "twin"}]
            names += ["models", "name", MUST_REFUSE]
        elif kind == 5:  # a huge list of models
            clear_model_marks(names, injected)
            data["models"] = [{"name": f"m-{i}"} for i in range(draw(st.integers(200, 800)))] + [draw(junk)]
            names.append("models")
        elif kind == 7:  # a value that would add objects or fields if it were pasted into YAML (issue 23)
            key = draw(st.sampled_from(["proxy_image", "envoy_image"]))
            data[key] = draw(st.sampled_from(INJECTIONS))
            names += [key, MUST_REFUSE]
            injected.append(key)
        else:  # out-of-range numbers
            data[draw(st.sampled_from(["wait_timeout", "lock_ttl", "lock_wait", "smoke_deadline",
                                       "model_wait_timeout", "request_timeout"]))] = draw(
                st.sampled_from([-1, 0, 2, 2**64, 1.5, float("inf"), "10m", " ", "٣"]))
            names += ["wait_timeout", "lock_ttl", "lock_wait", "smoke_deadline", "model_wait_timeout",
                      "request_timeout"]
    return data, names


def check_error(message: str, names: list[str]) -> None:
    assert "Traceback" not in message
    assert any(str(n) in message or repr(n) in message for n in names), \
        f"the error names none of the fields spoilt {names}:\n{message[:2000]}"
    assert any(w in message.lower() for w in ALLOWED_WORDS), f"the error does not say what is allowed:\n{message}"
    assert max(len(line) for line in message.splitlines()) < 2000, "a value flooded the error"


class FakeState:
    def __init__(self) -> None:
        self.callback_handlers: list[Any] = []

    def add_callback_handler(self, h: Any) -> None:
        self.callback_handlers.append(h)


def deploy_prepare(data: dict[str, Any]) -> tuple[int, str]:
    """deploy.py's first line for one host, as pyinfra runs it: (exit code, stderr)."""
    host = SimpleNamespace(name="@kube/fuzz", data=ksettings.Data(data), state=FakeState(), connector=None)
    err = io.StringIO()
    desired = plan.desired
    plan.desired = functools.partial(desired, bundle_loader=_loader)  # the fixture bundle: no ../shared needed
    try:
        with contextlib.redirect_stderr(err):
            d, steps = deploy.prepare(host)
    except SystemExit as exit_:
        return int(exit_.code or 0), err.getvalue()
    finally:
        plan.desired = desired
    # Accepted: what the apply would send must be JSON (no NaN, no Python objects).
    for s in d.stages:
        json.dumps(list(s.objects), allow_nan=False)
    assert steps
    return 0, err.getvalue()


FUZZ = settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COUNT = {"deploy": 0, "refused": 0, "lint": 0}


@FUZZ
@given(bad_data())
def test_fuzzed_group_and_host_data_stop_the_deploy_with_exit_2_naming_the_field(case):
    data, names = case
    code, err = deploy_prepare(data)
    COUNT["deploy"] += 1
    if MUST_REFUSE in names:
        assert code == 2, f"accepted data Kubernetes refuses: {data.get('models')!r:.3000}"
    if code:
        COUNT["refused"] += 1
        assert code == 2, err
        assert "nothing was changed on any cluster" in err
        check_error(err, names)


@settings(FUZZ, max_examples=max(EXAMPLES // 3, 50))
@given(bad_data())
def test_fuzzed_group_data_module_gets_lint_errors_naming_the_field(case):
    data, names = case
    real = cli.group_data_values
    cli.group_data_values = lambda _p: dict(data)
    try:
        problems = cli.lint_group_data("group_data/fuzz.py", lint.ClusterConfig())
    finally:
        cli.group_data_values = real
    COUNT["lint"] += 1
    errors = [p for p in problems if p.severity == "error"]
    if MUST_REFUSE in names:
        assert errors, f"lint accepted data Kubernetes refuses: {data.get('models')!r:.3000}"
    if errors:
        check_error("\n".join(str(p) for p in errors), names)


def test_the_fuzzers_found_bad_input_and_are_not_vacuous():
    """The two tests above ran (in this session) and most examples really were refused."""
    if not COUNT["deploy"]:
        pytest.skip("run with the fuzz tests")
    assert COUNT["deploy"] >= min(EXAMPLES, 500) and COUNT["refused"] > COUNT["deploy"] // 2, COUNT


def test_misspelt_top_level_keys_are_refused_with_the_key_meant():
    code, err = deploy_prepare({**BASE, "knative_autoscalar": {"stable-window": "30s"}})
    assert code == 2 and "unknown key 'knative_autoscalar' (did you mean 'knative_autoscaler'?)" in err, err
    assert deploy_prepare({**BASE, "_mine": object()})[0] == 0  # "_" keys are the user's



def test_an_env_value_is_never_quoted_in_an_error():
    code, err = deploy_prepare({**BASE, "models": [{"env": {"LEVEL": "hf_s3cr3t_value", "X": [1]}}]})
    assert code == 2 and "env = {'LEVEL': '<hidden>', 'X': [1]} is not allowed" in err, err
    assert "hf_s3cr3t_value" not in err


def test_every_data_key_knfleet_reads_is_allowed():
    """A key read from group/host data but missing from settings.DATA_KEYS would be refused as unknown."""
    import re

    read = set()
    for path in (REPO / "knfleet").rglob("*.py"):
        read |= set(re.findall(r'\bget\("([a-z_]+)"', path.read_text()))
    settings_py = (REPO / "knfleet" / "desired" / "settings.py").read_text()
    from_data = set(re.findall(r'\bget\("([a-z_]+)"', settings_py))
    assert from_data <= set(ksettings.DATA_KEYS), from_data - set(ksettings.DATA_KEYS)
    for key in ("kubeconfig", "kube_context", "request_timeout", "rollout_wave", "models"):
        assert key in read and key in ksettings.DATA_KEYS
