"""Progressive rollouts' pure parts (knfleet.desired.progressive): settings, names, traffic, state, verdicts; the
plan's steps; the closing lines; and the simulator's per-revision behaviour the integration tests rely on."""

from __future__ import annotations

import json

import pytest

from knfleet.desired import models, plan, settings
from knfleet.desired import progressive as pr
from knfleet.report import metrics
from knfleet.report.records import rollout_lines
from localcluster.simulator import openai
from localcluster.simulator.kourier import Path, Split
from tests.unit.test_plan import desired

PROG = {"strategy": "progressive"}


def model(**kw) -> models.Model:
    return models.from_data([{"name": "qwen", **kw}])[0]


def refused(rollout, autoscaling=None) -> str:
    data = {"name": "qwen", "rollout": rollout, **({"autoscaling": autoscaling} if autoscaling else {})}
    with pytest.raises(pr.RolloutError) as err:
        models.from_data([data])
    return str(err.value)


def test_defaults_are_todays_replace_and_a_progressive_rollout_gets_steps_bake_and_checks():
    assert model().rollout == pr.REPLACE and not model().rollout.progressive
    r = model(rollout={**PROG, "bake": "90s", "checks": {"requests": 30, "prompts": [
        {"messages": [{"role": "user", "content": "1+1?"}], "expect": r"\b2\b"}]}}).rollout
    assert r.progressive and r.steps == (5, 25, 50, 100) and r.bake_s == 90
    assert r.checks.requests == 30 and r.checks.prompts[0].expect == r"\b2\b"
    assert r.checks.max_latency_ratio == 1.2 and r.checks.max_error_rate_increase == 0.01


@pytest.mark.parametrize(("rollout", "field", "allowed"), [
    ({**PROG, "steps": [5, 50, 25, 100]}, "rollout.steps", "increasing"),
    ({**PROG, "steps": [5, 25, 50]}, "rollout.steps", "end at 100"),
    ({**PROG, "steps": [0, 100]}, "rollout.steps", "from 1 to 100"),
    ({**PROG, "checks": {"max_latency_ratio": 0.9}}, "rollout.checks.max_latency_ratio", "use a number >= 1"),
    ({**PROG, "checks": {"requests": 0}}, "rollout.checks.requests", "from 1 to 10000"),
    ({**PROG, "checks": {"prompts": [{"messages": [{"role": "user", "content": "x"}], "expect": "(2"}]}},
     "rollout.checks.prompts[0].expect", "valid regular expression"),
    ({**PROG, "checks": {"max_error_rate_increase": 2}}, "rollout.checks.max_error_rate_increase", "from 0 to 1"),
    ({**PROG, "bake": "soon"}, "rollout.bake", "Go duration"),
    ({"strategy": "canary"}, "rollout.strategy", "progressive"),
    ({**PROG, "checks": {"prometheus": {"ttft": "rate(x{{revision=\"{rev}\"}}[1m])"}}},
     "rollout.checks.prometheus.ttft.query", "placeholders"),
])
def test_bad_rollout_settings_are_refused_naming_the_field_and_what_is_allowed(rollout, field, allowed):
    message = refused(rollout)
    assert f"{field} = " in message and allowed in message and "group data models[0] (qwen)" in message


@pytest.mark.parametrize("auto", [{"initial_scale": 0, "min_scale": 1}, {"min_scale": 3, "max_scale": 2}])
def test_autoscaling_that_cannot_hold_two_revisions_is_refused_for_a_progressive_rollout(auto):
    assert "rollout.strategy = 'progressive' is not allowed with autoscaling" in refused(PROG, auto)
    assert models.from_data([{"name": "qwen", "autoscaling": {"min_scale": 1, "max_scale": 0}, "rollout": PROG}])


def test_a_progressive_service_names_its_revision_from_a_hash_of_its_template():
    a = models.render_service(model(rollout=PROG))
    b = models.render_service(model(rollout=PROG, image="vllm/vllm-openai:v9"))
    assert pr.template_name(a).startswith("qwen-") and len(pr.template_name(a)) == len("qwen-") + pr.HASH_LENGTH
    assert pr.template_name(a) != pr.template_name(b)
    assert pr.template_name(models.render_service(model(rollout=PROG))) == pr.template_name(a)  # the same
    assert pr.template_name(models.render_service(model())) == ""  # replace: Knative names its revisions
    assert pr.revision_name("qwen", a["spec"]["template"]) == pr.template_name(a)  # its own name left out
    with pytest.raises(models.ModelError, match="at most 56 characters"):
        models.from_data([{"name": "x" * 57, "rollout": PROG}])


