"""A new model version rolled out progressively on one cluster (the rules are knfleet.desired.progressive's):

    look       the Service's tags: `stable` already the desired revision -> nothing to do (no change); a version
               rolled back before -> the cluster fails at once, unless `rollout_retry` names it
    GPUs       free GPUs for the new revision's pods? else surge by one (the new one starts with one pod, the running
               one gives up pods as traffic moves); not even one pod -> stop before any change, per node
    dark       the new revision at 0 % under tag `candidate`, Ready, checked through its own host beside `stable`
    steps      traffic moved step by step; each step held `bake` while both versions are checked in the same step
    promote    stable=<new> 100 %, previous=<old> 0 % with its min-scale dropped (its GPUs released)
    roll back  at the first failed check: stable 100 %, the candidate kept at 0 % under its tag

Every change is a server-side apply of the whole Service (template, traffic and the rollout's state in the
annotation knfleet.dev/rollout), so a run killed at any moment leaves a state the next run goes on from.
Traffic never goes to a revision that is not Ready, and the stable revision is never deleted.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests
from pyinfra.api import operation

from knfleet.desired import capacity
from knfleet.desired import plan as p
from knfleet.desired import progressive as pr
from knfleet.errors import KnfleetError, NotReadyError, Reason
from knfleet.kube import diff, readiness, wait
from knfleet.kube.client import Cluster, KubeError
from knfleet.report.records import ClusterRun
from knfleet.run import coldstart, services, smoke
from knfleet.run.context import cluster as current_cluster
from knfleet.run.context import command, executing, fail, record, say, state, unchanged

KSVC = ("serving.knative.dev/v1", "Service")
REVISION = ("serving.knative.dev/v1", "Revision")
PA = ("autoscaling.internal.knative.dev/v1alpha1", "PodAutoscaler")
MIN, MAX, INITIAL = "autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale", \
    "autoscaling.knative.dev/initial-scale"


# Knative's reasons for a revision that will not become Ready (the others, say Unschedulable, may clear)
PERMANENT = ("ProgressDeadlineExceeded", "ContainerMissing")


class RolledBack(KnfleetError):
    """A new version failed a check and was rolled back (the running version kept all traffic)."""

    code = Reason.ROLLOUT_CHECK_FAILED


# --- the operation ---------------------------------------------------------------------------------------------------
@operation()
def rollout(step: p.Rollout):
    """Look at the Service's tags and state; roll out only when the desired revision is not the stable one. A
    converged Service costs the one read every run does (the apply stage's lists)."""
    t0 = time.monotonic()
    cluster = current_cluster()
    ns, name = step.ref.split("/", 1)
    try:
        live = next((o for o in cluster.list(*KSVC) if o["metadata"]["name"] == name
                     and o["metadata"].get("namespace") == ns), None) if cluster.has(*KSVC) else None
    except KubeError as err:
        yield fail(step.title, f"cannot read {step.ref}: {err}", err.code)
        return
    want = pr.template_name(step.service)
    if live is not None:
        same = pr.steady(step.service, live)
        st = pr.state_of(live)
        if same is not None:
            try:
                drifted = diff.drift(cluster, (same,), state().records(), learn=executing())
            except KubeError as err:
                yield fail(step.title, f"cannot compare {step.ref} with the cluster: {err}", err.code)
                return
            if not drifted:
                unchanged(step.title, f"{step.ref}: stable on {want}, nothing to roll out", t0)
                return
            say(f"{step.ref}: stable on {want}; its Service differs ({drifted[0]}): applying it as it is")
            yield command(step.title, apply_steady, cluster, same)
            return
        if st is not None and st.phase == pr.ROLLED_BACK and st.candidate == want and not step.retry:
            yield fail(step.title, f"{step.ref}: version {want} was rolled back ({st.reason}); change the model for "
                                   f"a new version, or roll this one out again with --data rollout_retry={name}",
                       Reason.ROLLOUT_CHECK_FAILED)
            return
    stable = pr.versions(live)[0] if live else ""
    if step.notes:
        say(step.notes)
    say(f"{step.ref}: " + (f"first version {want}" if not live else f"rolling out {want} beside {stable or '?'} "
                            f"({', '.join(f'{x} %' for x in step.settings.steps)})"))
    yield command(step.title, lambda: Roller(cluster, step).run())


def apply_steady(cluster: Cluster, obj: dict[str, Any]) -> list[str]:
    live = cluster.apply(obj)
    state().records().remember(obj, live)
    state().records().save(cluster)
    return [f"Service/{readiness.name_of(obj)}"]


@operation()
def roll_back(step: p.Rollback):
    """The previous version (tag `previous`) back at 100 % as `stable`, its min-scale restored; the version it
    replaces kept at 0 % under tag `candidate` (a later run does not roll it out again unless told)."""
    cluster = current_cluster()
    ns, name = step.ref.split("/", 1)
    live = cluster.get(*KSVC, name, ns) if cluster.has(*KSVC) else None
    previous = pr.versions(live)[1] if live else ""
    if not previous:
        yield fail(step.title, f"{step.ref}: no previous version to roll back to (tag `previous` is set when a "
                               "progressive rollout promotes a new version)", Reason.ROLLOUT_FAILED)
        return
    yield command(step.title, lambda: Roller(cluster, step).back_by_hand())


# --- the work --------------------------------------------------------------------------------------------------------
class Roller:
    """One rollout of one Service, from wherever its state says it is."""

    def __init__(self, cluster: Cluster, step: p.Rollout | p.Rollback) -> None:
        self.cluster, self.step = cluster, step
        self.ns, self.name = step.ref.split("/", 1)
        self.record: ClusterRun = record()
        self.entry: services.EntryPoints | None = None
        self.report: dict[str, Any] = {"service": step.ref}

    # --- reading and writing the Service ----------------------------------------------------------------------------
    def live(self) -> dict[str, Any]:
        obj = self.cluster.get(*KSVC, self.name, self.ns)
        if obj is None:
            raise KnfleetError(f"{self.step.ref}: the Knative Service is gone", code=Reason.ROLLOUT_FAILED)
        return obj

    def apply(self, service: dict[str, Any], entries: list[dict[str, Any]], st: pr.State) -> None:
        obj = pr.with_traffic(pr.as_stored(service, self.cluster.get(*KSVC, self.name, self.ns)), entries, st)
        live = self.cluster.apply(obj)
        notes = state().records()
        notes.remember(obj, live)
        try:
            notes.save(self.cluster)
        except KubeError:
            pass

    def routed(self, want: dict[str, int], timeout: float) -> dict[str, Any]:
        """Until the Route serves exactly `want` (percent per revision) for the Service's current generation."""
        seen: dict[str, Any] = {}

        def look() -> tuple[bool, str]:
            live = self.live()
            st = live.get("status") or {}
            now = {r: n for r, n in pr.serving(st.get("traffic") or []).items() if n}
            seen["svc"] = live
            ok = readiness.is_true(live, "Ready") and st.get("observedGeneration") == live["metadata"].get(
                "generation") and now == {r: n for r, n in want.items() if n}
            return ok, f"{self.step.ref}: routes {now or 'nothing'}, want {want}; " + readiness.service_problem(live)
        try:
            wait.until(self.cluster, look, timeout, interval=0.5)
        except NotReadyError as err:
            raise NotReadyError(f"traffic not moved: {err}") from None
        return seen["svc"]

    def revision_ready(self, revision: str, timeout: float) -> None:
        """Until the new revision is Ready. Knative says Unschedulable while its pods wait for room (a GPU an idle
        revision is about to give back) and recovers; only what it never recovers from fails at once."""
        def look() -> tuple[bool, str]:
            rev = self.cluster.get(*REVISION, revision, self.ns)
            if rev is None:
                return False, f"revision {revision} not created yet"
            cond = readiness.condition(rev, "Ready")
            why = f"revision {revision}: Ready={cond.get('status', 'Unknown')} {cond.get('reason', '')}: " \
                  f"{cond.get('message', '')}"
            if cond.get("status") == "False" and cond.get("reason") in PERMANENT:
                raise KnfleetError(f"revision {revision} failed: {cond.get('reason')}: {cond.get('message')}",
                                   code=Reason.ROLLOUT_FAILED)
            return cond.get("status") == "True", why
        try:
            wait.until(self.cluster, look, timeout, interval=0.5)
        except NotReadyError as err:
            raise KnfleetError(f"the new revision did not become Ready: {err}", code=Reason.ROLLOUT_FAILED) from None

    def cold_starts(self, revision: str, trigger: str) -> None:
        """The revision's pods that started during this run and are Ready, phase by phase (each pod once)."""
        seen = {c.pod for c in self.record.cold_starts}
        self.record.cold_starts += [c for c in coldstart.observe(self.cluster, self.step.ref, revision, trigger,
                                                                 self.record.started) if c.pod not in seen]

    # --- first version, and the rollout ----------------------------------------------------------------------------
    def run(self) -> list[str]:
        step = self.step
        assert isinstance(step, p.Rollout)
        want = pr.template_name(step.service)
        live = self.cluster.get(*KSVC, self.name, self.ns)
        if live is None:
            return self.first(want)
        stable, previous, _ = pr.versions(live)
        st = pr.state_of(live)
        if st is not None and st.phase == pr.PROGRESSING and st.candidate == want and st.stable == stable:
            say(f"{step.ref}: resuming the rollout of {want} at "
                + ("its dark check" if st.step < 0 else f"{st.percent(step.settings.steps)} %"))
            self.report["resumed_at"] = st.percent(step.settings.steps)
        else:
            if not stable:
                raise KnfleetError(f"{step.ref}: no revision serves it, nothing to compare a new version with; "
                                   "fix the Service (or delete it: the first version is then deployed as stable)",
                                   code=Reason.ROLLOUT_FAILED)
            st = pr.State(pr.PROGRESSING, want, stable, previous if previous != stable else "", step=-1,
                          started=pr.now())
            st.surge = self.plan_gpus(stable)
        self.report.update(candidate=want, stable=stable, steps=st.steps, surge=bool(st.surge))
        self.record.rollouts.append(self.report)
        try:
            return self.progress(st)
        except RolledBack:
            raise
        except KnfleetError as err:  # the new version cannot be checked (not Ready, gone, …): back to stable
            # without its tag: a Route does not move traffic while a revision it names is not Ready
            self.back(st, " ".join(str(err).split())[:600], Reason.ROLLOUT_FAILED, err, keep_tag=False)
            raise  # (back raises)

    def first(self, want: str) -> list[str]:
        st = pr.State(pr.FIRST, want, want, started=pr.now())
        self.apply(self.step.service, pr.traffic(want), st)
        self.revision_ready(want, self.step.wait)
        self.cold_starts(want, "new_revision")
        self.routed({want: 100}, self.step.wait)
        self.report.update(outcome="first version", candidate=want, stable=want)
        self.record.rollouts.append(self.report)
        say(f"rollout {self.step.ref}: first version {want} is stable")
        return [f"Service/{self.step.ref} (first version {want}, stable)"]

    def progress(self, st: pr.State) -> list[str]:
        step = self.step
        assert isinstance(step, p.Rollout)
        steps = step.settings.steps
        start = st.step  # a step whose checks passed (its figures kept) is not held again
        if st.steps and st.steps[-1].get("ok") and st.steps[-1].get("percent") == st.percent(steps):
            start += 1
        self.apply(step.service, pr.traffic(st.stable, st.candidate, st.percent(steps), st.previous), st)
        self.revision_ready(st.candidate, step.wait)
        self.cold_starts(st.candidate, "rollout_step")
        if st.surge and start < 0:
            self.hold_candidate(st)
        for i in range(start, len(steps)):
            percent = 0 if i < 0 else steps[i]
            if st.surge and i >= 0:
                self.scale_for(st, percent)
            st.step, st.step_started = i, pr.now()
            self.apply(step.service, pr.traffic(st.stable, st.candidate, percent, st.previous), st)
            live = self.routed({st.stable: 100 - percent, st.candidate: percent}, step.wait)
            stable_figs, new_figs = self.measure(live, step.settings.bake_s)
            self.cold_starts(st.candidate, "rollout_step")  # pods a step's scale added
            verdict = pr.verdict(step.settings.checks, stable_figs, new_figs)
            st.steps.append({"percent": percent, "ok": verdict.ok, "check": verdict.check, "at": pr.now(),
                             "stable": stable_figs.as_dict(), "candidate": new_figs.as_dict()})
            self.report["steps"] = st.steps
            line = f"rollout {step.ref}: {percent} % {'ok' if verdict.ok else 'FAILED'} ({verdict.detail})"
            say(line)
            if not verdict.ok:
                self.back(st, f"{verdict.check} at {percent} %: {verdict.detail}", Reason.ROLLOUT_CHECK_FAILED)
            # the step's figures are kept with its state: a run killed later goes on with the next step
            self.apply(step.service, pr.traffic(st.stable, st.candidate, percent, st.previous), st)
        return self.promote(st)

    def promote(self, st: pr.State) -> list[str]:
        step = self.step
        assert isinstance(step, p.Rollout)
        old = st.stable
        st.phase, st.previous, st.stable = pr.PROMOTED, old, st.candidate
        self.apply(step.service, pr.traffic(st.candidate, None, 0, old), st)
        self.routed({st.candidate: 100}, step.wait)
        self.release(old)
        if st.surge:
            self.restore_scale(st.candidate)
        self.report.update(outcome="promoted", stable=st.candidate, previous=old)
        say(f"rollout {step.ref}: promoted {st.candidate} (stable, 100 %); {old} kept at 0 % as previous, its "
            "min-scale dropped")
        return [f"Service/{step.ref} ({st.candidate} promoted, {old} previous)"]

    def back(self, st: pr.State, why: str, code: Reason, cause: Exception | None = None,
             keep_tag: bool = True) -> None:
        """Roll back: the running version at 100 %, the new one at 0 % under its tag (its host stays reachable for
        a look; not for a revision that never became Ready), its GPUs released."""
        step = self.step
        assert isinstance(step, p.Rollout)
        st.phase, st.reason = pr.ROLLED_BACK, why
        self.report.update(outcome="rolled back", reason=why, reached=st.percent(step.settings.steps))
        try:
            self.apply(step.service, pr.traffic(st.stable, st.candidate if keep_tag else None, 0, st.previous), st)
            if st.surge:
                self.restore_scale(st.stable)
            self.release(st.candidate)
            self.routed({st.stable: 100}, step.wait)
        except (KubeError, NotReadyError) as err:
            why += f"; and putting the running version back did not finish: {err}"
        raise RolledBack(f"rollout {step.ref} rolled back: {why} (new {st.candidate}, running {st.stable})",
                         code=code) from cause

    def back_by_hand(self) -> list[str]:
        live = self.live()
        stable, previous, _ = pr.versions(live)
        st = pr.state_of(live) or pr.State(pr.ROLLED_BACK, stable)
        # the Service as it is (its template: no new revision; its labels: knfleet keeps owning them)
        service = {"apiVersion": KSVC[0], "kind": KSVC[1],
                   "metadata": {"name": self.name, "namespace": self.ns,
                                "labels": live["metadata"].get("labels") or {}},
                   "spec": {"template": (live.get("spec") or {}).get("template") or {}}}
        st.phase, st.candidate, st.stable, st.previous = pr.ROLLED_BACK, stable, previous, ""
        st.reason = "rolled back by hand (knfleet rollback)"
        self.restore_scale(previous)
        self.apply(service, pr.traffic(previous, stable, 0), st)
        self.routed({previous: 100}, 600)
        self.release(stable)
        self.record.rollouts.append({"service": self.step.ref, "outcome": "rolled back by hand", "stable": previous,
                                     "candidate": stable})
        say(f"rollback {self.step.ref}: {previous} is stable again (100 %); {stable} kept at 0 % as candidate")
        return [f"Service/{self.step.ref} ({previous} back at 100 %)"]

    # --- the checks ------------------------------------------------------------------------------------------------
    def probe(self) -> tuple[str, smoke.Probe]:
        assert isinstance(self.step, p.Rollout)
        if self.entry is None:
            self.entry = services.EntryPoints(self.cluster, self.step.entry)
        return self.entry.probe(self.step.cluster_local)

    def measure(self, live: dict[str, Any], bake: float) -> tuple[pr.Figures, pr.Figures]:
        """Check requests to both versions, each through its own tag's host, alternating, for `bake` seconds and at
        least `requests` each (a wrong answer from the new version ends the step at once)."""
        step = self.step
        assert isinstance(step, p.Rollout)
        checks = step.settings.checks
        hosts = {t["tag"]: urlsplit(t.get("url") or "").netloc for t in (live.get("status") or {}).get("traffic")
                 or [] if t.get("tag") in ("stable", "candidate")}
        if not hosts.get("stable") or not hosts.get("candidate"):
            raise KnfleetError(f"{step.ref}: the Route gives no host for the tags yet ({hosts})",
                               code=Reason.ROLLOUT_FAILED)
        via, ask = self.probe()
        prompts = checks.prompts or (pr.Prompt(tuple(smoke.runbook_request(step.model)["messages"])),)
        samples: dict[str, list[pr.Sample]] = {"stable": [], "candidate": []}
        t0, i = time.monotonic(), 0
        limit = bake + checks.requests * 2 * step.entry.deadline  # a bound even when every request times out
        while True:
            for tag in ("candidate", "stable"):
                prompt = prompts[i % len(prompts)]
                samples[tag].append(self.sample(ask, hosts[tag], prompt, step.model, step.entry.deadline))
            i += 1
            done = time.monotonic() - t0 >= bake and min(len(v) for v in samples.values()) >= checks.requests
            if done or samples["candidate"][-1].wrong or time.monotonic() - t0 > limit:
                break
        stable, new = pr.figures(samples["stable"]), pr.figures(samples["candidate"])
        if step.prometheus_url and checks.prometheus:
            stable.prometheus = self.prometheus(live, "stable")
            new.prometheus = self.prometheus(live, "candidate")
        self.report["via"] = via
        return stable, new

    @staticmethod
    def sample(ask: smoke.Probe, host_name: str, prompt: pr.Prompt, model: str, timeout: float) -> pr.Sample:
        try:
            a = ask(host_name, prompt.body(model), timeout)
        except smoke.Unreachable as err:
            return pr.Sample(False, None, None, error=str(err)[:200])
        if a.status != 200:
            return pr.Sample(False, a.status, a.latency_s, error=f"HTTP {a.status}: {a.text[:120]}")
        problem = a.problem or (None if a.model == model else f"the answer names model {a.model!r}")
        if problem:
            return pr.Sample(False, 200, a.latency_s, error=problem)
        return pr.Sample(True, 200, a.latency_s, a.ttft_s, a.text[:200], wrong=pr.check_answer(prompt, a.text))

    def prometheus(self, live: dict[str, Any], tag: str) -> dict[str, float | None]:
        """The step's real-traffic figures of one version from Prometheus (None: no sample in the window)."""
        step = self.step
        assert isinstance(step, p.Rollout) and step.prometheus_url
        revision = (pr.tagged((live.get("spec") or {}).get("traffic") or []).get(tag) or {}).get("revisionName")
        out: dict[str, float | None] = {}
        for check, spec in sorted(step.settings.checks.prometheus.items()):
            query = spec.query.format(namespace=self.ns, revision=revision, service=self.name,
                                    window=step.settings.checks.prometheus_window)
            try:
                resp = requests.get(step.prometheus_url.rstrip("/") + "/api/v1/query", params={"query": query},
                                    timeout=10)
                data = resp.json()
            except (requests.RequestException, ValueError) as err:
                raise KnfleetError(f"Prometheus at {step.prometheus_url} did not answer the query for {check}: "
                                   f"{err}", code=Reason.ROLLOUT_FAILED) from None
            if data.get("status") != "success":
                raise KnfleetError(f"Prometheus refused the query for {check} ({query}): {data.get('error')}",
                                   code=Reason.ROLLOUT_FAILED)
            result = (data.get("data") or {}).get("result") or []
            try:
                value = float(result[0]["value"][1]) if result else None
            except (KeyError, IndexError, TypeError, ValueError):
                value = None
            out[check] = None if value is None or value != value else round(value, 6)  # NaN: no sample
        return out

    # --- GPUs -------------------------------------------------------------------------------------------------------
    def plan_gpus(self, stable: str) -> dict[str, Any]:
        """Before the candidate is created: free GPUs for its pods at initial/min scale? {} when they fit; surge by
        one when one pod fits ({"old": pods the running revision has, "new": pods the new one wants}); else stop
        here, before any change, naming each node's free GPUs."""
        step = self.step
        assert isinstance(step, p.Rollout)
        if not step.gpus_per_pod or step.gpu_preflight == "off":
            return {}
        ann = step.service["spec"]["template"]["metadata"].get("annotations") or {}
        pods_wanted = max(_int(ann.get(INITIAL), 1), _int(ann.get(MIN), 0), 1)
        nodes = [capacity.node_of(n) for n in self.cluster.list("v1", "Node")]
        # the service's revisions without traffic (the previous one, one rolled back) give their pods up when idle:
        # the new revision's pods may wait for that (its progress deadline), not for another workload's
        pods = [q for q in self.cluster.list("v1", "Pod") if not idle_revision(q, self.ns, self.name, stable)]
        left = capacity.free(nodes, capacity.used(pods))
        need = capacity.Need(step.ref, step.gpus_per_pod, pods_wanted, dict(step.node_selector), step.tolerations)
        if not capacity.shortfalls([need], left):
            return {}
        where = capacity.free_report(nodes, left, need)
        one = capacity.Need(step.ref, step.gpus_per_pod, max(1, _int(ann.get(INITIAL), 1)), dict(step.node_selector),
                            step.tolerations)
        if capacity.shortfalls([one], left):
            raise KnfleetError(f"{step.ref}: no GPUs free for the new version's first pod ({step.gpus_per_pod} GPU(s) "
                               f"each; {where}); the service was not changed", code=Reason.CAPACITY_SHORTFALL)
        old = self.ready_pods(stable)
        say(f"{step.ref}: GPUs free for one more pod only ({where}): surge by one (the new version starts with one "
            f"pod, {stable} gives up pods as traffic moves)")
        return {"old": max(old, 1), "new": pods_wanted}

    def ready_pods(self, revision: str) -> int:
        dep = self.cluster.get("apps/v1", "Deployment", f"{revision}-deployment", self.ns) or {}
        return int((dep.get("status") or {}).get("readyReplicas") or (dep.get("spec") or {}).get("replicas") or 0)

    def bounds(self, revision: str) -> tuple[int | None, int | None]:
        """The scale bounds a revision's template gave it (its own annotations, which knfleet never changes)."""
        rev = self.cluster.get(*REVISION, revision, self.ns) or {}
        ann = (rev.get("metadata") or {}).get("annotations") or {}
        low, high = ann.get(MIN), ann.get(MAX)
        return (None if low is None else _int(low, 0), None if high is None else _int(high, 0))

    def set_bounds(self, revision: str, low: int | None, high: int | None) -> None:
        """A revision's scale bounds where Knative's autoscaler reads them: its PodAutoscaler's annotations (Knative
        sets them from the Revision when it makes the PodAutoscaler and reconciles only its spec after). None
        removes the bound."""
        body = {"metadata": {"annotations": {MIN: None if low is None else str(low),
                                             MAX: None if high is None else str(high)}}}
        try:
            self.cluster.patch(*PA, revision, self.ns, body)
        except KubeError as err:
            if err.status != 404:  # a revision whose PodAutoscaler is gone has no pods to bound
                raise

    def hold_candidate(self, st: pr.State) -> None:
        """Surge by one: the new revision kept at one pod until traffic moves (its PodAutoscaler appears with the
        revision; bounds set as soon as it does)."""
        wait.until(self.cluster, lambda: (self.cluster.get(*PA, st.candidate, self.ns) is not None,
                                          f"PodAutoscaler {st.candidate} not created yet"), 60, interval=0.25)
        self.set_bounds(st.candidate, 1, 1)

    def scale_for(self, st: pr.State, percent: int) -> None:
        """Surge by one at a step: the running revision down to what its share needs first (its pods gone), then
        the new one up to what its share needs (its pods Ready)."""
        old, new = pr.surge_targets(int(st.surge["old"]), int(st.surge["new"]), percent)
        low, _ = self.bounds(st.stable)
        self.set_bounds(st.stable, min(low or 0, old), max(old, 1))
        self.until_pods(st.stable, lambda n: n <= max(old, 1), f"at most {max(old, 1)}", count_all=True)
        self.set_bounds(st.candidate, new, new)
        self.until_pods(st.candidate, lambda n: n >= new, f"{new} Ready")

    def until_pods(self, revision: str, ok: Any, what: str, count_all: bool = False) -> None:
        def look() -> tuple[bool, str]:
            pods = [q for q in self.cluster.list("v1", "Pod", self.ns, f"serving.knative.dev/revision={revision}")
                    if readiness.pod_counts(q)]
            ready = sum(readiness.pod_ready(q) for q in pods)
            pending = [readiness.pod_problem(q) for q in pods if not readiness.pod_ready(q)]
            return ok(len(pods) if count_all else ready), (
                f"revision {revision}: {ready} Ready of {len(pods)} pod(s), want {what}" + (
                    f"; {pending[0]}" if pending else ""))
        assert isinstance(self.step, p.Rollout)
        wait.until(self.cluster, look, self.step.wait, interval=0.5)

    def release(self, revision: str) -> None:
        """A revision at 0 % gives its GPUs back: min-scale 0, so its pods go when idle (its own bounds stay on
        the Revision, for a roll back)."""
        _, high = self.bounds(revision)
        self.set_bounds(revision, 0, high)

    def restore_scale(self, revision: str) -> None:
        """A revision back to the bounds its template gave it (taking traffic again, or promoted after a surge)."""
        self.set_bounds(revision, *self.bounds(revision))


def idle_revision(pod: dict[str, Any], ns: str, service: str, stable: str) -> bool:
    """A pod of one of this service's revisions other than the stable one (no traffic: scaled to zero when idle)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return meta.get("namespace") == ns and labels.get("serving.knative.dev/service") == service \
        and labels.get("serving.knative.dev/revision") not in (None, stable)


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default

