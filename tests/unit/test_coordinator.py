"""`knfleet coordinate`'s decisions as a pure state machine (no cluster): a fresh start, resuming mid-wave with the
wave's Job already there, passed waves skipped, halting before the next wave's Job when more clusters failed than
allowed (as `knfleet rollout`), and the merged report listing every cluster once. Then the loop over an in-memory
API with resourceVersions: a conflicting write is read again, and a coordinator stopped at any point and started
again never creates a wave's Job twice."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from knfleet.fleet import coordinator as co
from knfleet.fleet import jobs
from knfleet.kube.client import Conflict
from knfleet.report import outcome


def fleet(max_failed: int = 0) -> dict[str, Any]:
    """Two waves: the canary (c0, c1: one shard each) and wave 1 (c2, c3, c4 in two shards)."""
    hosts = {f"c{i}": {"rollout_wave": 0 if i < 2 else 1} for i in range(5)}
    return {"fleet": "f", "version": 1, "hosts": hosts, "max_failed": max_failed, "data": {}, "parallelism": None,
            "deadline": 600, "converge_shards": [["c0", "c1", "c2"], ["c3", "c4"]],
            "waves": [{"wave": 0, "max_failed": max_failed, "shards": [["c0"], ["c1"]]},
                      {"wave": 1, "max_failed": max_failed, "shards": [["c2", "c3"], ["c4"]]}]}


def result(*names: str, status: str = outcome.CONVERGED) -> dict[str, Any]:
    return {n: outcome.ClusterOutcome(n, status, host=f"@kube/{n}", steps=[{"name": "x"}]).as_dict() for n in names}


RUNNING = co.JobView(True, False)
DONE = co.JobView(True, True, True)


def test_fresh_start_creates_the_canary_wave_job():
    a = co.next_action(fleet(), co.empty_state(), co.JobView(False))
    assert (a.kind, a.wave, a.max_failed_indexes) == ("create", 0, 0)
    assert co.next_action(fleet(), co.empty_state(), None).kind == "create"


def test_a_wave_whose_job_exists_is_waited_for_never_created_again():
    state = co.mark_running(co.empty_state(), 0)
    assert co.next_action(fleet(), state, RUNNING) == co.Action("wait", 0)
    # resumed by a new pod before the state said "running": the Job is there, so it is waited for too
    assert co.next_action(fleet(), co.empty_state(), RUNNING) == co.Action("wait", 0)
    assert co.next_action(fleet(), state, DONE) == co.Action("collect", 0)


def test_passed_waves_are_skipped_on_resume():
    state = co.record_wave(fleet(), co.empty_state(), 0, {0: result("c0"), 1: result("c1")})
    assert state["waves"]["0"]["status"] == "passed" and state["halted_at"] is None
    a = co.next_action(fleet(), state, co.JobView(False))
    assert (a.kind, a.wave) == ("create", 1)
    assert co.current_wave(fleet(), state) == 1


def test_a_failed_canary_halts_before_the_next_wave_job():
    state = co.record_wave(fleet(), co.empty_state(), 0, {0: result("c0"), 1: result("c1", status=outcome.FAILED)})
    assert state["halted_at"] == 0 and state["waves"]["0"]["status"] == "failed"
    a = co.next_action(fleet(), state, co.JobView(False))
    assert (a.kind, a.status, a.code) == ("finish", "halted", co.EXIT_HALTED)


def test_failures_within_max_failed_go_on_with_the_remaining_budget():
    doc = fleet(max_failed=2)
    state = co.record_wave(doc, co.empty_state(), 0, {0: result("c0"), 1: result("c1", status=outcome.FAILED)})
    assert state["halted_at"] is None and co.failures(state) == 1
    a = co.next_action(doc, state, co.JobView(False))
    assert (a.kind, a.wave, a.max_failed_indexes) == ("create", 1, 1)  # 2 allowed - 1 failed; 2 shards - 1
    # wave 1: two more failures make 3 > 2: halted at wave 1 (the last wave: nothing after it is created anyway)
    state = co.record_wave(doc, state, 1, {0: result("c2", "c3", status=outcome.FAILED), 1: result("c4")})
    assert state["halted_at"] == 1
    assert co.next_action(doc, state, None).code == co.EXIT_HALTED


def test_some_failed_within_the_budget_exits_1_and_all_converged_exits_0():
    doc = fleet(max_failed=5)
    state = co.record_wave(doc, co.empty_state(), 0, {0: result("c0"), 1: result("c1")})
    state = co.record_wave(doc, state, 1, {0: result("c2", "c3"), 1: result("c4", status=outcome.FAILED)})
    assert co.next_action(doc, state, None) == co.Action("finish", status="some-failed", code=co.EXIT_SOME_FAILED)
    state = co.record_wave(doc, state, 1, {0: result("c2", "c3"), 1: result("c4")})
    assert co.next_action(doc, state, None) == co.Action("finish", status="converged", code=co.EXIT_OK)


def test_a_shard_without_a_result_counts_its_clusters_failed():
    state = co.record_wave(fleet(max_failed=9), co.empty_state(), 1, {0: None, 1: result("c4")})
    clusters = state["waves"]["1"]["clusters"]
    assert clusters["c2"]["status"] == clusters["c3"]["status"] == outcome.FAILED
    assert "no result from shard 0 of wave 1" in clusters["c2"]["errors"][0]
    assert clusters["c4"]["status"] == outcome.CONVERGED


def test_a_failed_smoke_test_is_a_failed_cluster():
    r = result("c0")
    r["c0"]["smoke"] = [{"service": "default/m", "ok": False}]
    state = co.record_wave(fleet(), co.empty_state(), 0, {0: r, 1: result("c1")})
    assert state["halted_at"] == 0


def test_a_locked_canary_cannot_start():
    state = co.record_wave(fleet(), co.empty_state(), 0, {0: result("c0", status=outcome.LOCKED),
                                                          1: result("c1", status=outcome.LOCKED)})
    assert co.next_action(fleet(), state, None) == co.Action("finish", status="cannot-start",
                                                             code=co.EXIT_CANNOT_START)


def test_the_merged_report_lists_every_cluster_once_untouched_included():
    doc = fleet()
    state = co.record_wave(doc, co.empty_state(), 0, {0: result("c0"), 1: result("c1", status=outcome.FAILED)})
    merged = co.merged(doc, state, full={**result("c0"), **result("c1", status=outcome.FAILED)})
    assert sorted(merged) == ["c0", "c1", "c2", "c3", "c4"]
    assert {n: o.status for n, o in merged.items()} == {"c0": "converged", "c1": "failed", "c2": "untouched",
                                                         "c3": "untouched", "c4": "untouched"}
    assert merged["c2"].reason == "not touched: rollout halted after wave 0" and merged["c4"].wave == 1
    assert merged["c0"].steps == [{"name": "x"}]  # the full outcome from the shard's result
    assert "steps" not in state["waves"]["0"]["clusters"]["c0"]  # the state keeps a compact one
    rep = outcome.report("rollout", merged)
    assert sorted(rep["clusters"]) == ["c0", "c1", "c2", "c3", "c4"]


# --- the loop over an in-memory API -----------------------------------------------------------------------------------
class Api:
    """Just enough of knfleet.kube.client.Cluster: get / create / replace with resourceVersion preconditions. A wave
    Job finishes when it has been looked at `runs` times; finishing writes the shards' results as the pods do."""

    def __init__(self, doc: dict[str, Any], fail: set[str] = frozenset(), runs: int = 2) -> None:
        self.doc, self.fail, self.runs = doc, fail, runs
        self.objs: dict[tuple[str, str], dict[str, Any]] = {}
        self.rv = 0
        self.created: list[str] = []  # the wave Jobs the coordinator tried to create
        self.looks: dict[str, int] = {}
        self.conflicts_left = 0  # the next N replaces of the state answer 409 (someone else wrote it)
        self.stop_after: int | None = None  # raise Killed after this many writes (a coordinator pod killed)
        self.writes = 0
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(obj)

    def _written(self) -> None:
        self.writes += 1
        if self.stop_after is not None and self.writes >= self.stop_after:
            self.stop_after = None
            raise Killed()

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        obj = self.objs.get((kind, name))
        if kind == "Job" and obj is not None:
            self.looks[name] = self.looks.get(name, 0) + 1
            if self.looks[name] >= self.runs and not obj.get("status"):
                self._finish(obj)
        return copy.deepcopy(obj) if obj else None

    def _finish(self, job: dict[str, Any]) -> None:
        labels = job["metadata"]["labels"]
        wave, rollout = int(labels[jobs.WAVE_LABEL]), labels[jobs.ROLLOUT_LABEL]
        for i, members in enumerate(jobs.wave_of(self.doc, wave)["shards"]):
            got = {n: result(n, status=outcome.FAILED if n in self.fail else outcome.CONVERGED)[n] for n in members}
            name = jobs.rollout_result("f", rollout, wave, i)
            self.objs[("ConfigMap", name)] = self._bump({"metadata": {"name": name}, "data": {
                "outcome.json": json.dumps({"clusters": got})}})
        job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["name"])
        if obj["kind"] == "Job":  # every attempt, also one the API server refuses as AlreadyExists
            self.created.append(obj["metadata"]["name"])
        if key in self.objs:
            raise Conflict("mgmt", f"create {key}", 409, "AlreadyExists", "exists")
        self.objs[key] = self._bump(copy.deepcopy(obj))
        self._written()
        return self.objs[key]

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["name"])
        if self.conflicts_left:
            self.conflicts_left -= 1
            self.objs[key] = self._bump(copy.deepcopy(self.objs[key]))  # someone else's write
            raise Conflict("mgmt", "replace", 409, "Conflict", "the object has been modified")
        if obj["metadata"].get("resourceVersion") != self.objs[key]["metadata"]["resourceVersion"]:
            raise Conflict("mgmt", "replace", 409, "Conflict", "the object has been modified")
        self.objs[key] = self._bump(copy.deepcopy(obj))
        self._written()
        return self.objs[key]

    def patch(self, api_version: str, kind: str, name: str, namespace: str | None, body: Any) -> dict[str, Any]:
        obj = self.objs[(kind, name)]
        obj["spec"] = {**obj.get("spec", {}), **body["spec"]}
        self.patches.append((kind, name, body["spec"]))
        return self._bump(obj)

    def state(self) -> dict[str, Any]:
        return json.loads(self.objs[("ConfigMap", jobs.state_name("f", "r1"))]["data"]["state.json"])

    def report(self) -> dict[str, Any]:
        return json.loads(self.objs[("ConfigMap", jobs.state_name("f", "r1"))]["data"]["report.json"])


