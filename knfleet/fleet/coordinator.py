"""`knfleet coordinate`: a rollout's waves in order, each as an Indexed Job on the management cluster, resumable.

The decisions are a pure state machine (`next_action`, `record_wave`, `merged`): given the rollout's state (the
ConfigMap `knfleet-<fleet>-rollout-<NAME>-state`, key `state.json`) and what is observed on the cluster (the
current wave's Job, the shards' result ConfigMaps), what to do next. The loop (`coordinate`) only reads, acts
and writes the state back with its resourceVersion (a conflict: read again, decide again). A coordinator killed
at any point and started again by its Job resumes: waves recorded as passed (or failed within the budget) are
skipped, a wave Job that exists is waited for and never created again (its finished indexes do not run again),
and results are read from the shards' ConfigMaps. Halting follows `knfleet rollout`: more than max_failed failed
clusters across the rollout halts it before the next wave's Job is created (exit 2).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from knfleet.errors import InputError
from knfleet.fleet import jobs
from knfleet.report import outcome
from knfleet.report.outcome import ClusterOutcome

EXIT_OK, EXIT_SOME_FAILED, EXIT_HALTED, EXIT_CANNOT_START = 0, 1, 2, 3
EXIT_RETRY = 4  # the management cluster failed us (or a crash): the Job's next pod resumes
PASSED, FAILED, RUNNING = "passed", "failed", "running"
# what the state keeps of a cluster's outcome (the full one stays in its shard's result ConfigMap): a state of a
# thousand clusters must stay well below a ConfigMap's 1 MiB
COMPACT = ("cluster", "host", "status", "wave", "reason", "errors", "failures", "smoke", "smoke_after_bake",
           "duration_s", "knative_version")
REPORT_LIMIT = 900_000  # bytes of report.json above which it is stored without the bulky fields


def say(msg: str) -> None:
    print(f"[coordinate {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the state machine (pure) -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobView:
    """What the coordinator sees of a wave's Job."""

    exists: bool
    finished: bool = False  # a Complete or Failed condition
    succeeded: bool = False


@dataclass(frozen=True)
class Action:
    kind: str  # create | wait | collect | finish
    wave: int | None = None
    max_failed_indexes: int = 0  # create: the Job's maxFailedIndexes (the remaining budget, capped)
    status: str = ""  # finish: converged | some-failed | halted | cannot-start
    code: int = 0  # finish: the exit code


def empty_state() -> dict[str, Any]:
    return {"waves": {}, "halted_at": None}


def wave_numbers(doc: dict[str, Any]) -> list[int]:
    return sorted(w["wave"] for w in doc["waves"])


def wave_members(doc: dict[str, Any], wave: int) -> list[str]:
    return [c for s in jobs.wave_of(doc, wave)["shards"] for c in s]


def failures(state: dict[str, Any]) -> int:
    """Failed clusters across the waves recorded so far."""
    return sum(1 for w in state["waves"].values() if w.get("status") in (PASSED, FAILED)
               for o in (w.get("clusters") or {}).values() if failed(o))


def failed(o: dict[str, Any]) -> bool:
    status = o.get("status")
    smoke_ok = all(s.get("ok", True) for s in [*(o.get("smoke") or []), *(o.get("smoke_after_bake") or [])])
    return status not in (outcome.CONVERGED, outcome.CHANGED) or not smoke_ok


def current_wave(doc: dict[str, Any], state: dict[str, Any]) -> int | None:
    """The first wave not yet recorded as passed or failed (None: every wave is)."""
    for w in wave_numbers(doc):
        if state["waves"].get(str(w), {}).get("status") not in (PASSED, FAILED):
            return w
    return None


