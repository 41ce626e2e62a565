"""`knfleet jobs INVENTORY`: what runs the fleet from a management cluster, as Kubernetes objects (pure rendering).

The inventory's clusters are cut into shards balanced by cluster count (per rollout wave, and once over the whole
inventory for the scheduled converge); each shard's kubeconfigs become one Secret (self-contained: files inlined,
the chosen context only); a CronJob runs one Indexed Job over the converge shards; `--rollout NAME` adds a
coordinator Job (knfleet.fleet.coordinator) that runs the waves in order, one Indexed Job per wave. The names
and shapes are fixed by the contract in docs/jobs.md. Nothing here talks to a cluster.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from knfleet import __version__
from knfleet.errors import InputError, shown
from knfleet.fleet import inventory as inv

MANAGED = {"app.kubernetes.io/managed-by": "knfleet"}
FLEET_LABEL = "knfleet.dev/fleet"
RUN_LABEL = "knfleet.dev/run"
ROLLOUT_LABEL = "knfleet.dev/rollout"
WAVE_LABEL = "knfleet.dev/wave"
FLEET_DIR = "/etc/knfleet/fleet"
SHARDS_DIR = "/etc/knfleet/shards"
FLEET_FILE = f"{FLEET_DIR}/fleet.json"
WORKDIR = "/knfleet"
CONTAINER = "knfleet"
REDACTED = "<redacted>"
DEFAULT_SCHEDULE = "*/30 * * * *"
DEFAULT_SHARD_SIZE = 25
DEFAULT_DEADLINE = 1500
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_FLEET = 30  # knfleet-<fleet>-converge is a CronJob name (<= 52 characters)
MAX_JOB_NAME = 63  # a Job's name is also its pods' job-name label value
FLEET_JSON_LIMIT = 1_000_000  # a ConfigMap's data: at most 1 MiB in all
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# as the CronJob controller's parser (robfig/cron v3) allows: day of week 0-6, a range's start not after its end
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))
CRON_NAMES = {3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
              4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}


class JobsError(InputError):
    """Bad input to `knfleet jobs` / `shard` / `coordinate`: nothing was applied. Exit code 2."""


@dataclass(frozen=True)
class Options:
    fleet: str
    namespace: str = "knfleet"
    image: str = f"knfleet:{__version__}"
    shard_size: int = DEFAULT_SHARD_SIZE
    schedule: str = DEFAULT_SCHEDULE
    parallelism: int | None = None  # None: every shard at once
    deadline: int = DEFAULT_DEADLINE
    max_failed: int = 0
    rollout: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    converge: bool = True  # render the CronJob


# --- checks -----------------------------------------------------------------------------------------------------------
def check_name(what: str, value: str, limit: int) -> str:
    if not isinstance(value, str) or not DNS_LABEL.match(value) or len(value) > limit:
        raise JobsError(f"{what} = {shown(value)} is not allowed; use a DNS-1123 label (lower-case letters, digits and "
                        f"'-', starting and ending with a letter or digit) of at most {limit} characters")
    return value


def fleet_name(explicit: str | None, inventory_file: str) -> str:
    if explicit is not None:
        return check_name("--fleet", explicit, MAX_FLEET)
    stem = Path(inventory_file).stem
    try:
        return check_name("--fleet", stem, MAX_FLEET)
    except JobsError:
        raise JobsError(f"--fleet: the inventory file's stem {stem!r} is not allowed as the fleet name (a DNS-1123 "
                        f"label of at most {MAX_FLEET} characters: lower-case letters, digits and '-'); give --fleet "
                        "NAME") from None


def _cron_value(token: str, index: int) -> int | None:
    if token.isdigit():
        return int(token)
    names = CRON_NAMES.get(index)
    return names.index(token.lower()) + (1 if index == 3 else 0) if names and token.lower() in names else None


def check_schedule(schedule: str) -> str:
    """A cron schedule as the CronJob controller reads it: five fields or a macro (@hourly, …)."""
    allowed = ("five fields 'minute hour day-of-month month day-of-week' (e.g. '*/30 * * * *') or one of "
               + ", ".join(CRON_MACROS))
    text = (schedule or "").strip()
    if text in CRON_MACROS:
        return text
    fields = text.split()
    bad = JobsError(f"--schedule = {shown(schedule)} is not allowed; use {allowed}")
    if len(fields) != 5 or "TZ" in text:
        raise bad
    for i, (f, (what, lo, hi)) in enumerate(zip(fields, CRON_FIELDS, strict=True)):
        for part in f.split(","):
            base, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise JobsError(f"--schedule = {shown(schedule)}: the {what} step {step!r} is not allowed; use a "
                                "whole number above 0")
            if base in ("*", "?"):
                continue
            ends = base.split("-")
            if len(ends) > 2:
                raise bad
            values = []
            for e in ends:
                v = _cron_value(e, i)
                if v is None or not lo <= v <= hi:
                    raise JobsError(f"--schedule = {shown(schedule)}: the {what} {e!r} is not allowed; use {lo}-{hi}")
                values.append(v)
            if len(values) == 2 and values[0] > values[1]:
                raise JobsError(f"--schedule = {shown(schedule)}: the {what} range {base!r} is not allowed; its start "
                                "may not be after its end")
    return text


def check_count(what: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise JobsError(f"{what} = {shown(value)} is not allowed; use a whole number >= {least}")
    return value


def check_options(o: Options) -> None:
    check_name("--fleet", o.fleet, MAX_FLEET)
    check_name("--namespace", o.namespace, 63)
    check_count("--shard-size", o.shard_size, 1)
    check_count("--deadline", o.deadline, 1)
    check_count("--max-failed-clusters", o.max_failed, 0)
    if o.parallelism is not None:
        check_count("--parallelism", o.parallelism, 1)
    check_schedule(o.schedule)
    if not o.image or any(c.isspace() for c in o.image):
        raise JobsError(f"--image = {shown(o.image)} is not allowed; use an image reference such as "
                        f"knfleet:{__version__}")
    if o.rollout is not None:
        check_name("--rollout", o.rollout, 63)
        for name in (coordinator_job_name(o.fleet, o.rollout), wave_job_name(o.fleet, o.rollout, 999)):
            if len(name) > MAX_JOB_NAME:
                raise JobsError(f"--rollout = {o.rollout!r} is not allowed with --fleet {o.fleet!r}: the Job name "
                                f"{name!r} would be longer than {MAX_JOB_NAME} characters; use a shorter name")
    try:
        json.dumps(o.data)
    except (TypeError, ValueError):
        raise JobsError(f"--data = {shown(o.data)} is not allowed; use values JSON can hold") from None


# --- names ------------------------------------------------------------------------------------------------------------
def base(fleet: str) -> str:
    return f"knfleet-{fleet}"


def shard_sa(fleet: str) -> str:
    return f"{base(fleet)}-shard"


def coordinator_sa(fleet: str) -> str:
    return f"{base(fleet)}-coordinator"


def cronjob_name(fleet: str) -> str:
    return f"{base(fleet)}-converge"


def coordinator_job_name(fleet: str, rollout: str) -> str:
    return f"{base(fleet)}-rollout-{rollout}"


def wave_job_name(fleet: str, rollout: str, wave: int) -> str:
    return f"{base(fleet)}-{rollout}-w{wave}"


def state_name(fleet: str, rollout: str) -> str:
    return f"{base(fleet)}-rollout-{rollout}-state"


def rollout_secret(fleet: str, wave: int, index: int) -> str:
    return f"{base(fleet)}-w{wave}-s{index}"


def converge_secret(fleet: str, index: int) -> str:
    return f"{base(fleet)}-c{index}"


def rollout_result(fleet: str, rollout: str, wave: int, index: int) -> str:
    return f"{base(fleet)}-{rollout}-w{wave}-s{index}"


def converge_result(fleet: str, run: str, index: int) -> str:
    return f"{base(fleet)}-{run}-r{index}"


# --- shards -----------------------------------------------------------------------------------------------------------
def balanced(names: list[str], size: int) -> list[list[str]]:
    """`names` in order, cut into ceil(n/size) contiguous shards whose sizes differ by at most one."""
    check_count("--shard-size", size, 1)
    if not names:
        return []
    k = math.ceil(len(names) / size)
    q, r = divmod(len(names), k)
    out, at = [], 0
    for i in range(k):
        n = q + (1 if i < r else 0)
        out.append(names[at:at + n])
        at += n
    return out


def fleet_doc(clusters: list[inv.Cluster], o: Options) -> dict[str, Any]:
    """fleet.json: every cluster's merged host data (no kubeconfig path), the waves' and the converge shards."""
    hosts: dict[str, dict[str, Any]] = {}
    for c in clusters:
        data = {k: v for k, v in c.data.items() if k != "kubeconfig"}
        try:
            json.dumps(data)
        except (TypeError, ValueError):
            bad = [k for k, v in data.items() if not _jsonable(v)]
            raise JobsError(f"{c.name}: host data {', '.join(bad)} = {shown(data[bad[0]] if bad else data)} is not "
                            "allowed in a fleet run from Jobs; use values JSON can hold (strings, numbers, lists, "
                            "dicts)") from None
        hosts[c.name] = data
    waves = [{"wave": w, "max_failed": o.max_failed, "shards": balanced([c.name for c in m], o.shard_size)}
             for w, m in inv.waves(clusters)]
    return {"fleet": o.fleet, "version": 1, "hosts": hosts, "waves": waves,
            "converge_shards": balanced([c.name for c in clusters], o.shard_size), "data": dict(o.data),
            "max_failed": o.max_failed, "parallelism": o.parallelism, "deadline": o.deadline}


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


# --- kubeconfigs ------------------------------------------------------------------------------------------------------
INLINE = (("cluster", "certificate-authority", "certificate-authority-data"),
          ("user", "client-certificate", "client-certificate-data"),
          ("user", "client-key", "client-key-data"))


def standalone_kubeconfig(cluster: str, path: str, context: str | None) -> dict[str, Any]:
    """The kubeconfig at `path` reduced to one context (`context`, else its current one) with the files it names
    (certificate authority, client certificate and key, token file) inlined, relative paths read from the
    kubeconfig's folder as client-go does. JobsError names the cluster, the field and the file."""
    where = f"{cluster}: host data 'kubeconfig' = {path!r}"
    p = Path(os.path.expanduser(path))
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise JobsError(f"{where}: no such file; use the path of this cluster's kubeconfig") from None
    except (OSError, yaml.YAMLError) as err:
        raise JobsError(f"{where}: cannot be read ({err}); use a readable kubeconfig file") from None
    if not isinstance(doc, dict):
        raise JobsError(f"{where}: not a kubeconfig (a YAML mapping with clusters, users and contexts)")
    name = context or doc.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or [] if isinstance(c, dict)}
    if name not in contexts:
        raise JobsError(f"{cluster}: host data 'kube_context' = {shown(name)} is not allowed; the kubeconfig {path} "
                        f"has the contexts {', '.join(map(str, contexts)) or '(none)'}")
    ctx = contexts[name]
    found: dict[str, dict[str, Any]] = {}
    for kind, key in (("cluster", "clusters"), ("user", "users")):
        entries = {e.get("name"): e for e in doc.get(key) or [] if isinstance(e, dict)}
        ref = ctx.get(kind)
        if ref not in entries:
            if kind == "user" and not ref:
                found[kind] = {"name": "", "user": {}}
                continue
            raise JobsError(f"{where}: context {name!r} names {kind} {shown(ref)}, which the kubeconfig lacks")
        found[kind] = copy.deepcopy(entries[ref])
    for kind, file_key, data_key in INLINE:
        body = found[kind].get(kind) or {}
        if body.get(file_key) and not body.get(data_key):
            body[data_key] = base64.b64encode(_read(where, p, body[file_key], file_key)).decode()
        body.pop(file_key, None)
    user = found["user"].get("user") or {}
    if user.get("tokenFile") and not user.get("token"):
        user["token"] = _read(where, p, user["tokenFile"], "tokenFile").decode().strip()
    user.pop("tokenFile", None)
    out_ctx = {"cluster": found["cluster"]["name"], **({"user": found["user"]["name"]} if ctx.get("user") else {})}
    if ctx.get("namespace"):
        out_ctx["namespace"] = ctx["namespace"]
    return {"apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
            "clusters": [found["cluster"]], "users": [found["user"]] if ctx.get("user") else [],
            "contexts": [{"name": name, "context": out_ctx}]}