class Killed(Exception):
    pass


def run(api: Api) -> int:
    return co.coordinate(api, api.doc, "r1", "knfleet", "knfleet:t", poll=0, sleep=lambda s: None)


def test_the_loop_runs_every_wave_and_stores_the_report(capsys):
    api = Api(fleet())
    assert run(api) == co.EXIT_OK
    assert api.created == ["knfleet-f-r1-w0", "knfleet-f-r1-w1"]
    rep = api.report()
    assert rep["status"] == "converged" and sorted(rep["clusters"]) == ["c0", "c1", "c2", "c3", "c4"]
    assert rep["clusters"]["c2"]["steps"] == [{"name": "x"}]


def test_the_loop_halts_before_creating_the_next_wave_job(capsys):
    api = Api(fleet(), fail={"c1"})
    assert run(api) == co.EXIT_HALTED
    assert api.created == ["knfleet-f-r1-w0"]
    rep = api.report()
    assert rep["halted_at_wave"] == 0 and rep["clusters"]["c3"]["status"] == "untouched"


def test_a_conflicting_state_write_is_read_again(capsys):
    api = Api(fleet())
    api.conflicts_left = 3
    assert run(api) == co.EXIT_OK
    assert api.created == ["knfleet-f-r1-w0", "knfleet-f-r1-w1"]
    assert "reading it again" in capsys.readouterr().out