def final(doc: dict[str, Any], state: dict[str, Any]) -> tuple[str, int]:
    """The rollout's status and exit code, as `knfleet rollout` says them."""
    halted = state.get("halted_at")
    if halted is not None:
        first = wave_numbers(doc)[0]
        canary = state["waves"].get(str(first), {}).get("clusters") or {}
        if halted == first and canary and all(o.get("status") == outcome.LOCKED for o in canary.values()):
            return "cannot-start", EXIT_CANNOT_START
        return "halted", EXIT_HALTED
    if failures(state):
        return "some-failed", EXIT_SOME_FAILED
    return "converged", EXIT_OK


def next_action(doc: dict[str, Any], state: dict[str, Any], job: JobView | None) -> Action:
    """What to do next, given the state and the current wave's Job (None: not looked at, as when no wave is left).

    halted or no wave left → finish; the current wave's Job absent → create it (maxFailedIndexes: the failures
    still allowed, capped to its shards - 1); present and running → wait; finished → collect its results."""
    if state.get("halted_at") is not None:
        status, code = final(doc, state)
        return Action("finish", status=status, code=code)
    wave = current_wave(doc, state)
    if wave is None:
        status, code = final(doc, state)
        return Action("finish", status=status, code=code)
    if job is None or not job.exists:
        budget = max(0, int(doc.get("max_failed", 0)) - failures(state))
        shards = len(jobs.wave_of(doc, wave)["shards"])
        return Action("create", wave, max_failed_indexes=max(0, min(budget, shards - 1)))
    if not job.finished:
        return Action("wait", wave)
    return Action("collect", wave)


def wave_outcomes(doc: dict[str, Any], wave: int, shard_results: dict[int, dict[str, Any] | None]
                  ) -> dict[str, dict[str, Any]]:
    """Every cluster of the wave from its shard's result (outcome.json's clusters); a shard without a result (its
    pod failed before writing it, or never ran) counts each of its clusters failed."""
    out: dict[str, dict[str, Any]] = {}
    for i, members in enumerate(jobs.wave_of(doc, wave)["shards"]):
        got = shard_results.get(i)
        for name in members:
            o = (got or {}).get(name)
            if o is None:
                why = (f"no result from shard {i} of wave {wave} (its pod failed before writing it, or the Job "
                       "stopped it)")
                o = ClusterOutcome(name, outcome.FAILED, host=f"@kube/{name}", wave=wave, errors=[why],
                                   failures=[{"step": "shard", "reason": "Failed", "message": why}]).as_dict()
            out[name] = {**o, "wave": wave}
    return out


def record_wave(doc: dict[str, Any], state: dict[str, Any], wave: int,
                shard_results: dict[int, dict[str, Any] | None]) -> dict[str, Any]:
    """The state after collecting `wave` (a new dict): the wave passed or failed with its clusters (compact), and
    `halted_at` when the rollout's failures now exceed max_failed and a later wave remains unrun or not."""
    clusters = wave_outcomes(doc, wave, shard_results)
    new = {"waves": {**state["waves"]}, "halted_at": state.get("halted_at")}
    bad = [n for n, o in clusters.items() if failed(o)]
    new["waves"][str(wave)] = {"status": FAILED if bad else PASSED,
                               "clusters": {n: compact(o) for n, o in clusters.items()}}
    if failures(new) > int(doc.get("max_failed", 0)):
        new["halted_at"] = wave
    return new


def compact(o: dict[str, Any]) -> dict[str, Any]:
    out = {k: o[k] for k in COMPACT if k in o}
    for k in ("errors", "failures"):
        if k in out:
            out[k] = list(out[k])[:2]
    return out


def mark_running(state: dict[str, Any], wave: int) -> dict[str, Any]:
    waves = {**state["waves"]}
    if waves.get(str(wave), {}).get("status") not in (PASSED, FAILED):
        waves[str(wave)] = {"status": RUNNING, "clusters": {}}
    return {**state, "waves": waves}


