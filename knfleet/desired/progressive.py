"""New model versions rolled out progressively: the settings (group data `models[].rollout`), revision names knfleet
chooses, the traffic of each step, the state a rollout keeps on its Knative Service, and the checks' verdict.
Pure: no cluster (knfleet.run.progressive drives a cluster through these).

    first version      apply, Ready, traffic: stable=<svc>-<hash> 100 %
    a changed template candidate=<svc>-<hash'> at 0 % beside stable at 100 %
                       -> dark check through the candidate's own host (candidate-<svc>.<ns>.<domain>)
                       -> steps (5, 25, 50, 100 %), each held `bake` while both versions are checked
                       -> promote: stable=<new> 100 %, previous=<old> 0 % (its min-scale dropped: GPUs released)
                       or roll back at the first failed check: stable 100 %, the candidate kept at 0 % under its tag
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from knfleet.desired import goduration
from knfleet.errors import InputError, shown

STRATEGIES = ("replace", "progressive")
DEFAULT_STEPS = (5, 25, 50, 100)
STATE_ANNOTATION = "knfleet.dev/rollout"  # on the Knative Service: the rollout's state (JSON), owned by knfleet
HASH_LENGTH = 6
MAX_SERVICE_NAME = 63 - 1 - HASH_LENGTH  # a revision name is a DNS label: <service>-<hash> within 63
TAGS = ("stable", "candidate", "previous")
PROMETHEUS_DEFAULTS = {
    # vLLM's own histogram, as it exposes it; `revision` is the label the scrape gives each revision's pods
    "ttft_p95": 'histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{{'
                'namespace="{namespace}",revision="{revision}"}}[{window}])))',
    # Knative's queue-proxy request count per revision and response code class
    "error_rate": 'sum(rate(revision_app_request_count{{namespace_name="{namespace}",revision_name="{revision}",'
                  'response_code_class="5xx"}}[{window}])) / sum(rate(revision_app_request_count{{'
                  'namespace_name="{namespace}",revision_name="{revision}"}}[{window}]))',
}


class RolloutError(InputError):
    """Bad rollout settings; nothing was changed on any cluster."""


@dataclass(frozen=True)
class Prompt:
    messages: tuple[dict[str, Any], ...]
    expect: str | None = None  # a regular expression the answer's text must match

    def body(self, model: str, stream: bool = True) -> dict[str, Any]:
        return {"model": model, "messages": [dict(m) for m in self.messages], "stream": stream}


@dataclass(frozen=True)
class PromCheck:
    """A real-traffic check: a PromQL template ({namespace}, {revision}, {service}, {window}) evaluated for each
    version, and how much worse the new one may be: a ratio (latencies) or an increase (rates)."""

    query: str
    max_ratio: float | None = None
    max_increase: float | None = None


@dataclass(frozen=True)
class Checks:
    requests: int = 20  # per step and per version, at least
    max_latency_ratio: float = 1.2  # candidate p95 <= ratio x stable p95 (+ latency_slack)
    max_ttft_ratio: float | None = None  # time to first token p95, likewise (None: max_latency_ratio)
    max_error_rate_increase: float = 0.01  # candidate error rate <= stable's + this
    latency_slack_s: float = 0.05  # differences below this never fail a latency check (a few ms of noise)
    prompts: tuple[Prompt, ...] = ()
    prometheus: dict[str, PromCheck] = field(default_factory=dict)  # check name -> its query and threshold
    prometheus_window: str = "1m"

    @property
    def ttft_ratio(self) -> float:
        return self.max_ttft_ratio if self.max_ttft_ratio is not None else self.max_latency_ratio


@dataclass(frozen=True)
class Rollout:
    strategy: str = "replace"
    steps: tuple[int, ...] = DEFAULT_STEPS
    bake_s: float = 60.0
    checks: Checks = field(default_factory=Checks)

    @property
    def progressive(self) -> bool:
        return self.strategy == "progressive"


REPLACE = Rollout()
KEYS = {"strategy", "steps", "bake", "checks"}
CHECK_KEYS = {"requests", "max_latency_ratio", "max_ttft_ratio", "max_error_rate_increase", "latency_slack",
              "prompts", "prometheus", "prometheus_window"}


def _err(where: str, key: str, value: Any, allowed: str) -> RolloutError:
    return RolloutError(f"{where}: rollout.{key} = {shown(value)} is not allowed; {allowed}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _seconds(where: str, key: str, v: Any) -> float:
    if _number(v) and v >= 0:
        return float(v)
    try:
        s = goduration.parse(v)
    except goduration.DurationError:
        raise _err(where, key, v, 'use a Go duration such as "60s" or "5m", or seconds') from None
    if s < 0:
        raise _err(where, key, v, "use a duration >= 0")
    return s


def _prompts(where: str, raw: Any) -> tuple[Prompt, ...]:
    if not isinstance(raw, (list, tuple)):
        raise _err(where, "checks.prompts", raw, "use a list of {messages: [...], expect: <regex>}")
    out = []
    for i, p in enumerate(raw):
        key = f"checks.prompts[{i}]"
        if not isinstance(p, dict) or set(p) - {"messages", "expect"} or "messages" not in p:
            raise _err(where, key, p, "use {messages: [{role, content}, ...], expect: <regex>} (expect optional)")
        msgs = p["messages"]
        if not isinstance(msgs, (list, tuple)) or not msgs or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in msgs):
            raise _err(where, f"{key}.messages", msgs, "use a non-empty list of {role: <str>, content: <str>}")
        expect = p.get("expect")
        if expect is not None:
            if not isinstance(expect, str):
                raise _err(where, f"{key}.expect", expect, "use a regular expression (a string)")
            try:
                re.compile(expect)
            except re.error as err:
                raise _err(where, f"{key}.expect", expect, f"use a valid regular expression ({err})") from None
        out.append(Prompt(tuple(dict(m) for m in msgs), expect))
    return tuple(out)


def _checks(where: str, raw: Any) -> Checks:
    if not isinstance(raw, dict):
        raise _err(where, "checks", raw, f"use a mapping with keys {', '.join(sorted(CHECK_KEYS))}")
    unknown = sorted(str(k) for k in set(raw) - CHECK_KEYS)
    if unknown:
        raise RolloutError(f"{where}: rollout.checks key(s) {', '.join(unknown)} unknown; allowed: "
                           f"{', '.join(sorted(CHECK_KEYS))}")
    kw: dict[str, Any] = {}
    if "requests" in raw:
        v = raw["requests"]
        if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10000):
            raise _err(where, "checks.requests", v, "use a whole number from 1 to 10000 (requests per step and "
                                                    "version)")
        kw["requests"] = v
    for key in ("max_latency_ratio", "max_ttft_ratio"):
        if key in raw and raw[key] is not None:
            v = raw[key]
            if not _number(v) or v < 1:
                raise _err(where, f"checks.{key}", v, "use a number >= 1 (1.2: the new version's p95 may be "
                                                      "20 % above the running version's)")
            kw[key] = float(v)
    if "max_error_rate_increase" in raw:
        v = raw["max_error_rate_increase"]
        if not _number(v) or not 0 <= v <= 1:
            raise _err(where, "checks.max_error_rate_increase", v, "use a fraction from 0 to 1 (0.01: one "
                                                                   "percentage point)")
        kw["max_error_rate_increase"] = float(v)
    if "latency_slack" in raw:
        kw["latency_slack_s"] = _seconds(where, "checks.latency_slack", raw["latency_slack"])
    if "prompts" in raw:
        kw["prompts"] = _prompts(where, raw["prompts"])
    if "prometheus" in raw:
        kw["prometheus"] = _prometheus(where, raw["prometheus"], kw)
    if "prometheus_window" in raw:
        w = raw["prometheus_window"]
        if not isinstance(w, str) or not re.fullmatch(r"[0-9]+(ms|s|m|h)", w):
            raise _err(where, "checks.prometheus_window", w, 'use a PromQL range such as "1m" or "30s"')
        kw["prometheus_window"] = w
    return Checks(**kw)


def _prometheus(where: str, prom: Any, kw: dict[str, Any]) -> dict[str, PromCheck]:
    """`checks.prometheus`: true (the default queries), or check name -> a PromQL template, or -> {query,
    max_ratio | max_increase}. A check whose name starts with "error" compares by increase (default
    max_error_rate_increase), the others by ratio (default max_ttft_ratio, else max_latency_ratio)."""
    allowed = ("use true (the default queries: " + ", ".join(PROMETHEUS_DEFAULTS) + ") or a mapping of check name "
               "to a PromQL template with {namespace}, {revision}, {service} and {window}, or to {query: <template>, "
               "max_ratio: <number >= 1>} / {query: <template>, max_increase: <0..1>}")
    if prom is True:
        prom = dict(PROMETHEUS_DEFAULTS)
    if not isinstance(prom, dict) or not prom:
        raise _err(where, "checks.prometheus", prom, allowed)
    ratio = kw.get("max_ttft_ratio") or kw.get("max_latency_ratio") or Checks.max_latency_ratio
    increase = kw.get("max_error_rate_increase", Checks.max_error_rate_increase)
    out = {}
    for name, spec in prom.items():
        key = f"checks.prometheus.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise _err(where, "checks.prometheus", name, "name each check with lowercase letters, digits and _")
        if isinstance(spec, str):
            spec = {"query": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("query"), str) or not spec["query"].strip() \
                or set(spec) - {"query", "max_ratio", "max_increase"} or {"max_ratio", "max_increase"} <= set(spec):
            raise _err(where, key, spec, allowed)
        try:
            spec["query"].format(namespace="n", revision="r", service="s", window="1m")
        except (KeyError, IndexError, ValueError) as err:
            raise _err(where, f"{key}.query", spec["query"], "use a PromQL template whose only placeholders are "
                       "{namespace}, {revision}, {service}, {window} (PromQL's own braces doubled: {{ }}); "
                       f"{type(err).__name__}: {err}") from None
        if "max_ratio" in spec and (not _number(spec["max_ratio"]) or spec["max_ratio"] < 1):
            raise _err(where, f"{key}.max_ratio", spec["max_ratio"], "use a number >= 1")
        if "max_increase" in spec and (not _number(spec["max_increase"]) or not 0 <= spec["max_increase"] <= 1):
            raise _err(where, f"{key}.max_increase", spec["max_increase"], "use a fraction from 0 to 1")
        by_increase = "max_increase" in spec or ("max_ratio" not in spec and name.startswith("error"))
        out[name] = PromCheck(spec["query"], None if by_increase else float(spec.get("max_ratio", ratio)),
                              float(spec.get("max_increase", increase)) if by_increase else None)
    return out


def from_data(where: str, raw: Any, autoscaling: dict[str, Any] | None = None) -> Rollout:
    """A model's `rollout` mapping, checked; errors name the model, the key, the value and what is allowed."""
    if raw is None:
        return REPLACE
    if not isinstance(raw, dict):
        raise RolloutError(f"{where}: rollout = {shown(raw)} is not allowed; use a mapping with keys "
                           f"{', '.join(sorted(KEYS))}")
    unknown = sorted(str(k) for k in set(raw) - KEYS)
    if unknown:
        raise RolloutError(f"{where}: rollout key(s) {', '.join(unknown)} unknown; allowed: {', '.join(sorted(KEYS))}")
    strategy = raw.get("strategy", "replace")
    if strategy not in STRATEGIES:
        raise _err(where, "strategy", strategy, "use replace (a new version takes all traffic when Ready) or "
                                                "progressive (steps with checks against the running version)")
    steps = raw.get("steps", list(DEFAULT_STEPS))
    if not isinstance(steps, (list, tuple)) or not steps or not all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 100 for s in steps):
        raise _err(where, "steps", steps, "use a list of whole percents from 1 to 100, increasing, ending at 100 "
                                          "(e.g. [5, 25, 50, 100])")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise _err(where, "steps", steps, "use strictly increasing percents (each step moves more traffic)")
    if steps[-1] != 100:
        raise _err(where, "steps", steps, "end at 100 (the last step moves all traffic to the new version)")
    bake = _seconds(where, "bake", raw.get("bake", "60s"))
    checks = _checks(where, raw.get("checks", {}))
    r = Rollout(strategy, tuple(steps), bake, checks)
    if r.progressive:
        _check_autoscaling(where, autoscaling or {})
    return r


