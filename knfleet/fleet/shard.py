"""`knfleet shard`: one index of an Indexed Job (knfleet.fleet.jobs) converges its shard of the fleet.

The shard's clusters become a temporary pyinfra inventory (their host data from fleet.json, each kubeconfig the
mounted `<cluster>.kubeconfig`), the deploy runs on them through `knfleet.fleet.rollout.run_wave` (the same
code path as `knfleet rollout`), and the outcome per cluster is written to a ConfigMap on the management cluster
(`outcome.json`), which the coordinator reads. Exit 0 when every cluster of the shard converged, 1 otherwise
(2: bad arguments, nothing run).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from knfleet.errors import InputError
from knfleet.fleet import jobs
from knfleet.report import outcome
from knfleet.report.outcome import ClusterOutcome
from knfleet.run import stopping

GROUP = "knfleet_shard"  # no group_data/<GROUP>.py: the hosts carry their merged data already


def say(msg: str) -> None:
    print(f"[shard {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def members(doc: dict[str, Any], kind: str, index: int, wave: int | None) -> list[str]:
    """The clusters of shard `index` (of the converge shards, or of rollout wave `wave`)."""
    if kind == "converge":
        shards = doc["converge_shards"]
    elif kind == "rollout":
        if wave is None:
            raise jobs.JobsError("--kind rollout needs --wave W")
        shards = jobs.wave_of(doc, wave)["shards"]
    else:
        raise jobs.JobsError(f"--kind = {kind!r} is not allowed; use converge or rollout")
    if not 0 <= index < len(shards):
        raise jobs.JobsError(f"--index = {index} is not allowed; this {kind} has shards 0-{len(shards) - 1}")
    return list(shards[index])


def result_name(doc: dict[str, Any], kind: str, index: int, run: str, wave: int | None,
                rollout: str | None) -> str:
    if kind == "converge":
        return jobs.converge_result(doc["fleet"], run, index)
    if not rollout:
        raise jobs.JobsError("--kind rollout needs --rollout NAME (its results are named after the rollout)")
    return jobs.rollout_result(doc["fleet"], rollout, wave or 0, index)


def inventory_text(doc: dict[str, Any], names: list[str], kubeconfigs: Path) -> str:
    """A pyinfra inventory module for the shard's clusters (JSON inside, so no value is ever code)."""
    hosts = [(f"@kube/{n}", {**doc["hosts"][n], "kubeconfig": str(kubeconfigs / f"{n}.kubeconfig")}) for n in names]
    return (f'"""knfleet shard: {len(names)} cluster(s) of fleet {doc["fleet"]} (generated)."""\n'
            "import json\n\n"
            f"{GROUP} = [tuple(h) for h in json.loads({json.dumps(json.dumps(hosts))})]\n")


def result_configmap(name: str, namespace: str, doc: dict[str, Any], run: str,
                     results: dict[str, ClusterOutcome], kind: str, wave: int | None,
                     rollout: str | None) -> dict[str, Any]:
    from knfleet.fleet.coordinator import REPORT_LIMIT, compact

    labels = {**jobs.MANAGED, jobs.FLEET_LABEL: doc["fleet"], jobs.RUN_LABEL: run}
    text = json.dumps({"clusters": {n: o.as_dict() for n, o in results.items()}})
    if len(text) > REPORT_LIMIT:  # a ConfigMap holds 1 MiB: keep each cluster's status, errors and smoke tests
        text = json.dumps({"compact": True, "clusters": {n: compact(o.as_dict()) for n, o in results.items()}})
    if kind == "rollout":
        labels.update({jobs.ROLLOUT_LABEL: rollout or "", jobs.WAVE_LABEL: str(wave)})
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    job_uid = os.environ.get("KNFLEET_JOB_UID")
    if kind == "converge" and job_uid:  # goes with its Job (the CronJob's history limits), not kept for ever
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": run, "uid": job_uid}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"outcome.json": text}}


def write_result(mgmt: Any, obj: dict[str, Any], tries: int = 6, sleep: Any = time.sleep) -> None:
    """The result written, trying again on an answer that says "try again" or none (a lost result counts every
    cluster of the shard failed, converged ones included): about a minute in all, within the pod's grace period."""
    from knfleet.fleet.coordinator import transient

    for attempt in range(tries):
        try:
            mgmt.apply(obj)
            return
        except Exception as err:
            if attempt == tries - 1 or not transient(err):
                raise
            say(f"cannot write the result yet ({err}); trying again")
            sleep(min(2.0 * 2 ** attempt, 20.0))