def merged(doc: dict[str, Any], state: dict[str, Any],
           full: dict[str, dict[str, Any]] | None = None) -> dict[str, ClusterOutcome]:
    """Every cluster of the fleet exactly once: its recorded outcome (the full one from its shard's result when
    given), else UNTOUCHED (its wave never ran: halted before it)."""
    halted = state.get("halted_at")
    out: dict[str, ClusterOutcome] = {}
    for w in wave_numbers(doc):
        recorded = state["waves"].get(str(w), {})
        done = recorded.get("status") in (PASSED, FAILED)
        for name in wave_members(doc, w):
            if done and name in (recorded.get("clusters") or {}):
                o = (full or {}).get(name) or recorded["clusters"][name]
                fields = set(ClusterOutcome.__dataclass_fields__)
                out[name] = ClusterOutcome(**{**{k: v for k, v in o.items() if k in fields}, "wave": w})
            else:
                reason = f"not touched: rollout halted after wave {halted}" if halted is not None else "not run"
                out[name] = ClusterOutcome(name, outcome.UNTOUCHED, host=f"@kube/{name}", wave=w, reason=reason)
    return out


# --- cluster I/O (thin) -----------------------------------------------------------------------------------------------
class Store:
    """The rollout's state ConfigMap, read and written with its resourceVersion."""

    def __init__(self, mgmt: Any, namespace: str, fleet: str, rollout: str) -> None:
        self.mgmt, self.namespace, self.fleet, self.rollout = mgmt, namespace, fleet, rollout
        self.name = jobs.state_name(fleet, rollout)

    def read(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        cm = self.mgmt.get("v1", "ConfigMap", self.name, self.namespace)
        if cm is None:
            return empty_state(), None
        try:
            state = json.loads((cm.get("data") or {}).get("state.json") or "null") or empty_state()
            if not isinstance(state.get("waves"), dict):
                raise ValueError("no waves")
        except (ValueError, AttributeError) as err:
            raise InputError(f"the state ConfigMap {self.namespace}/{self.name} holds no rollout state ({err}); "
                             "delete it to start the rollout over") from None
        return state, cm

    def write(self, state: dict[str, Any], cm: dict[str, Any] | None, report: dict[str, Any] | None = None) -> None:
        """Create, or update with cm's resourceVersion as a precondition (raises Conflict when someone wrote it
        since it was read)."""
        data = {**((cm or {}).get("data") or {}), "state.json": json.dumps(state)}
        if report is not None:
            text = json.dumps(report)
            if len(text) > REPORT_LIMIT:  # the full outcomes stay in the shards' result ConfigMaps
                text = json.dumps({**report, "compact": True,
                                   "clusters": {n: compact(o) for n, o in report["clusters"].items()}})
            data["report.json"] = text
        if cm is None:
            self.mgmt.create({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": self.name, "namespace": self.namespace,
                                           "labels": {**jobs.MANAGED, jobs.FLEET_LABEL: self.fleet,
                                                      jobs.ROLLOUT_LABEL: self.rollout}},
                              "data": data})
        else:
            self.mgmt.replace({**cm, "data": data})


def job_view(mgmt: Any, namespace: str, name: str) -> JobView:
    job = mgmt.get("batch/v1", "Job", name, namespace)
    if job is None:
        return JobView(False)
    conds = {c.get("type"): c.get("status") for c in (job.get("status") or {}).get("conditions") or []}
    return JobView(True, conds.get("Complete") == "True" or conds.get("Failed") == "True",
                   conds.get("Complete") == "True")


def read_results(mgmt: Any, namespace: str, doc: dict[str, Any], rollout: str, wave: int
                 ) -> dict[int, dict[str, Any] | None]:
    out: dict[int, dict[str, Any] | None] = {}
    for i in range(len(jobs.wave_of(doc, wave)["shards"])):
        cm = mgmt.get("v1", "ConfigMap", jobs.rollout_result(doc["fleet"], rollout, wave, i), namespace)
        try:
            out[i] = json.loads((cm.get("data") or {})["outcome.json"])["clusters"] if cm else None
        except (KeyError, ValueError, TypeError):
            out[i] = None
    return out