def _read(where: str, kubeconfig: Path, file: str, key: str) -> bytes:
    f = Path(os.path.expanduser(file))
    if not f.is_absolute():
        f = kubeconfig.parent / f
    try:
        return f.read_bytes()
    except OSError as err:
        raise JobsError(f"{where}: its {key} {file!r} cannot be read ({err.strerror or err}); the Secret must hold "
                        "the file's content") from None


def kubeconfigs(clusters: list[inv.Cluster]) -> dict[str, str]:
    """Per cluster, its self-contained kubeconfig (YAML text)."""
    out = {}
    for c in clusters:
        path = c.data.get("kubeconfig")
        if not path or not isinstance(path, str):
            raise JobsError(f"{c.name}: host data 'kubeconfig' = {shown(path)} is not allowed; every cluster run "
                            "from Jobs needs the path of its kubeconfig")
        ctx = c.data.get("kube_context")
        if ctx is not None and not isinstance(ctx, str):
            raise JobsError(f"{c.name}: host data 'kube_context' = {shown(ctx)} is not allowed; use a context name")
        out[c.name] = yaml.safe_dump(standalone_kubeconfig(c.name, path, ctx), sort_keys=False)
    return out


# --- objects ----------------------------------------------------------------------------------------------------------
def meta(name: str, o: Options, **labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": o.namespace, "labels": {**MANAGED, FLEET_LABEL: o.fleet, **labels}}


def secret(name: str, o: Options, members: list[str], configs: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta(name, o), "type": "Opaque",
            "data": {f"{c}.kubeconfig": base64.b64encode(configs[c].encode()).decode() for c in members}}


def rbac(o: Options) -> list[dict[str, Any]]:
    """The two ServiceAccounts, each with a Role of only what it needs, and their RoleBindings."""
    rules = {
        shard_sa(o.fleet): [{"apiGroups": [""], "resources": ["configmaps"],
                             "verbs": ["get", "create", "update", "patch"]}],
        coordinator_sa(o.fleet): [
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "update", "patch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            # the scheduled converge held while the rollout runs (suspend), resumed when it converged
            {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "patch"],
             "resourceNames": [cronjob_name(o.fleet)]}],
    }
    out: list[dict[str, Any]] = []
    for sa, r in rules.items():
        out += [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(sa, o)},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(sa, o), "rules": r},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(sa, o),
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                 "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": o.namespace}]}]
    return out


