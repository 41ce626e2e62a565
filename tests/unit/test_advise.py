"""Issue 25, part 3: `knfleet advise REPORT...` (settings from measured cold starts) and `knfleet lint --reports`
(a progress deadline below the slowest measured cold start). Pure: saved reports in, text and JSON out."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from knfleet import cli
from knfleet.report import advise

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "advise"
RUNS = ["run1.json", "run2.json", "run3.json"]
Q = "knative-qwen7b/qwen"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


# --- golden files: three fixed reports -> the exact text and JSON ----------------------------------------------------
def test_advise_on_three_reports_prints_the_golden_text(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    code, out, err = run(capsys, "advise", *RUNS)
    assert (code, err) == (0, "")
    assert out == (FIXTURES / "advise.txt").read_text()


def test_advise_json_is_the_golden_json(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    code, out, _ = run(capsys, "advise", "--json", *RUNS)
    assert code == 0
    assert json.loads(out) == json.loads((FIXTURES / "advise.json").read_text())


def test_the_golden_figures_are_the_arithmetic_of_the_fixtures(capsys, monkeypatch):
    """The golden files hold what the rules give for the fixtures, worked out by hand here (so a wrong golden file
    cannot pass): qwen's totals 380.2 400.0 412.9 455.0 640.2 (one from an older report's smoke result)."""
    monkeypatch.chdir(FIXTURES)
    found = {s["service"]: s for s in json.loads((FIXTURES / "advise.json").read_text())["services"]}
    qwen = found[Q]
    assert qwen["cold_starts"]["count"] == 5 and qwen["cold_starts"]["by_trigger"] == {"new_revision": 1, "wake": 4}
    assert (qwen["cold_starts"]["p50_s"], qwen["cold_starts"]["p95_s"]) == (412.9, 640.2)
    assert qwen["cold_starts"]["slowest_phase"] == {"phase": "pull", "p95_s": 420.0}  # pulls 250, 0, 420, 214
    assert qwen["progress_deadline"]["seconds"] == 1020  # 640.2 x 1.5 = 960.3 -> 17 min
    # one time per run and cluster: a recorded wake's first answer (started + total_s), else the report's finished:
    # gpu-a T0, T0+1800 (a new revision, no wake), T0+87500+412.9; gpu-b T0-600+455, T0+1000+640.2 (then skipped)
    assert qwen["scale_down_delay"]["gaps_s"] == [1785.2, 1800, 86112.9]
    assert qwen["scale_down_delay"]["seconds"] == 1800
    ms = qwen["min_scale"]  # 4 wakes in 88200 s; mean (400 + 455 + 640.2 + 412.9) / 4 = 477.025 s; 2 clusters
    assert ms["wakes_per_day"] == round(4 / (88200 / 86400), 3) and ms["mean_wake_s"] == 477.0
    assert ms["gpu_hours_per_day"] == 48.0 and ms["break_even_gpu_hours"] == round(48 / (4 / (88200 / 86400)
                                                                                           * 477.025 / 3600), 2)
    llama = found["knative-llama/llama"]
    assert llama["progress_deadline"]["seconds"] == 180 and llama["cold_starts"]["slowest_phase"]["phase"] == "load"
    assert "caution: no start here is known to have pulled the image" in llama["progress_deadline"]["says"]
    assert qwen["cold_starts"]["pulled"] == 3 and "caution" not in qwen["progress_deadline"]["says"]
    assert llama["scale_down_delay"]["value"] is None and llama["scale_down_delay"]["gaps_s"] == [87698.0]
    embed = found["knative-embed/embed"]
    assert embed["note"] == advise.NO_COLD_START and embed["progress_deadline"] is None
    assert "no cold start measured: run with --smoke-cold" in (FIXTURES / "advise.txt").read_text()


# --- the arithmetic ------------------------------------------------------------------------------------------------
def test_percentiles_are_nearest_rank():
    cold = [advise.ColdStart("r", "c", "wake", t, {}) for t in (640.2, 380.2, 455.0, 400.0, 412.9)]
    f = advise.figures(cold)
    assert (f["p50_s"], f["p95_s"], f["max_s"]) == (412.9, 640.2, 640.2)
    one = advise.figures([advise.ColdStart("r", "c", "wake", 7.0, {})])
    assert (one["p50_s"], one["p95_s"]) == (7.0, 7.0)
    twenty = advise.figures([advise.ColdStart("r", "c", "wake", float(t), {}) for t in range(1, 21)])
    assert (twenty["p50_s"], twenty["p95_s"]) == (10.0, 19.0)


def test_the_slowest_phase_is_the_one_with_the_highest_p95_and_unknowns_are_left_out():
    def c(total: float | None, **phases: float | None) -> advise.ColdStart:
        return advise.ColdStart("r", "c", "wake", total, phases)

    f = advise.figures([c(300.0, pull=200.0, load=90.0), c(None, pull=None, load=150.0), c(100.0, pull=0.0,
                                                                                           load=95.0)])
    assert f["slowest_phase"] == {"phase": "pull", "p95_s": 200.0}
    assert f["unknown_total"] == 1 and f["max_s"] == 300.0
    assert advise.figures([c(5.0, pull=None)])["slowest_phase"] is None


@pytest.mark.parametrize(("slowest", "deadline"), [(640.2, 1020), (600.0, 900), (40.0, 60), (39.9, 60),
                                                   (400.0, 600), (0.0, 0)])
def test_the_deadline_is_the_slowest_times_one_and_a_half_up_to_a_whole_minute(slowest, deadline):
    assert advise.deadline_for(slowest) == deadline


@pytest.mark.parametrize(("gaps", "delay"), [([1800, 86400], 1800), ([61], 120), ([3599.5], 3600), ([3600], 3600),
                                             ([3601], None), ([], None), ([90, 2000, 7200], 2040)])
def test_the_scale_down_delay_bridges_the_longest_gap_knative_allows(gaps, delay):
    assert advise.delay_for(gaps) == delay


def test_gaps_are_between_distinct_times_in_order():
    assert advise.gaps([30.0, 10.0, 20.0, 20.0]) == [10.0, 10.0]
    assert advise.gaps([5.0]) == []


def test_a_runs_request_time_is_its_wakes_first_answer_else_its_finish():
    woke = [advise.ColdStart("r", "c", "wake", 412.9, {}, answered=1000.0 + 412.9),
            advise.ColdStart("r", "c", "new_revision", 380.0, {}, answered=500.0 + 380.0)]
    sent, skipped = [{"service": Q, "ok": True}], [{"service": Q, "ok": True, "skipped": "at zero, not woken"}]
    assert advise.request_time(sent, woke, Q, 5000.0) == 1412.9
    assert advise.request_time(sent, woke[1:], Q, 5000.0) == 5000.0  # a new revision's start is no request
    assert advise.request_time(sent, [], Q, None) is None
    assert advise.request_time(skipped, woke, Q, 5000.0) is None
    assert advise.request_time(sent, [], "other/svc", 5000.0) is None


def test_the_window_is_that_of_the_reports_that_measure():
    """A status report (no smoke, no cold start) a week later does not stretch the wakes-per-day window."""
    runs = [(r, fixture(r)) for r in RUNS]
    status = {"schema": "knfleet.report/v1", "kind": "status", "finished": runs[0][1]["finished"] + 7 * 86400,
              "clusters": {"gpu-a": {"cluster": "gpu-a", "status": "in-sync", "services": [{"service": Q}]}}}
    assert advise.window([*runs, ("status.json", status)]) == advise.window(runs) == (1765015200.0, 1765103400.0)
    assert advise.window([("status.json", status)]) is None


def test_min_scale_break_even_and_verdict():
    m = advise.min_scale(wakes_per_day=4, mean_wake_s=450, gpus_per_pod=2, clusters=1)
    assert (m.wait_hours_per_day, m.gpu_hours_per_day, m.break_even) == (0.5, 48.0, 96.0)
    assert m.verdict == "undecided"
    # 0.5 h x 200 = 100 avoided against 48 GPU h x 2.0 = 96 spent: worth it; at 150 per hour of waiting: 75 < 96
    assert advise.min_scale(4, 450, 2, 1, gpu_hour_cost=2.0, wait_hour_cost=200).verdict == "worth it"
    assert advise.min_scale(4, 450, 2, 1, gpu_hour_cost=2.0, wait_hour_cost=150).verdict == "not worth it"
    assert advise.min_scale(0, 450, 1, 1).verdict == "not worth it"
    assert advise.min_scale(0, 450, 1, 1).break_even is None


def test_costs_and_wakes_per_day_from_the_command_line(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    code, out, _ = run(capsys, "advise", "--json", "--gpus-per-pod", "2", "--gpu-hour-cost", "2.5",
                       "--wait-hour-cost", "300", "--wakes-per-day", "10", *RUNS)
    assert code == 0
    qwen = next(s for s in json.loads(out)["services"] if s["service"] == Q)["min_scale"]
    # 10 wakes/day x 477.025 s = 1.325 h x 300 = 397.5 avoided; 24 h x 2 GPUs x 2 clusters x 2.5 = 240 spent
    assert qwen["wakes_per_day"] == 10 and qwen["gpu_hours_per_day"] == 96.0
    assert qwen["verdict"] == "worth it" and qwen["value"] == "1"
    assert "397.52 of waiting avoided vs 240.00 of GPU time spent per day: worth it" in qwen["says"]


def test_a_smoke_wake_of_an_older_report_counts_once(tmp_path):
    """Reports without `cold_starts` measured the wake in the smoke result; a cluster that records the wake in
    `cold_starts` is not counted twice."""
    old = fixture("run1.json")
    seen = advise.gather([("run1.json", old)])
    assert [(c.cluster, c.total_s, c.source) for c in seen[Q].cold] == [("gpu-a", 400.0, "smoke"),
                                                                       ("gpu-b", 455.0, "cold_starts")]


def test_a_report_named_twice_counts_once(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    once = json.loads(run(capsys, "advise", "--json", *RUNS)[1])
    assert json.loads(run(capsys, "advise", "--json", *RUNS, "run2.json", "run1.json")[1]) == once


def test_a_single_report_gives_no_rate_and_no_gap(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    code, out, _ = run(capsys, "advise", "run2.json")
    assert code == 0
    assert "wakes per day unknown: the reports span no time" in out
    assert "no gap seen: fewer than two runs sent smoke requests to it on one cluster" in out


@pytest.mark.parametrize(("option", "value"), [("--gpus-per-pod", "0"), ("--gpus-per-pod", "1.5"),
                                               ("--gpu-hour-cost", "nan"), ("--wait-hour-cost", "-1"),
                                               ("--wakes-per-day", "many")])
def test_bad_options_exit_2_naming_what_is_allowed(capsys, monkeypatch, option, value):
    monkeypatch.chdir(FIXTURES)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["advise", option, value, "run1.json"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert option in err and repr(value) in err and "above 0" in err


# --- bad reports: exit 2 naming the file and the field, as knfleet report does ---------------------------------------
def spoil(data: dict[str, Any], how: str) -> None:
    c = data["clusters"]["gpu-b"]["cold_starts"][0]
    if how == "trigger":
        c["trigger"] = "boot"
    elif how == "phase-name":
        c["phases"]["warmup"] = 3.0
    elif how == "phase-negative":
        c["phases"]["pull"] = -4.0
    elif how == "total":
        c["total_s"] = "412"
    elif how == "no-service":
        del c["service"]
    elif how == "not-a-list":
        data["clusters"]["gpu-b"]["cold_starts"] = {"service": Q}
    elif how == "phases":
        c["phases"] = [1, 2]


BAD = {"trigger": "clusters.gpu-b.cold_starts[0].trigger: 'boot' is not allowed; expected one of wake, "
                  "new_revision, rollout_step",
       "phase-name": "clusters.gpu-b.cold_starts[0].phases.warmup: not a phase; allowed: schedule, pull, start, "
                     "load, first_answer",
       "phase-negative": "clusters.gpu-b.cold_starts[0].phases.pull: -4.0 is not allowed; expected a number of "
                         "seconds (finite, 0 or more) or null",
       "total": "clusters.gpu-b.cold_starts[0].total_s: '412' is not allowed",
       "no-service": "clusters.gpu-b.cold_starts[0].service: missing",
       "not-a-list": "clusters.gpu-b.cold_starts: {'service': 'knative-qwen7b/qwen'} is not allowed; expected a list",
       "phases": "clusters.gpu-b.cold_starts[0].phases: [1, 2] is not allowed; expected an object"}


@pytest.mark.parametrize("how", sorted(BAD))
def test_a_bad_cold_start_record_is_refused_naming_file_and_field(tmp_path, capsys, how):
    data = fixture("run2.json")
    spoil(data, how)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    good = str(FIXTURES / "run1.json")
    for argv in (["advise", good, str(bad)], ["report", good, str(bad)], ["lint", str(tmp_path / "svc.yaml"),
                                                                           "--reports", good, str(bad)]):
        (tmp_path / "svc.yaml").write_text("")
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "", argv
        assert f"{bad}: {BAD[how]}" in err, (argv, err)


def test_the_shared_schemas_example_record_is_valid_and_the_page_renders_reports_with_cold_starts(tmp_path, capsys):
    """The record of /work/notes/cold-schema.md (the other helper writes it) passes; knfleet report still renders."""
    data = fixture("run2.json")
    data["clusters"]["gpu-b"]["cold_starts"] = [{
        "service": "knative-qwen7b/qwen", "revision": "qwen-00002", "pod": "qwen-00002-deployment-abc-xyz",
        "node": "gpu-node-1", "image": "vllm/vllm-openai:v0.6.4", "trigger": "wake", "started": 1765060000.0,
        "phases": {"schedule": 3.0, "pull": 214.0, "start": 0.5, "load": 195.0, "first_answer": 0.4},
        "total_s": 412.9}, {
        "service": "knative-qwen7b/qwen", "revision": "qwen-00003", "pod": "p", "node": None, "image": "i",
        "trigger": "rollout_step", "started": 1765060000.0,
        "phases": {"schedule": None, "pull": 0.0, "start": None, "load": None, "first_answer": None},
        "total_s": None}]
    (tmp_path / "r.json").write_text(json.dumps(data))
    assert run(capsys, "advise", str(tmp_path / "r.json"))[0] == 0
    code, out, _ = run(capsys, "report", *[str(FIXTURES / r) for r in RUNS], str(tmp_path / "r.json"))
    assert code == 0 and out.startswith("<!DOCTYPE html>")


def test_files_that_are_not_reports_are_refused(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{not json")
    (tmp_path / "y.json").write_text(json.dumps({"schema": "other/v1"}))
    assert run(capsys, "advise", str(tmp_path / "x.json"))[0] == 2
    assert run(capsys, "advise", str(tmp_path / "y.json"))[2].startswith(f"knfleet advise: {tmp_path / 'y.json'}: "
                                                                         "schema 'other/v1' is not a knfleet report")
    code, _, err = run(capsys, "advise", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json: cannot read it" in err


def test_a_report_without_cold_starts_still_validates_and_says_so(tmp_path, capsys):
    data = fixture("run2.json")
    for o in data["clusters"].values():
        o.pop("cold_starts")
        o["smoke"] = [dict(s, cold_start_s=None) for s in o["smoke"]]
    (tmp_path / "r.json").write_text(json.dumps(data))
    code, out, _ = run(capsys, "advise", str(tmp_path / "r.json"))
    assert code == 0
    assert out.count("no cold start measured: run with --smoke-cold") == 2  # qwen and embed


# --- knfleet lint --reports ----------------------------------------------------------------------------------------
def service(deadline: str | None, name: str = "qwen", gpus: int = 1) -> dict[str, Any]:
    ann = {"serving.knative.dev/progress-deadline": deadline} if deadline else {}
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "knative-qwen7b"},
            "spec": {"template": {"metadata": {"annotations": ann}, "spec": {"containers": [{
                "image": "vllm/vllm-openai@sha256:" + "a" * 64, "ports": [{"containerPort": 8000}],
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}}}


def lint(tmp_path: Path, capsys: pytest.CaptureFixture[str], svc: dict[str, Any], *reports: str) -> list[str]:
    f = tmp_path / "svc.yaml"
    f.write_text(json.dumps(svc))
    extra = ["--reports", *[str(FIXTURES / r) for r in reports]] if reports else []
    code, out, _ = run(capsys, "lint", str(f), *extra)
    assert code == 0
    return [line for line in out.splitlines() if "slowest cold start" in line]


def test_lint_warns_when_the_deadline_is_below_the_slowest_measured_cold_start(tmp_path, capsys):
    found = lint(tmp_path, capsys, service("600s"), *RUNS)
    assert found == [
        f"{tmp_path / 'svc.yaml'}: warning: {Q}: spec.template.metadata.annotations[serving.knative.dev/progress-"
        f"deadline] = '600s': below the slowest cold start measured, 640.2 s (cluster gpu-b in "
        f"{FIXTURES / 'run2.json'}; reports {', '.join(str(FIXTURES / r) for r in RUNS)}): a start that slow fails "
        "the revision (ProgressDeadlineExceeded); knfleet advise derives 1020s from these reports"]


def test_lint_is_silent_at_or_above_the_slowest_and_without_reports(tmp_path, capsys):
    assert lint(tmp_path, capsys, service("641s"), *RUNS) == []
    assert lint(tmp_path, capsys, service("600s")) == []
    assert lint(tmp_path, capsys, service("600s", name="other"), *RUNS) == []  # nothing measured for it
    # no annotation on a GPU service: knfleet applies 1800s, above 640.2 s
    assert lint(tmp_path, capsys, service(None), *RUNS) == []
    # a report where it started faster: 600s is above 455.0 s
    assert lint(tmp_path, capsys, service("600s"), "run1.json") == []


def test_lint_reads_the_cluster_default_for_a_service_without_its_own_deadline(tmp_path, capsys):
    found = lint(tmp_path, capsys, service(None, gpus=0), *RUNS)  # no GPU: Knative's 600s applies
    assert len(found) == 1 and "config-deployment.progress-deadline (the cluster's) = '600s'" in found[0]


def test_lint_of_group_data_compares_each_models_deadline(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gd = tmp_path / "group_data"
    gd.mkdir()
    (gd / "gpu.py").write_text('models = [{"name": "qwen", "namespace": "knative-qwen7b", '
                               '"progress_deadline": "300s"}, {"name": "fast", "namespace": "knative-qwen7b"}]\n')
    measured = cli.measured_cold_starts([str(FIXTURES / r) for r in RUNS])
    slow = copy.deepcopy(measured)
    slow["knative-qwen7b/fast"] = slow[Q]
    found = [p for p in cli.lint_path("group_data/gpu.py", cli.lint.ClusterConfig(), slow)
             if "slowest cold start" in p.message]
    assert [(p.service, p.value) for p in found] == [(Q, "300s")]  # fast has knfleet's GPU default, 1800s
    assert not [p for p in cli.lint_path("group_data/gpu.py", cli.lint.ClusterConfig())
                if "slowest cold start" in p.message]


def test_lint_of_an_inventory_warns_per_cluster(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "group_data").mkdir()
    (tmp_path / "inventories").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(
        'models = [{"name": "qwen", "namespace": "knative-qwen7b", "progress_deadline": "600s"}]\n'
        'knative_deployment = {"registries-skipping-tag-resolving": "index.docker.io"}\n')
    (tmp_path / "inventories" / "inv.py").write_text(
        'gpu = [("@kube/a", {}), ("@kube/b", {"models": [{"name": "qwen", "namespace": "knative-qwen7b", '
        '"progress_deadline": "20m"}]})]\n')
    code, out, _ = run(capsys, "lint", "inventories/inv.py", "--reports", *[str(FIXTURES / r) for r in RUNS])
    assert code == 0
    warned = [line.split(": warning: ")[0] for line in out.splitlines() if "slowest cold start" in line]
    assert warned == ["inventories/inv.py (a)"]  # b's own 20m is above 640.2 s
    assert run(capsys, "lint", "inventories/inv.py", "--strict", "--reports", str(FIXTURES / "run2.json"))[0] == 1
    assert run(capsys, "lint", "inventories/inv.py", "--strict")[0] == 0  # the warning was what failed it