def coordinate(mgmt: Any, doc: dict[str, Any], rollout: str, namespace: str, image: str,
               poll: float = 2.0, sleep: Any = time.sleep) -> int:
    from knfleet.fleet.rollout import print_table
    from knfleet.kube.client import Conflict, KubeError

    store = Store(mgmt, namespace, doc["fleet"], rollout)
    hold_converge(mgmt, namespace, doc["fleet"], poll, sleep)
    blips = 0
    say(f"rollout {rollout} of fleet {doc['fleet']}: " + "; ".join(
        f"wave {w}: {len(jobs.wave_of(doc, w)['shards'])} shard(s), {len(wave_members(doc, w))} cluster(s)"
        for w in wave_numbers(doc)))
    while True:
        try:
            state, cm = store.read()
            wave = current_wave(doc, state)
            job = None
            if wave is not None and state.get("halted_at") is None:
                job = job_view(mgmt, namespace, jobs.wave_job_name(doc["fleet"], rollout, wave))
            action = next_action(doc, state, job)
            if action.kind == "create":
                assert action.wave is not None
                obj = jobs.wave_job(doc, action.wave, rollout, namespace, image, action.max_failed_indexes)
                try:
                    mgmt.create(obj)
                    say(f"wave {action.wave}: created Job {obj['metadata']['name']}")
                except Conflict:  # AlreadyExists: created by an earlier coordinator pod; wait for it
                    pass
                store.write(mark_running(state, action.wave), cm)
            elif action.kind == "wait":
                sleep(poll)
            elif action.kind == "collect":
                assert action.wave is not None
                new = record_wave(doc, state, action.wave,
                                  read_results(mgmt, namespace, doc, rollout, action.wave))
                store.write(new, cm)
                w = new["waves"][str(action.wave)]
                bad = sorted(n for n, o in w["clusters"].items() if failed(o))
                say(f"wave {action.wave}: " + (f"FAILED: {', '.join(bad)}" if bad else "passed")
                    + (f"; halted (more than {doc.get('max_failed', 0)} failed)" if new["halted_at"] is not None
                       else ""))
            else:
                full = {}
                for w in wave_numbers(doc):
                    if state["waves"].get(str(w), {}).get("status") in (PASSED, FAILED):
                        for got in read_results(mgmt, namespace, doc, rollout, w).values():
                            full.update(got or {})
                results = merged(doc, state, full)
                rep = outcome.report("rollout", results, fleet=doc["fleet"], rollout=rollout, status=action.status,
                                     exit_code=action.code, halted_at_wave=state.get("halted_at"),
                                     max_failed_clusters=int(doc.get("max_failed", 0)))
                store.write(state, cm, report=rep)
                if action.code == 0:
                    release_converge(mgmt, namespace, doc)
                else:
                    say(f"the scheduled converge ({jobs.cronjob_name(doc['fleet'])}) stays suspended: it would push "
                        "this rollout's desired state to every cluster at once; fix, then roll out again or apply "
                        "`knfleet jobs` without --rollout to resume it")
                print_table(results)
                print(json.dumps(rep, indent=2), flush=True)
                say(f"rollout {action.status} (exit {action.code}); report in ConfigMap {namespace}/{store.name} "
                    "key report.json")
                return action.code
        except Conflict:
            say("the state changed while it was being written: reading it again")
            continue
        except KubeError as err:  # the management cluster busy or briefly away: look again, not a new pod each time
            if not transient(err) or blips >= MAX_BLIPS:
                raise
            blips += 1
            say(f"the management cluster did not answer ({err}); trying again ({blips}/{MAX_BLIPS})")
            sleep(poll)
            continue
        blips = 0