def shard_args(kind: str, namespace: str, wave: int | None = None, rollout: str | None = None) -> list[str]:
    args = ["shard", "--fleet-file", FLEET_FILE, "--kind", kind, "--index", "$(JOB_COMPLETION_INDEX)",
            "--kubeconfigs", f"{SHARDS_DIR}/$(JOB_COMPLETION_INDEX)", "--run", "$(KNFLEET_RUN)",
            "--namespace", namespace]
    if wave is not None:
        args += ["--wave", str(wave)]
    if rollout is not None:
        args += ["--rollout", rollout]
    return args


def fleet_volume(configmap: str) -> dict[str, Any]:
    return {"name": "fleet", "configMap": {"name": configmap}}


IMAGE_UID = 65532  # the Containerfile's USER: the Secrets' files are readable by it through fsGroup
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID, "fsGroup": IMAGE_UID}


def rollout_fleet(fleet: str, rollout: str) -> str:
    """The rollout's own copy of fleet.json (immutable): its coordinator and wave Jobs read only that one, so a
    later `knfleet jobs --apply` changes neither what a running rollout rolls out nor how its shards are cut."""
    return f"{base(fleet)}-{rollout}-fleet"


SHARD_GRACE_S = 120


def indexed_job_spec(fleet: str, image: str, args: list[str], secrets: list[str], completions: int,
                     parallelism: int | None, deadline: int, backoff_per_index: int,
                     max_failed_indexes: int | None = None, labels: dict[str, str] | None = None,
                     configmap: str | None = None) -> dict[str, Any]:
    """An Indexed Job's spec: index I converges shard I with the kubeconfigs of Secret `secrets[I]` (every
    shard's Secret is a volume of the pod template; index I reads the folder /etc/knfleet/shards/I)."""
    volumes = [fleet_volume(configmap or base(fleet))] + [
        {"name": f"shard-{i}", "secret": {"secretName": s, "defaultMode": 0o440}}
                                       for i, s in enumerate(secrets)]
    mounts = [{"name": "fleet", "mountPath": FLEET_DIR, "readOnly": True}] + [
        {"name": f"shard-{i}", "mountPath": f"{SHARDS_DIR}/{i}", "readOnly": True} for i in range(len(secrets))]
    spec: dict[str, Any] = {
        "completionMode": "Indexed", "completions": completions,
        "parallelism": min(parallelism or completions, completions), "backoffLimitPerIndex": backoff_per_index,
        "activeDeadlineSeconds": deadline,
        "template": {
            "metadata": {"labels": {**MANAGED, FLEET_LABEL: fleet, **(labels or {})}},
            "spec": {
                "restartPolicy": "Never", "serviceAccountName": shard_sa(fleet), "securityContext": dict(POD_SECURITY),
                # SIGTERM (a spent failure budget, a drain) stops each cluster's run before its next step; this is
                # the time left to finish a write, release the locks and write the shard's result
                "terminationGracePeriodSeconds": SHARD_GRACE_S,
                "containers": [{
                    "name": CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent", "command": ["knfleet"],
                    "args": args, "workingDir": WORKDIR,
                    "env": [{"name": "KNFLEET_RUN",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}},
                            {"name": "KNFLEET_JOB_UID",  # the converge results belong to their Job (garbage collected)
                             "valueFrom": {"fieldRef": {
                                 "fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}}}],
                    "volumeMounts": mounts}],
                "volumes": volumes}}}
    if max_failed_indexes is not None:
        spec["maxFailedIndexes"] = max_failed_indexes
    return spec


def cronjob(doc: dict[str, Any], o: Options) -> dict[str, Any]:
    shards = doc["converge_shards"]
    job = indexed_job_spec(o.fleet, o.image, shard_args("converge", o.namespace),
                           [converge_secret(o.fleet, i) for i in range(len(shards))], len(shards), o.parallelism,
                           o.deadline, backoff_per_index=1)
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta(cronjob_name(o.fleet), o),
            # suspended while a rollout applied with it runs: its coordinator resumes it once the rollout converged
            "spec": {"suspend": o.rollout is not None,
                     "schedule": o.schedule, "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 3,
                     "failedJobsHistoryLimit": 3, "startingDeadlineSeconds": 300,
                     "jobTemplate": {"metadata": {"labels": {**MANAGED, FLEET_LABEL: o.fleet}}, "spec": job}}}


def wave_job(doc: dict[str, Any], wave: int, rollout: str, namespace: str, image: str,
             max_failed_indexes: int) -> dict[str, Any]:
    """The Indexed Job the coordinator creates for one wave (index I: shard I of the wave)."""
    fleet = doc["fleet"]
    w = wave_of(doc, wave)
    n = len(w["shards"])
    labels = {ROLLOUT_LABEL: rollout, WAVE_LABEL: str(wave)}
    spec = indexed_job_spec(fleet, image, shard_args("rollout", namespace, wave, rollout),
                            [rollout_secret(fleet, wave, i) for i in range(n)], n, doc.get("parallelism"),
                            int(doc.get("deadline") or DEFAULT_DEADLINE), backoff_per_index=0,
                            max_failed_indexes=max(0, min(max_failed_indexes, n - 1)), labels=labels,
                            configmap=rollout_fleet(fleet, rollout))
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": wave_job_name(fleet, rollout, wave), "namespace": namespace,
                         "labels": {**MANAGED, FLEET_LABEL: fleet, **labels}},
            "spec": spec}