@pytest.mark.parametrize("stop_after", range(1, 12))
def test_stopped_after_any_write_it_resumes_without_creating_a_job_twice(capsys, stop_after):
    api = Api(fleet())
    api.stop_after = stop_after
    code = None
    for _ in range(3):  # the Job starts a new pod, which runs the same loop again
        try:
            code = run(api)
            break
        except Killed:
            continue
    assert code == co.EXIT_OK
    assert api.created == ["knfleet-f-r1-w0", "knfleet-f-r1-w1"]  # each wave's Job once, whatever the stop
    assert sorted(api.report()["clusters"]) == ["c0", "c1", "c2", "c3", "c4"]


def test_bad_arguments_cannot_start(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert co.main(str(tmp_path / "none.json"), "r1", "knfleet", "knfleet:t") == co.EXIT_CANNOT_START
    err = capsys.readouterr().err
    assert "--fleet-file" in err and "no such file" in err
    f = tmp_path / "fleet.json"
    f.write_text(json.dumps(fleet()))
    assert co.main(str(f), "R_1", "knfleet", "knfleet:t") == co.EXIT_CANNOT_START
    assert "--rollout = 'R_1' is not allowed" in capsys.readouterr().err


def scheduled_converge(api: Api, active: list[str], fleet_json: dict[str, Any] | None) -> None:
    api.objs[("CronJob", jobs.cronjob_name("f"))] = {"metadata": {"name": jobs.cronjob_name("f")},
                                                   "spec": {"suspend": True},
                                                   "status": {"active": [{"name": n} for n in active]}}
    if fleet_json is not None:
        api.objs[("ConfigMap", jobs.base("f"))] = {"metadata": {"name": jobs.base("f")},
                                                   "data": {"fleet.json": json.dumps(fleet_json)}}


def test_the_scheduled_converge_is_held_until_its_runs_end_and_resumed_only_after_a_converged_rollout(capsys):
    """Review finding: the converge CronJob pushed a rollout's desired state to every cluster at once, and its runs
    held the clusters' locks against the waves. The coordinator holds it (suspended, its running Job waited for),
    resumes it when the rollout converged, and leaves it suspended after a halt."""
    api = Api(fleet())
    scheduled_converge(api, ["knfleet-f-converge-1"], api.doc)
    looks = []

    def sleep(_: float) -> None:  # the converge's running Job ends after two looks
        looks.append(1)
        if len(looks) == 2:
            api.objs[("CronJob", jobs.cronjob_name("f"))]["status"]["active"] = []

    assert co.coordinate(api, api.doc, "r1", "knfleet", "knfleet:t", poll=0, sleep=sleep) == co.EXIT_OK
    assert len(looks) >= 2 and api.created[0] == "knfleet-f-r1-w0"
    assert api.patches == [("CronJob", "knfleet-f-converge", {"suspend": False})]  # held already; resumed at the end
    halted = Api(fleet(), fail={"c1"})
    scheduled_converge(halted, [], halted.doc)
    assert run(halted) == co.EXIT_HALTED
    assert halted.patches == [] and "stays suspended" in capsys.readouterr().out
    other = Api(fleet())  # converged, but the CronJob's fleet.json is not this rollout's: not resumed
    scheduled_converge(other, [], {"fleet": "f", "hosts": {}})
    assert run(other) == co.EXIT_OK and other.patches == []
    running = Api(fleet())  # not suspended yet (applied before): suspended first
    scheduled_converge(running, [], running.doc)
    running.objs[("CronJob", "knfleet-f-converge")]["spec"]["suspend"] = False
    assert run(running) == co.EXIT_OK
    assert [p[2] for p in running.patches] == [{"suspend": True}, {"suspend": False}]


def test_a_management_cluster_blip_is_looked_at_again_not_a_new_pod(capsys):
    """Review finding: any failed request to the management cluster ended the coordinator pod (exit 4), and
    seven of them in a rollout of hours failed its Job. A 5xx, 429 or no answer is now looked at again."""
    from knfleet.kube.client import KubeError, Unreachable

    api = Api(fleet())
    real_get, blips = api.get, [Unreachable("mgmt", "get", 0, "", "refused"),
                                KubeError("mgmt", "get", 503, "ServiceUnavailable", "etcd timeout")]

    def get(*args: Any, **kw: Any) -> Any:
        if blips and args[1] == "Job":
            raise blips.pop()
        return real_get(*args, **kw)

    api.get = get  # type: ignore[method-assign]
    assert run(api) == co.EXIT_OK and not blips
    assert "trying again (1/" in capsys.readouterr().out
    refused = Api(fleet())
    refused.get = lambda *a, **k: (_ for _ in ()).throw(KubeError("mgmt", "get", 403, "Forbidden", "no"))  # type: ignore[method-assign]
    with pytest.raises(KubeError):
        run(refused)