def failed_all(names: list[str], doc: dict[str, Any], why: str, wave: int | None) -> dict[str, ClusterOutcome]:
    return {n: ClusterOutcome(n, outcome.FAILED, host=f"@kube/{n}", wave=wave, errors=[why],
                              failures=[{"step": "shard", "reason": "Failed", "message": why}]) for n in names}


def converge(doc: dict[str, Any], names: list[str], kubeconfigs: Path, label: str,
             wave: int | None, deploy_file: str = "deploy.py") -> dict[str, ClusterOutcome]:
    """deploy.py on the shard's clusters (one pyinfra run); each cluster's outcome, every member present."""
    from knfleet.fleet import rollout

    missing = [n for n in names if not (kubeconfigs / f"{n}.kubeconfig").is_file()]
    results = failed_all(missing, doc, f"no kubeconfig {kubeconfigs}/<cluster>.kubeconfig mounted (its shard's "
                                       "Secret)", wave)
    todo = [n for n in names if n not in missing]
    if os.getcwd() not in sys.path:  # as pyinfra's CLI and `knfleet rollout`: deploy.py imports tasks/ beside it
        sys.path.append(os.getcwd())
    if todo:
        with tempfile.TemporaryDirectory(prefix="knfleet-shard-") as tmp:
            inv_file = Path(tmp) / "shard_inventory.py"
            inv_file.write_text(inventory_text(doc, todo, kubeconfigs))
            t0 = time.monotonic()
            try:
                got = rollout.run_wave(str(inv_file), deploy_file, [f"@kube/{n}" for n in todo],
                                       dict(doc.get("data") or {}), label)
            except rollout.CannotStart as err:
                got = failed_all(todo, doc, str(err), wave)
            except Exception as err:  # noqa: BLE001 - whatever broke, the shard's result says so for each cluster
                cause = getattr(err, "args", [None])[0] if type(err).__name__ == "UnexpectedExternalError" else err
                say(f"{label}: the run failed: {type(cause).__name__}: {cause}")
                got = failed_all(todo, doc, f"the shard's run failed: {type(cause).__name__}: {cause}", wave)
            for n in todo:
                o = got.get(n) or ClusterOutcome(n, outcome.FAILED, host=f"@kube/{n}",
                                                 errors=["no result from pyinfra (could not connect?)"])
                o.wave = wave
                if o.duration_s is None:
                    o.duration_s = round(time.monotonic() - t0, 1)
                results[n] = o
    return {n: results[n] for n in names}


def failed(o: ClusterOutcome) -> bool:
    return not o.ok or o.status not in (outcome.CONVERGED, outcome.CHANGED)


def run(fleet_file: str, kind: str, index: int, kubeconfigs: str, run_name: str, namespace: str,
        wave: int | None = None, rollout_name: str | None = None, deploy_file: str = "deploy.py") -> int:
    from knfleet.fleet.rollout import print_table
    from knfleet.kube.client import KubeError

    try:
        doc = jobs.load_fleet(fleet_file)
        names = members(doc, kind, index, wave)
        name = result_name(doc, kind, index, run_name, wave, rollout_name)
        jobs.check_name("--namespace", namespace, 63)
        if not run_name:
            raise jobs.JobsError("--run = '' is not allowed; use the Job's name ($(KNFLEET_RUN))")
    except InputError as err:
        print(f"knfleet shard: {err}", file=sys.stderr)
        return 2
    label = f"{kind} shard {index}" + (f" of wave {wave}" if wave is not None else "")
    stopping.on_sigterm()  # the Job controller ending this pod: each cluster stops before its next step, locks freed
    say(f"{label}: {', '.join(names)}")
    results = converge(doc, names, Path(kubeconfigs), label, wave, deploy_file)
    print_table(results)
    bad = [n for n, o in results.items() if failed(o)]
    try:
        mgmt = jobs.management(None)
        try:
            write_result(mgmt, result_configmap(name, namespace, doc, run_name, results, kind, wave, rollout_name))
        finally:
            mgmt.close()
    except (KubeError, InputError) as err:
        say(f"cannot write the result ConfigMap {namespace}/{name}: {err}")
        return 1
    say(f"{label}: result in ConfigMap {namespace}/{name}; "
        + (f"FAILED: {', '.join(bad)}" if bad else "every cluster converged"))
    return 1 if bad else 0