def test_traffic_keeps_stable_candidate_and_previous_tags():
    assert pr.traffic("s") == [{"tag": "stable", "revisionName": "s", "percent": 100}]
    assert pr.traffic("s", "c", 25, "p") == [{"tag": "stable", "revisionName": "s", "percent": 75},
                                            {"tag": "candidate", "revisionName": "c", "percent": 25},
                                            {"tag": "previous", "revisionName": "p", "percent": 0}]
    assert pr.traffic("s", "c", 0, "c") == pr.traffic("s", "c", 0)  # a previous that is the candidate: one tag
    assert pr.serving([{"revisionName": "a", "percent": 95, "tag": "stable"}, {"revisionName": "b", "percent": 5},
                       {"revisionName": "b", "percent": 0, "tag": "candidate"}]) == {"a": 95, "b": 5}


def live_service(traffic, state=None, template_name="qwen-aaaaaa", status_traffic=None):
    ann = {pr.STATE_ANNOTATION: state.encode()} if state else {}
    return {"metadata": {"name": "qwen", "namespace": "ns", "annotations": ann},
            "spec": {"template": {"metadata": {"name": template_name}, "spec": {"containers": [{"image": "x"}]}},
                     "traffic": traffic},
            "status": {"traffic": status_traffic or []}}


def test_versions_of_a_live_service_and_what_a_converged_run_applies():
    st = pr.State(pr.PROMOTED, "qwen-aaaaaa", "qwen-aaaaaa", "qwen-bbbbbb")
    live = live_service(pr.traffic("qwen-aaaaaa", None, 0, "qwen-bbbbbb"), st)
    assert pr.versions(live) == ("qwen-aaaaaa", "qwen-bbbbbb", "")
    rendered = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "qwen",
                                                                                     "namespace": "ns"},
                "spec": {"template": {"metadata": {"name": "qwen-aaaaaa"}, "spec": {"containers": [{"image": "x"}]}}}}
    same = pr.steady(rendered, live)
    assert same["spec"]["traffic"] == live["spec"]["traffic"]
    assert pr.State.decode(same["metadata"]["annotations"][pr.STATE_ANNOTATION]) == st
    # the stored template under the same name is applied (Knative does not default it again)
    assert same["spec"]["template"] is live["spec"]["template"]
    other = {**rendered, "spec": {"template": {"metadata": {"name": "qwen-cccccc"}, "spec": {}}}}
    assert pr.steady(other, live) is None and pr.as_stored(other, live) is other
    # a service deployed before with the replace strategy: its serving revision is the stable one
    old = live_service([{"latestRevision": True, "percent": 100}],
                       status_traffic=[{"revisionName": "qwen-00003", "percent": 100}])
    assert pr.versions(old) == ("qwen-00003", "", "")
    assert pr.State.decode("not json") is None


def figs(p95, errors=0, n=20, ttft=None, wrong=None):
    return pr.Figures(n, errors, p95, p95, ttft, ttft, wrong or [])


@pytest.mark.parametrize(("stable", "new", "check"), [
    (figs(0.40), figs(0.44), ""),
    (figs(0.40), figs(0.60), "latency"),
    (figs(0.002), figs(0.030), ""),  # a few ms of noise on fast answers: within the slack
    (figs(0.40, errors=0), figs(0.40, errors=2), "errors"),
    (figs(0.40, errors=2), figs(0.40, errors=2), ""),
    (figs(0.40), figs(0.40, wrong=["'3' does not match /2/"]), "expect"),
    (figs(0.40, ttft=0.1), figs(0.40, ttft=0.5), "ttft"),
    (figs(0.40), figs(0.40, n=5), "requests"),
])
def test_the_verdict_compares_the_new_version_with_the_running_one_of_the_same_step(stable, new, check):
    v = pr.verdict(pr.Checks(), stable, new)
    assert v.ok == (check == "") and v.check == check
    assert f"errors {new.errors}/{new.requests} vs {stable.errors}/{stable.requests}" in v.detail