MAX_BLIPS = 60  # consecutive failed looks at the management cluster (a poll apart) before the pod gives up


def transient(err: Exception) -> bool:
    """An answer that says "try again" (429, 5xx) or none at all: worth another look, not a new pod."""
    from knfleet.kube.client import TRANSIENT, Unreachable

    return isinstance(err, Unreachable) or getattr(err, "status", 0) in TRANSIENT


def hold_converge(mgmt: Any, namespace: str, fleet: str, poll: float, sleep: Any = time.sleep,
                  timeout: float = 3600) -> None:
    """The scheduled converge suspended (it would push this rollout's desired state to every cluster at once, and
    its runs would hold the clusters' locks against the waves); then wait for its running Jobs to end."""
    name = jobs.cronjob_name(fleet)
    cj = mgmt.get("batch/v1", "CronJob", name, namespace)
    if cj is None:
        return
    if not (cj.get("spec") or {}).get("suspend"):
        mgmt.patch("batch/v1", "CronJob", name, namespace, {"spec": {"suspend": True}})
        say(f"the scheduled converge {name} suspended while the rollout runs")
    waited = 0.0
    while (active := ((mgmt.get("batch/v1", "CronJob", name, namespace) or {}).get("status") or {}).get("active")):
        if waited == 0:
            say(f"waiting for the scheduled converge's running Job(s) to end: "
                f"{', '.join(a.get('name', '?') for a in active)}")
        if waited >= timeout:
            raise jobs.JobsError(f"the scheduled converge {name} still runs after {timeout:.0f}s; the rollout did not "
                                 "start (no wave touched)")
        sleep(poll)
        waited += poll


def release_converge(mgmt: Any, namespace: str, doc: dict[str, Any]) -> None:
    """After a converged rollout: the scheduled converge resumes, if it converges what this rollout rolled out."""
    name = jobs.cronjob_name(doc["fleet"])
    cj = mgmt.get("batch/v1", "CronJob", name, namespace)
    if cj is None or not (cj.get("spec") or {}).get("suspend"):
        return
    cm = mgmt.get("v1", "ConfigMap", jobs.base(doc["fleet"]), namespace) or {}
    try:
        same = json.loads((cm.get("data") or {}).get("fleet.json") or "null") == doc
    except ValueError:
        same = False
    if not same:
        say(f"the scheduled converge {name} stays suspended: its desired state is not this rollout's; apply "
            "`knfleet jobs` without --rollout to resume it")
        return
    mgmt.patch("batch/v1", "CronJob", name, namespace, {"spec": {"suspend": False}})
    say(f"the scheduled converge {name} resumed (it converges what this rollout rolled out)")


def main(fleet_file: str, rollout: str, namespace: str, image: str, poll: float = 2.0) -> int:
    from knfleet.kube.client import KubeError

    try:
        doc = jobs.load_fleet(fleet_file)
        jobs.check_name("--rollout", rollout, 63)
        jobs.check_name("--namespace", namespace, 63)
        if not doc["waves"]:
            raise jobs.JobsError(f"--fleet-file = {fleet_file!r} has no waves")
        mgmt = jobs.management(None)
    except InputError as err:
        print(f"knfleet coordinate: {err}", file=sys.stderr)
        return EXIT_CANNOT_START
    try:
        return coordinate(mgmt, doc, rollout, namespace, image, poll)
    except InputError as err:
        print(f"knfleet coordinate: {err}", file=sys.stderr)
        return EXIT_CANNOT_START
    except KubeError as err:  # the management cluster: the Job starts a new pod (backoffLimit), which resumes
        print(f"knfleet coordinate: {err}; the Job's next pod resumes", file=sys.stderr)
        return EXIT_RETRY
    except Exception:  # noqa: BLE001 - a crash: the next pod resumes from the state (the traceback says why)
        import traceback

        traceback.print_exc()
        return EXIT_RETRY
    finally:
        mgmt.close()