def wave_of(doc: dict[str, Any], wave: int) -> dict[str, Any]:
    for w in doc["waves"]:
        if w["wave"] == wave:
            return w
    raise JobsError(f"--wave = {wave!r} is not allowed; the fleet's waves are "
                    f"{', '.join(str(w['wave']) for w in doc['waves'])}")


def coordinator_job(o: Options) -> dict[str, Any]:
    assert o.rollout is not None
    args = ["coordinate", "--fleet-file", FLEET_FILE, "--rollout", o.rollout, "--namespace", o.namespace,
            "--image", o.image]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": meta(coordinator_job_name(o.fleet, o.rollout), o, **{ROLLOUT_LABEL: o.rollout}),
            "spec": {
                "backoffLimit": 6,
                "podFailurePolicy": {"rules": [
                    # 0/1: done (1: some clusters failed), 2: halted, 3: cannot start: running it again changes
                    # nothing. 4 (the management cluster failed it, or a crash) and a kill: a new pod resumes.
                    {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                          "values": [1, 2, 3]}},
                    # a pod evicted or deleted (a node drained, a kill) does not count against backoffLimit
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
                "template": {
                    "metadata": {"labels": {**MANAGED, FLEET_LABEL: o.fleet, ROLLOUT_LABEL: o.rollout}},
                    "spec": {
                        "restartPolicy": "Never", "serviceAccountName": coordinator_sa(o.fleet),
                        "securityContext": dict(POD_SECURITY),
                        "containers": [{"name": CONTAINER, "image": o.image, "imagePullPolicy": "IfNotPresent",
                                        "command": ["knfleet"], "args": args, "workingDir": WORKDIR,
                                        "volumeMounts": [{"name": "fleet", "mountPath": FLEET_DIR,
                                                          "readOnly": True}]}],
                        "volumes": [fleet_volume(rollout_fleet(o.fleet, o.rollout))]}}}}