def test_prometheus_checks_compare_by_ratio_or_increase():
    r = model(rollout={**PROG, "checks": {"prometheus": True}}).rollout.checks
    assert set(r.prometheus) == set(pr.PROMETHEUS_DEFAULTS)
    assert r.prometheus["ttft_p95"].max_ratio == 1.2 and r.prometheus["error_rate"].max_increase == 0.01
    stable, new = figs(0.4), figs(0.4)
    stable.prometheus, new.prometheus = {"ttft_p95": 0.10, "error_rate": 0.0}, {"ttft_p95": 0.30, "error_rate": 0.0}
    assert pr.verdict(r, stable, new).check == "prometheus:ttft_p95"
    new.prometheus = {"ttft_p95": 0.11, "error_rate": 0.05}
    assert pr.verdict(r, stable, new).check == "prometheus:error_rate"
    new.prometheus = {"ttft_p95": None, "error_rate": 0.0}  # no sample yet: said, not failed
    assert pr.verdict(r, stable, new).ok


def test_figures_use_nearest_rank_quantiles_and_count_failures():
    samples = [pr.Sample(True, 200, x / 100, x / 200) for x in range(1, 20)] + [pr.Sample(False, 500, 0.01)]
    f = pr.figures(samples)
    assert (f.requests, f.errors, f.p50_s, f.p95_s, f.ttft_p95_s) == (20, 1, 0.1, 0.19, 0.095)
    assert pr.quantile([], 0.5) is None


def test_surge_by_one_never_needs_more_than_one_pod_above_the_running_revision():
    for old, new in ((1, 1), (2, 2), (3, 3), (4, 2)):
        for percent in (5, 25, 50, 75, 100):
            a, b = pr.surge_targets(old, new, percent)
            assert a + b <= old + 1 and b >= 1 and (a >= 1 or percent == 100)
    assert pr.surge_targets(2, 2, 100) == (0, 2)


def test_state_round_trips_and_knows_its_percent():
    st = pr.State(pr.PROGRESSING, "c", "s", step=2, steps=[{"percent": 5}])
    assert pr.State.decode(st.encode()) == st and st.percent((5, 25, 50, 100)) == 50
    assert pr.State(pr.PROGRESSING, "c", step=-1).percent((5, 100)) == 0


def test_the_plan_rolls_out_progressive_services_after_the_others_and_before_the_smoke_test():
    d = desired({"models": [{}, {"name": "qwen", "rollout": PROG}]})
    steps = plan.plan(d)
    kinds = [type(s).__name__ for s in steps]
    assert kinds.index("Apply") < kinds.index("Rollout") < len(kinds) - 1 and kinds[-1] == "Smoke"
    services = next(s for s in steps if isinstance(s, plan.Apply) and s.stage == "services")
    assert [o["metadata"]["name"] for o in services.objects if o["kind"] == "Service"] == ["knative-qwen7b-svc"]
    rollout = next(s for s in steps if isinstance(s, plan.Rollout))
    assert rollout.ref == "knative-qwen7b/qwen" and pr.template_name(rollout.service).startswith("qwen-")
    assert plan.Right("patch", "autoscaling.internal.knative.dev", "podautoscalers", "knative-qwen7b") in \
        plan.install_rights(d)


def test_rollback_data_plans_only_the_rollback_and_names_a_progressive_service():
    d = desired({"models": [{"name": "qwen", "rollout": PROG}], "rollback": "qwen"})
    assert [type(s).__name__ for s in plan.plan(d)] == ["Preflight", "Lock", "Rollback", "Smoke"]
    with pytest.raises(settings.InputError, match="rollback: 'other' is not allowed"):
        desired({"models": [{"name": "qwen", "rollout": PROG}], "rollback": "other"})
    with pytest.raises(settings.InputError, match="rollback: 'knative-qwen7b-svc' is not allowed"):
        desired({"models": [{}], "rollback": "knative-qwen7b-svc"})  # not progressive
    with pytest.raises(settings.InputError, match="rollout_retry"):
        desired({"models": [{"name": "qwen", "rollout": PROG}], "rollout_retry": "nope"})


