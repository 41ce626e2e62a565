"""Issue 25: cold-start phases from a pod and its events (pure), the closing line, the report's validation, the
metrics and the HTML page's stacked bars."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from knfleet.report import html, metrics, outcome, validate
from knfleet.report.records import COLD_PHASES, ColdStart, cold_start_line
from knfleet.run.coldstart import phases_of, timestamp

T0 = timestamp("2026-12-06T10:00:00Z")
assert T0 is not None
IMAGE = "vllm/vllm-openai:v0.6.4"


def at(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(T0 + seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(scheduled: float | None = 3, running: float | None = 220, ready: float | None = 415,
        uid: str = "u1") -> dict[str, Any]:
    conds = []
    if scheduled is not None:
        conds.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": at(scheduled)})
    conds.append({"type": "Ready", "status": "True" if ready is not None else "False",
                  "lastTransitionTime": at(ready if ready is not None else 0)})
    state = {"running": {"startedAt": at(running)}} if running is not None else {"waiting": {"reason": "x"}}
    return {"metadata": {"name": "qwen-00002-deployment-abc-xyz", "namespace": "knative-qwen7b", "uid": uid,
                         "creationTimestamp": at(0), "labels": {"serving.knative.dev/revision": "qwen-00002"}},
            "spec": {"nodeName": "gpu-node-1", "containers": [{"name": "user-container", "image": IMAGE},
                                                               {"name": "queue-proxy", "image": "qp"}]},
            "status": {"conditions": conds, "containerStatuses": [
                {"name": "user-container", "state": state}, {"name": "queue-proxy", "state": state}]}}


def event(reason: str, message: str, t: float, container: str = "user-container", uid: str = "u1") -> dict:
    return {"reason": reason, "message": message, "firstTimestamp": at(t), "lastTimestamp": at(t),
            "involvedObject": {"kind": "Pod", "uid": uid, "fieldPath": f"spec.containers{{{container}}}"}}


PULLING = event("Pulling", f'Pulling image "{IMAGE}"', 4)
PULLED = event("Pulled", f'Successfully pulled image "{IMAGE}" in 3m34s (3m34s including waiting). Image size: 1 '
               "bytes.", 217)


def test_every_phase_from_events_conditions_and_container_state():
    cs = phases_of(pod(), [PULLING, PULLED, event("Pulled", 'Container image "qp" already present on machine', 218,
                                                   "queue-proxy")],
                   "knative-qwen7b/qwen", "wake", answered=T0 + 415.4)
    assert cs.phases == {"schedule": 3.0, "pull": 214.0, "start": 3.0, "load": 195.0, "first_answer": 0.4}
    assert cs.total_s == 415.4
    assert sum(cs.phases.values()) == pytest.approx(cs.total_s)
    assert (cs.revision, cs.pod, cs.node, cs.image, cs.trigger, cs.started) == (
        "qwen-00002", "qwen-00002-deployment-abc-xyz", "gpu-node-1", IMAGE, "wake", T0)


def test_image_already_present_is_a_pull_of_zero():
    present = event("Pulled", f'Container image "{IMAGE}" already present on machine', 3)
    cs = phases_of(pod(running=4, ready=10), [present], "ns/s", "wake", answered=T0 + 10.5)
    assert cs.phases["pull"] == 0.0
    assert cs.phases["start"] == 1.0  # scheduled -> running
    assert cs.total_s == 10.5


def test_no_pull_event_at_all_and_the_container_started_is_a_pull_of_zero():
    cs = phases_of(pod(running=4, ready=10), [], "ns/s", "new_revision")
    assert cs.phases == {"schedule": 3.0, "pull": 0.0, "start": 1.0, "load": 6.0, "first_answer": None}
    assert cs.total_s == 10.0  # no request sent: created -> Ready


def test_pulling_without_pulled_is_unknown_not_guessed():
    cs = phases_of(pod(), [PULLING], "ns/s", "wake", answered=T0 + 416)
    assert cs.phases["pull"] is None and cs.phases["start"] is None
    assert cs.phases["schedule"] == 3.0 and cs.phases["load"] == 195.0
    assert cs.total_s == 416.0


def test_missing_timestamps_are_null():
    p = pod(scheduled=None)
    p["metadata"].pop("creationTimestamp")
    cs = phases_of(p, [PULLING, PULLED], "ns/s", "wake", answered=T0 + 415.4)
    assert cs.phases["schedule"] is None and cs.phases["pull"] is None
    assert cs.started is None and cs.total_s is None
    assert cs.phases["start"] == 3.0 and cs.phases["load"] == 195.0
    bad = pod()
    bad["status"]["conditions"][0]["lastTransitionTime"] = "not a time"
    unknown = phases_of(bad, [], "ns/s", "wake").phases
    assert unknown["schedule"] is None and unknown["start"] is None
    assert unknown["pull"] == 0.0  # no Pulling event and the container runs: the image was there


def test_not_ready_and_not_running_leave_their_phases_unknown():
    cs = phases_of(pod(running=None, ready=None), [PULLING, PULLED], "ns/s", "wake")
    assert cs.phases["pull"] == 214.0
    assert cs.phases["start"] is None and cs.phases["load"] is None and cs.total_s is None


def test_events_of_another_pod_or_container_do_not_count():
    other = event("Pulled", f'Container image "{IMAGE}" already present on machine', 3, uid="u2")
    qp = event("Pulled", 'Container image "qp" already present on machine', 3, container="queue-proxy")
    cs = phases_of(pod(), [PULLING, other, qp], "ns/s", "wake")
    assert cs.phases["pull"] is None  # the model container's own pull has not finished


def test_an_answer_before_ready_by_the_clocks_is_unknown():
    cs = phases_of(pod(), [PULLING, PULLED], "ns/s", "wake", answered=T0 + 100)
    assert cs.phases["first_answer"] is None


def test_closing_line_in_the_shape_of_the_schema():
    d = ColdStart("knative-qwen7b/qwen", "qwen-00002", "p", "gpu-node-1", IMAGE, "wake", T0,
                  {"schedule": 3.0, "pull": 214.0, "start": 0.5, "load": 195.0, "first_answer": 0.4}, 412.9).as_dict()
    assert cold_start_line(d) == ("cold start knative-qwen7b/qwen (qwen-00002 on gpu-node-1, wake) 412.9 s: "
                                  "schedule 3.0 s, pull 214.0 s, start 0.5 s, load 195.0 s, first answer 0.4 s")
    d["phases"]["pull"] = None
    d["total_s"] = None
    d["node"] = None
    assert cold_start_line(d).startswith("cold start knative-qwen7b/qwen (qwen-00002 on ?, wake) ? s: schedule 3.0 s, "
                                         "pull ? s,")


def report_with(cold: list[dict[str, Any]], finished: float = 1795700000.0) -> dict[str, Any]:
    o = outcome.ClusterOutcome("local-1", outcome.CONVERGED, cold_starts=cold)
    return json.loads(json.dumps({**outcome.report("run", {"local-1": o}, action="install", dry_run=False),
                                  "finished": finished}))


def item(**over: Any) -> dict[str, Any]:
    base = phases_of(pod(), [PULLING, PULLED], "knative-qwen7b/qwen", "wake", answered=T0 + 415.4).as_dict()
    return {**base, **over}


def test_closing_lines_carry_one_line_per_cold_start():
    o = outcome.ClusterOutcome("local-1", outcome.CONVERGED, cold_starts=[item()])
    assert outcome.line(o, "install")[-1] == "    " + cold_start_line(item())


@pytest.mark.parametrize(("change", "field"), [
    ({"phases": {"warmup": 1.0}}, "phases.warmup"),
    ({"phases": {"pull": -1.0}}, "phases.pull"),
    ({"phases": {"pull": "3"}}, "phases.pull"),
    ({"phases": [1.0]}, "phases"),
    ({"total_s": "412"}, "total_s"),
    ({"started": -5}, "started"),
    ({"node": 3}, "node"),
])
def test_the_validator_names_a_bad_cold_start_field(change, field):
    validate.check("r.json", report_with([item()]))
    with pytest.raises(validate.ReportError, match=rf"clusters\.local-1\.cold_starts\[0\]\.{field}"):
        validate.check("r.json", report_with([item(**change)]))
    older = report_with([])
    older["clusters"]["local-1"].pop("cold_starts")
    validate.check("old.json", older)  # older reports: none recorded


def test_metrics_hold_each_phase_and_the_total_of_the_last_start_per_revision():
    first = item(pod="a", phases={**item()["phases"], "pull": 100.0})
    last = item(phases={**item()["phases"], "first_answer": None})
    text = metrics.render(metrics.families(report_with([first, last])))
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(text) for s in f.samples}
    where = (("cluster", "local-1"), ("revision", "qwen-00002"), ("service", "knative-qwen7b/qwen"))
    for phase in COLD_PHASES[:-1]:
        assert found[("knfleet_cold_start_phase_seconds", tuple(sorted((*where, ("phase", phase)))))] == \
            item()["phases"][phase]
    assert ("knfleet_cold_start_phase_seconds", tuple(sorted((*where, ("phase", "first_answer"))))) not in found
    assert found[("knfleet_cold_start_seconds", where)] == pytest.approx(415.4)


def test_the_page_stacks_the_known_phases_of_each_service_and_cluster():
    rep = report_with([item(), item(service="other/svc", phases={**item()["phases"], "pull": None})])
    chart = html.cold_chart(html.normalized(rep))
    assert len(chart.bars) == 2
    for bar in chart.bars:
        bottom = chart.top + chart.plot_h
        for seg in bar.segments:
            assert seg.y + seg.height == pytest.approx(bottom, abs=0.02)  # each on top of the one below
            assert seg.height == pytest.approx(chart.plot_h * seg.seconds / chart.y_max, abs=0.02)
            bottom = seg.y
    by = {b.service: b for b in chart.bars}
    assert [s.phase for s in by["knative-qwen7b/qwen"].segments] == list(COLD_PHASES)
    assert by["other/svc"].unknown == ["pull"]
    page = html.render([rep, report_with([item()], 1795700600.0)])
    assert page.count('class="cold-bar"') == 1 + 3  # the latest's one, and over time 2 + 1


class FakeCluster:
    """The reads coldstart.observe and new_revisions make, answered from fixed objects."""

    def __init__(self, pods: list[dict[str, Any]], events: list[dict[str, Any]], revision_created: float) -> None:
        self.pods, self.events, self.revision_created = pods, events, revision_created
        self.reads: list[tuple[str, str | None, str | None]] = []

    def read_now(self, api_version: str, kind: str, namespace: str | None = None, selector: str | None = None,
                 fields: str | None = None) -> list[dict[str, Any]]:
        self.reads.append((kind, selector, fields))
        if kind == "Pod":
            return [p for p in self.pods if selector == "serving.knative.dev/revision=" +
                    p["metadata"]["labels"]["serving.knative.dev/revision"]]
        uid = (fields or "").removeprefix("involvedObject.uid=")
        return [e for e in self.events if e["involvedObject"]["uid"] == uid]

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        if kind == "Service":
            return {"status": {"latestReadyRevisionName": "qwen-00002"}}
        return {"metadata": {"name": name, "creationTimestamp": at(self.revision_created)}}


def test_observe_takes_the_ready_pods_created_since_and_reads_each_ones_events():
    from knfleet.run import coldstart

    late, early, starting = pod(uid="u1"), pod(uid="u2"), pod(uid="u3", ready=None)
    early["metadata"]["creationTimestamp"] = at(-60)
    for p, name in ((late, "late"), (early, "early"), (starting, "starting")):
        p["metadata"]["name"] = name
    c = FakeCluster([late, early, starting], [PULLING, PULLED], 0)
    found = coldstart.observe(c, "knative-qwen7b/qwen", "qwen-00002", "wake", since=T0 + 0.7, answered=T0 + 416)
    assert [x.pod for x in found] == ["late"]  # created in the same second counts; not Ready yet does not
    assert found[0].phases["pull"] == 214.0 and found[0].trigger == "wake"
    assert ("Event", None, "involvedObject.uid=u1") in c.reads


def test_new_revisions_only_of_revisions_this_run_created():
    from knfleet.run import coldstart

    c = FakeCluster([pod()], [PULLING, PULLED], revision_created=-1)
    (found,) = coldstart.new_revisions(c, ("knative-qwen7b/qwen",), since=T0 - 5)
    assert found.trigger == "new_revision" and found.revision == "qwen-00002"
    assert found.phases["first_answer"] is None and found.total_s == 415.0
    assert coldstart.new_revisions(c, ("knative-qwen7b/qwen",), since=T0 + 10) == []  # an older revision


def test_a_run_that_changed_no_model_service_reads_no_revision():
    """A no-op run made a Service and a Revision read per model service to find new revisions; it changed none, so
    there is none to find: nothing is read. A run that changed a service still finds its new revision."""
    from knfleet.desired import plan as p
    from knfleet.report.records import ClusterRun
    from knfleet.run import applying

    c = FakeCluster([pod()], [PULLING, PULLED], revision_created=-1)
    check = p.ServicesReady(("knative-qwen7b/qwen",))
    rec = ClusterRun(cluster="a", host="@kube/a")
    rec.started = T0 - 5
    rec.keep_changes("core", [{"object": "apps/v1/Deployment knative-serving/controller", "stage": "core"}])
    applying.note_new_revisions(c, check, rec)  # type: ignore[arg-type]
    assert rec.cold_starts == [] and c.reads == []
    svc = "serving.knative.dev/v1/Service knative-qwen7b/qwen"
    rec.keep_changes("services", [{"object": svc, "stage": "services"}])
    applying.note_new_revisions(c, check, rec)  # type: ignore[arg-type]
    assert [x.revision for x in rec.cold_starts] == ["qwen-00002"]