def render(clusters: list[inv.Cluster], o: Options, configs: dict[str, str]) -> list[dict[str, Any]]:
    """Every object, in the order they are applied (Secrets with their real data)."""
    check_options(o)
    doc = fleet_doc(clusters, o)
    if o.rollout is not None:  # an Indexed Job's pods are named <job>-<index>-<suffix>: each a DNS label
        for w in doc["waves"]:
            name = wave_job_name(o.fleet, o.rollout, w["wave"])
            if len(name) + 1 + len(str(len(w["shards"]) - 1)) > MAX_JOB_NAME:
                raise JobsError(f"--rollout = {o.rollout!r} is not allowed with --fleet {o.fleet!r}: wave "
                                f"{w['wave']}'s Job {name!r} with its {len(w['shards'])} indexes would give names "
                                f"longer than {MAX_JOB_NAME} characters; use a shorter rollout name")
    text = json.dumps(doc, sort_keys=True)
    if len(text.encode()) > FLEET_JSON_LIMIT:
        raise JobsError(f"fleet.json = {len(text.encode()):,} bytes is not allowed; a ConfigMap holds at most "
                        f"{FLEET_JSON_LIMIT:,}: split the inventory into several fleets (--fleet), or move per-cluster "
                        "data into fewer groups")
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": o.namespace, "labels": dict(MANAGED)}},
        *rbac(o)]
    if o.rollout is not None and o.converge:  # held before its desired state changes (the coordinator resumes it)
        objs.append(cronjob(doc, o))
    if o.converge:
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(base(o.fleet), o),
                     "data": {"fleet.json": text}})
    if o.rollout is not None:
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
                     "metadata": meta(rollout_fleet(o.fleet, o.rollout), o, **{ROLLOUT_LABEL: o.rollout}),
                     "data": {"fleet.json": text}})
    if o.converge:
        objs += [secret(converge_secret(o.fleet, i), o, s, configs) for i, s in enumerate(doc["converge_shards"])]
    if o.rollout is not None:
        objs += [secret(rollout_secret(o.fleet, w["wave"], i), o, s, configs)
                 for w in doc["waves"] for i, s in enumerate(w["shards"])]
    if o.converge and o.rollout is None:
        objs.append(cronjob(doc, o))
    if o.rollout is not None:
        objs.append(coordinator_job(o))
    return objs