def rollout_report():
    step = {"percent": 25, "ok": True, "check": "", "stable": figs(0.39).as_dict(), "candidate": figs(0.41).as_dict()}
    return {"service": "knative-qwen7b/qwen", "steps": [step], "outcome": "promoted", "stable": "qwen-b",
            "previous": "qwen-a"}


def test_closing_lines_and_metrics_of_a_rollout():
    lines = rollout_lines(rollout_report())
    assert lines[0] == "rollout knative-qwen7b/qwen: 25 % ok (p95 0.41 s vs 0.39 s, errors 0/20 vs 0/20)"
    assert lines[1] == "rollout knative-qwen7b/qwen: promoted qwen-b (previous qwen-a at 0 %)"
    text = metrics.text({"kind": "run", "finished": 1, "clusters": {"c1": {"status": "changed",
                                                                            "rollouts": [rollout_report()]}}})
    assert 'knfleet_model_rollout_step_percent{cluster="c1",service="knative-qwen7b/qwen"} 100' in text
    assert 'knfleet_model_rollout_check_p95_seconds{cluster="c1",service="knative-qwen7b/qwen",version="candidate"} ' \
           '0.41' in text


def test_the_simulated_model_server_fails_an_exact_share_and_0_percent_splits_get_nothing():
    b = openai.Behaviour([{"name": "KNFLEET_SIM_ERROR_RATE", "value": "0.1"},
                          {"name": "KNFLEET_SIM_LATENCY_MS", "value": "250"}, {"name": "KNFLEET_SIM_ANSWER",
                                                                               "value": "3"}])
    assert sum(b.fails(n) for n in range(1, 101)) == 10 and not b.fails(1) and b.fails(10)
    assert b.latency_s == 0.25 and b.answer == "3"
    assert openai.completion({"messages": [{"role": "user", "content": "1+1"}]}, "m", b.answer)[
        "choices"][0]["message"]["content"] == "3"
    assert openai.Behaviour(None).error_rate == 0 and not openai.Behaviour(None).fails(1)
    path = Path("/", (), (Split("ns", "old", 100, ()), Split("ns", "new", 0, ())))
    assert {path.pick(x / 1000).revision for x in range(1000)} == {"old"}
    split = Path("/", (), (Split("ns", "old", 95, ()), Split("ns", "new", 5, ())))
    assert sum(split.pick(x / 1000).revision == "new" for x in range(1000)) == 50
    assert json.dumps(pr.traffic("a"))  # plain JSON for the API


def test_the_html_page_shows_each_rollout_step_with_both_versions_figures():
    from knfleet.report import html

    cut_short = {"service": "x/y", "candidate": "y-1", "steps": [{"percent": 0, "ok": False, "check": "expect",
                                                                   "stable": {}, "candidate": {"requests": 3}}]}
    page = html.render([{"schema": "knfleet.report/v1", "kind": "run", "finished": 1, "clusters": {
        "c1": {"cluster": "c1", "status": "changed", "rollouts": [rollout_report(), cut_short]}}}])
    assert '<table class="rollout" data-cluster="c1" data-service="knative-qwen7b/qwen" ' \
           'data-outcome="promoted">' in page
    assert "<td>0.410 s / 0.390 s</td>" in page and "<td>0/20 / 0/20</td>" in page
    assert "rollout x/y: under way · new y-1" in page and "FAILED: expect" in page and "<td>0 % (dark)</td>" in page


def test_pods_of_the_services_revisions_without_traffic_count_as_freed_for_a_new_version():
    from knfleet.run.progressive import idle_revision

    def pod(ns, svc, rev):
        return {"metadata": {"namespace": ns, "labels": {"serving.knative.dev/service": svc,
                                                         "serving.knative.dev/revision": rev}}}
    assert idle_revision(pod("ns", "qwen", "qwen-old"), "ns", "qwen", "qwen-stable")
    assert not idle_revision(pod("ns", "qwen", "qwen-stable"), "ns", "qwen", "qwen-stable")
    assert not idle_revision(pod("ns", "other", "other-1"), "ns", "qwen", "qwen-stable")
    assert not idle_revision(pod("other-ns", "qwen", "qwen-old"), "ns", "qwen", "qwen-stable")
    assert not idle_revision({"metadata": {"namespace": "ns", "labels": {}}}, "ns", "qwen", "qwen-stable")