def _check_autoscaling(where: str, auto: dict[str, Any]) -> None:
    """Autoscaling that cannot hold two revisions side by side: a revision pinned to no pod, or bounds its own
    pods do not fit in (Knative reads max-scale 0 as no limit: that one holds anything)."""
    def num(key: str) -> int | None:
        try:
            return int(str(auto[key])) if auto.get(key) is not None else None
        except ValueError:
            return None  # the model's own checks name a value that is not a number
    low, high, initial = num("min_scale"), num("max_scale"), num("initial_scale")
    if initial == 0 and (low or 0) > 0:
        raise RolloutError(f"{where}: rollout.strategy = 'progressive' is not allowed with autoscaling "
                           f"initial_scale 0 and min_scale {low}: the new revision must start with pods to be checked "
                           "beside the running one; use initial_scale >= 1")
    if high is not None and high > 0 and high < max(low or 0, initial or 1):
        raise RolloutError(f"{where}: rollout.strategy = 'progressive' is not allowed with autoscaling max_scale "
                           f"{high} below min/initial scale {max(low or 0, initial or 1)}: a revision could not hold "
                           "its own pods; raise max_scale (0: no limit)")


# --- names and traffic -----------------------------------------------------------------------------------------------
def template_hash(template: dict[str, Any]) -> str:
    """A short hash of a revision template (its name left out): the same template, the same revision name."""
    meta = {k: v for k, v in (template.get("metadata") or {}).items() if k != "name"}
    canonical = json.dumps({**template, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def revision_name(service: str, template: dict[str, Any]) -> str:
    return f"{service}-{template_hash(template)}"


def named(ksvc: dict[str, Any]) -> dict[str, Any]:
    """The service with its template named `<service>-<hash of the template>` (Knative requires the prefix)."""
    tmpl = dict(ksvc["spec"]["template"])
    meta = {**(tmpl.get("metadata") or {}), "name": revision_name(ksvc["metadata"]["name"], tmpl)}
    return {**ksvc, "spec": {**ksvc["spec"], "template": {**tmpl, "metadata": meta}}}


def as_stored(service: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """The Service to apply: the rendered one, with the stored template when the stored revision name is the same.
    Knative skips defaulting a template whose chosen name did not change, and server-side apply would remove the
    fields its defaulting added when the revision was made (the applier owns them): Knative would then refuse the
    change ("Saw the following changes without a name change"). A template under the same name is the same
    template, defaults included."""
    stored = ((live or {}).get("spec") or {}).get("template") or {}
    if not live or template_name(live) != template_name(service):
        return service
    return {**service, "spec": {**service["spec"], "template": stored}}


def template_name(ksvc: dict[str, Any]) -> str:
    return ((ksvc.get("spec") or {}).get("template") or {}).get("metadata", {}).get("name") or ""


def traffic(stable: str, candidate: str | None = None, percent: int = 0,
            previous: str | None = None) -> list[dict[str, Any]]:
    """spec.traffic: `stable` at 100 - percent, `candidate` at percent, `previous` kept at 0 %."""
    out = [{"tag": "stable", "revisionName": stable, "percent": 100 - percent}]
    if candidate and candidate != stable:
        out.append({"tag": "candidate", "revisionName": candidate, "percent": percent})
    if previous and previous not in (stable, candidate):
        out.append({"tag": "previous", "revisionName": previous, "percent": 0})
    return out


def tagged(traffic_entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A Service's traffic entries (spec or status) by tag."""
    return {t["tag"]: t for t in traffic_entries or [] if t.get("tag")}


def serving(status_traffic: list[dict[str, Any]]) -> dict[str, int]:
    """Percent per revision in a Route's status.traffic (what is routed now)."""
    out: dict[str, int] = {}
    for t in status_traffic or []:
        if t.get("revisionName") and t.get("percent"):
            out[t["revisionName"]] = out.get(t["revisionName"], 0) + int(t["percent"])
    return out


# --- the state on the Service --------------------------------------------------------------------------------------
PROGRESSING, PROMOTED, ROLLED_BACK, FIRST = "progressing", "promoted", "rolled-back", "first"


@dataclass
class State:
    """What a rollout keeps on its Knative Service (annotation knfleet.dev/rollout), so that a run killed at any
    moment, or another machine's next run, goes on from the step reached."""

    phase: str  # first | progressing | promoted | rolled-back
    candidate: str
    stable: str = ""
    previous: str = ""
    step: int = -1  # index in the steps; -1: the dark check at 0 %
    step_started: float = 0.0
    started: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)  # each step reached: percent, outcome, figures
    reason: str = ""  # why it was rolled back (the check and both versions' figures)
    surge: dict[str, Any] = field(default_factory=dict)  # surge by one: old pods at the start, the per-pod GPUs

    def encode(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> State | None:
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(**{k: raw[k] for k in raw if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return None  # someone else's value: treated as no state (the rollout starts from its dark check)

    def percent(self, steps: tuple[int, ...]) -> int:
        return 0 if self.step < 0 else steps[min(self.step, len(steps) - 1)]


def state_of(ksvc: dict[str, Any] | None) -> State | None:
    if not ksvc:
        return None
    return State.decode(((ksvc.get("metadata") or {}).get("annotations") or {}).get(STATE_ANNOTATION))


def now() -> float:
    return round(time.time(), 3)


# --- what a live Service says ---------------------------------------------------------------------------------------
def versions(live: dict[str, Any]) -> tuple[str, str, str]:
    """(stable, previous, candidate) revisions of a live Service: its tags; a Service deployed without them (the
    replace strategy before) serves its current revision as stable."""
    tags = tagged((live.get("spec") or {}).get("traffic") or [])
    stable = (tags.get("stable") or {}).get("revisionName") or ""
    if not stable:
        routed = serving((live.get("status") or {}).get("traffic") or [])
        stable = max(routed, key=lambda r: routed[r]) if routed else \
            (live.get("status") or {}).get("latestReadyRevisionName") or ""
    return stable, (tags.get("previous") or {}).get("revisionName") or "", \
        (tags.get("candidate") or {}).get("revisionName") or ""


def with_traffic(service: dict[str, Any], entries: list[dict[str, Any]], st: State) -> dict[str, Any]:
    """The whole Service as knfleet applies it: the rendered one, its traffic and the rollout's state."""
    meta = dict(service["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), STATE_ANNOTATION: st.encode()}
    return {**service, "metadata": meta, "spec": {**service["spec"], "traffic": entries}}


def steady(service: dict[str, Any], live: dict[str, Any]) -> dict[str, Any] | None:
    """The object a converged run applies for a Service whose stable revision is the desired one: its tags as they
    are (a candidate tag left by a rollback is dropped), its state as it is. None when a rollout is under way."""
    name = template_name(service)
    stable, previous, _ = versions(live)
    st = state_of(live)
    if stable != name or st is None or st.phase not in (PROMOTED, FIRST, ROLLED_BACK):
        return None
    return with_traffic(as_stored(service, live), traffic(stable, None, 0, previous), st)


def pending(service: dict[str, Any], live: dict[str, Any] | None) -> str:
    """What a run would do to a progressively rolled-out Service that is not steady, in words."""
    want = template_name(service)
    if live is None:
        return f"first version {want} to deploy"
    st, stable = state_of(live), versions(live)[0]
    if st is not None and st.phase == PROGRESSING and st.candidate == want:
        percent = (tagged((live.get("spec") or {}).get("traffic") or []).get("candidate") or {}).get("percent", 0)
        return f"rollout of {want} under way: {percent} % of traffic; stable {stable}"
    if st is not None and st.phase == ROLLED_BACK and st.candidate == want:
        return f"{want} was rolled back ({st.reason}); stable {stable}"
    return f"new version {want} to roll out progressively; stable {stable or 'none'}"


# --- checks' figures and verdict -------------------------------------------------------------------------------------
@dataclass
class Sample:
    ok: bool  # HTTP 200 with an OpenAI answer
    status: int | None
    latency_s: float | None
    ttft_s: float | None = None
    text: str = ""
    error: str = ""
    wrong: str = ""  # the answer did not match its prompt's `expect`


@dataclass
class Figures:
    requests: int
    errors: int
    p50_s: float | None
    p95_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    wrong: list[str] = field(default_factory=list)
    prometheus: dict[str, float | None] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": round(self.error_rate, 4)}


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank, as a latency SLO reads it): None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def figures(samples: list[Sample]) -> Figures:
    latencies = [s.latency_s for s in samples if s.ok and s.latency_s is not None]
    ttfts = [s.ttft_s for s in samples if s.ok and s.ttft_s is not None]
    return Figures(len(samples), sum(not s.ok for s in samples), _r(quantile(latencies, 0.5)),
                   _r(quantile(latencies, 0.95)), _r(quantile(ttfts, 0.5)), _r(quantile(ttfts, 0.95)),
                   [s.wrong for s in samples if s.wrong][:3])


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    check: str  # the failed check ("" when ok): expect, errors, latency, ttft, prometheus:<name>, requests
    detail: str  # the check with both versions' figures


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def summary(stable: Figures, candidate: Figures) -> str:
    """`p95 0.41 s vs 0.39 s, errors 0/20 vs 0/20` (the new version first)."""
    text = f"p95 {_secs(candidate.p95_s)} vs {_secs(stable.p95_s)}"
    if candidate.ttft_p95_s is not None or stable.ttft_p95_s is not None:
        text += f", ttft p95 {_secs(candidate.ttft_p95_s)} vs {_secs(stable.ttft_p95_s)}"
    text += f", errors {candidate.errors}/{candidate.requests} vs {stable.errors}/{stable.requests}"
    for name in sorted(set(candidate.prometheus) | set(stable.prometheus)):
        a, b = candidate.prometheus.get(name), stable.prometheus.get(name)
        text += f", {name} {'-' if a is None else f'{a:.3g}'} vs {'-' if b is None else f'{b:.3g}'}"
    return text


def verdict(checks: Checks, stable: Figures, candidate: Figures) -> Verdict:
    """The new version against the running one, measured in the same step."""
    figs = summary(stable, candidate)
    if candidate.wrong:
        return Verdict(False, "expect", f"wrong answer from the new version ({candidate.wrong[0]}); {figs}")
    if candidate.requests < checks.requests or stable.requests < checks.requests:
        return Verdict(False, "requests", f"fewer than {checks.requests} check requests per version; {figs}")
    if candidate.error_rate > stable.error_rate + checks.max_error_rate_increase + 1e-9:
        return Verdict(False, "errors", f"error rate {candidate.error_rate:.1%} > {stable.error_rate:.1%} + "
                                        f"{checks.max_error_rate_increase:.1%}; {figs}")
    for name, new, old, ratio in (("latency", candidate.p95_s, stable.p95_s, checks.max_latency_ratio),
                                  ("ttft", candidate.ttft_p95_s, stable.ttft_p95_s, checks.ttft_ratio)):
        if new is not None and old is not None and new > ratio * old + checks.latency_slack_s:
            what = "p95" if name == "latency" else "time to first token p95"
            slack = f" + {checks.latency_slack_s:g} s" if checks.latency_slack_s else ""
            return Verdict(False, name, f"{what} {new:.3f} s > {ratio:g} x {old:.3f} s{slack}; {figs}")
    for name, check in sorted(checks.prometheus.items()):
        new_v, old_v = candidate.prometheus.get(name), stable.prometheus.get(name)
        if new_v is None or old_v is None:
            continue  # no sample in the window yet: said in the figures, not a failure
        if check.max_increase is not None and new_v > old_v + check.max_increase + 1e-9:
            return Verdict(False, f"prometheus:{name}", f"{name} {new_v:.3g} > {old_v:.3g} + {check.max_increase:g}"
                                                        f" (Prometheus); {figs}")
        if check.max_ratio is not None and new_v > check.max_ratio * old_v + checks.latency_slack_s:
            return Verdict(False, f"prometheus:{name}", f"{name} {new_v:.3g} > {check.max_ratio:g} x {old_v:.3g} "
                                                        f"(Prometheus); {figs}")
    return Verdict(True, "", figs)


def check_answer(prompt: Prompt | None, text: str) -> str:
    """Why an answer does not match its prompt's `expect` ("" when it does or when there is none)."""
    if prompt is None or prompt.expect is None or re.search(prompt.expect, text):
        return ""
    return f"{text[:80]!r} does not match /{prompt.expect}/"


# --- GPUs: surge by one ----------------------------------------------------------------------------------------------
def surge_targets(old_pods: int, new_pods: int, percent: int) -> tuple[int, int]:
    """Pods per revision at a step when the cluster has room for one more pod only: the running revision keeps
    what its share of traffic needs (never below one while it has traffic), the new one what its share needs
    (at least one: it started with one)."""
    old = 0 if percent >= 100 else max(1, math.ceil(old_pods * (100 - percent) / 100))
    new = max(1, math.ceil(new_pods * percent / 100))
    return old, new