def redacted(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects as printed: every Secret value replaced by <redacted>."""
    out = []
    for obj in objs:
        if obj.get("kind") == "Secret":
            obj = {**obj, "data": dict.fromkeys(obj.get("data") or {}, REDACTED)}
            obj.pop("stringData", None)
        out.append(obj)
    return out


def to_yaml(objs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False)


def write_out(objs: list[dict[str, Any]], folder: str) -> list[Path]:
    """One file per object (real Secret values), each readable by its owner only (0600), the folder 0700."""
    from knfleet import fsio

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = []
    for i, obj in enumerate(objs):
        p = d / f"{i:03d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        fsio.write_atomic(p, yaml.safe_dump(obj, sort_keys=False), mode=0o600)
        out.append(p)
    return out


def load_fleet(path: str) -> dict[str, Any]:
    """fleet.json as a shard or the coordinator reads it; JobsError names what is wrong."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobsError(f"--fleet-file = {path!r}: no such file; use the fleet ConfigMap's fleet.json") from None
    except (OSError, ValueError) as err:
        raise JobsError(f"--fleet-file = {path!r} cannot be read: {err}") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("hosts"), dict) \
            or not isinstance(doc.get("waves"), list) or not isinstance(doc.get("converge_shards"), list):
        raise JobsError(f"--fleet-file = {path!r} is not a knfleet fleet.json of version 1 (fleet, hosts, waves, "
                        "converge_shards)")
    shards = [*doc["converge_shards"], *(s for w in doc["waves"] for s in w.get("shards") or [])]
    unknown = sorted({c for s in shards for c in s} - set(doc["hosts"]))
    if unknown:
        raise JobsError(f"--fleet-file = {path!r}: the shards name the unknown host(s) {', '.join(unknown)}; allowed: "
                        f"the hosts of its 'hosts' ({', '.join(sorted(doc['hosts'])) or 'none'})")
    return doc


# --- the command (thin I/O) -------------------------------------------------------------------------------------------
def management(kubeconfig: str | None, context: str | None = None) -> Any:
    """The management cluster's client: the kubeconfig given, else KUBECONFIG, else the pod's service account."""
    from knfleet.kube.client import Cluster, Target

    path = kubeconfig or os.environ.get("KUBECONFIG") or in_cluster_kubeconfig()
    if not Path(path).is_file():
        raise JobsError(f"--management-kubeconfig = {path!r}: no such file; use the management cluster's kubeconfig")
    return Cluster(Target("management", path, context))


SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster_kubeconfig(sa_dir: Path = SA_DIR) -> str:
    """A kubeconfig file (temporary, 0600) for the pod's service account: the API server from the pod's env, its
    CA and token (read now: the kubelet rotates the token file)."""
    import tempfile

    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (sa_dir / "token").is_file():
        raise JobsError("no management cluster: KUBECONFIG is not set and this is not a pod with a service account "
                        f"({sa_dir}/token); set KUBECONFIG or --management-kubeconfig")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
           "clusters": [{"name": "in-cluster", "cluster": {"server": server,
                                                           "certificate-authority": str(sa_dir / "ca.crt")}}],
           "users": [{"name": "sa", "user": {"token": (sa_dir / "token").read_text().strip()}}],
           "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "sa"}}]}
    fd, path = tempfile.mkstemp(prefix="knfleet-sa-", suffix=".kubeconfig")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(doc, fh)
    return path


def command(inventory: str, o: Options, management_kubeconfig: str | None, context: str | None, apply: bool,
            out: str | None, data: list[str], fleet: str | None = None) -> int:
    """`knfleet jobs`: 0 rendered (and applied), 1 the apply failed part-way, 2 bad input (nothing applied)."""
    import sys

    from knfleet.kube.client import KubeError

    try:
        overrides = inv.parse_data(data)
        name = fleet_name(fleet, inventory) if fleet is not None or not o.fleet else o.fleet
        o = dataclasses.replace(o, data=overrides, fleet=name)
        check_options(o)
        if apply and not management_kubeconfig:
            raise JobsError("--apply needs --management-kubeconfig (the cluster the Jobs run on)")
        if management_kubeconfig and not Path(management_kubeconfig).is_file():
            raise JobsError(f"--management-kubeconfig = {management_kubeconfig!r}: no such file; use the management "
                            "cluster's kubeconfig")
        clusters = inv.load(inventory, overrides)
        objs = render(clusters, o, kubeconfigs(clusters))
    except InputError as err:
        print(f"knfleet jobs: {err}", file=sys.stderr)
        return 2
    if out:
        written = write_out(objs, out)
        print(f"knfleet jobs: wrote {len(written)} file(s) to {out} (mode 0600: they hold the kubeconfigs)",
              file=sys.stderr)
    if not apply:
        if not out:
            sys.stdout.write(to_yaml(redacted(objs)))
        return 0
    mgmt = management(management_kubeconfig, context)
    try:
        for obj in objs:
            mgmt.apply(obj)
            print(f"knfleet jobs: applied {obj['kind']}/{obj['metadata']['name']}", file=sys.stderr)
    except InputError as err:
        print(f"knfleet jobs: {err}", file=sys.stderr)
        return 2
    except KubeError as err:
        print(f"knfleet jobs: applying to the management cluster failed: {err}", file=sys.stderr)
        return 1
    finally:
        mgmt.close()
    return 0
