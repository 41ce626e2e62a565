"""The `knfleet` command: what pyinfra's CLI does not do.

    knfleet lint [--cluster-config FILE] [--knative-version X.Y.Z] [--strict] [--json] PATH... [--reports JSON...]
                                                                     (YAML, group data or inventory files)
    knfleet rollout INVENTORY [--bake S] [--max-failed-clusters N] [--resume] [--report FILE]
    knfleet rollback INVENTORY SERVICE [--limit CLUSTER]... [--report FILE]
    knfleet status INVENTORY [--json]
    knfleet diff INVENTORY [--json] [--report FILE] [--report-html FILE]
    knfleet doctor INVENTORY [--json]
    knfleet report JSON... [-o FILE.html]
    knfleet advise JSON... [--json] [--gpus-per-pod N] [--gpu-hour-cost X --wait-hour-cost Y] [--wakes-per-day N]
    knfleet jobs INVENTORY [--management-kubeconfig K] [--apply] [--out DIR] [--rollout NAME] [--shard-size N] ...
    knfleet shard --fleet-file F --kind converge|rollout --index I --kubeconfigs DIR --run RUN --namespace NS
    knfleet coordinate --fleet-file F --rollout NAME --namespace NS --image IMG
    knfleet completion bash|zsh
    knfleet --version
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import runpy
import sys
import types
from pathlib import Path
from typing import Any

import yaml

from knfleet import __version__, completion
from knfleet.desired import lint, manifests, models, plan, releases, render, settings

MeasuredColdStarts = dict[str, lint.Measured] | None  # per service: its slowest measured cold start (lint --reports)


def version() -> str:
    """The installed package's version (its metadata), else the source's."""
    from importlib import metadata

    try:
        return metadata.version("knfleet")
    except metadata.PackageNotFoundError:
        return __version__


def _load_cluster_config(path: str | None) -> lint.ClusterConfig:
    if not path:
        return lint.ClusterConfig()
    docs: list[dict[str, Any]] = []
    for d in yaml.load_all(Path(path).read_text(), Loader=render.LOADER):  # noqa: S506 - a safe loader
        if isinstance(d, dict) and d.get("kind") == "List":
            docs += d.get("items") or []
        elif isinstance(d, dict):
            docs.append(d)
    return lint.ClusterConfig.from_configmaps(docs)


def module_values(path: Path) -> dict[str, Any]:
    """The public values of a Python data module (group data or inventory), run as pyinfra runs it: with the
    working directory importable."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    return {k: v for k, v in runpy.run_path(str(path)).items() if not k.startswith("_")}


def group_data_values(path: Path) -> dict[str, Any]:
    """A group data module's values over group_data/all.py's, as pyinfra merges them for a host of that group."""
    out: dict[str, Any] = {}
    base = path.with_name("all.py")
    if path.name != "all.py" and base.is_file():
        out.update(module_values(base))
    out.update(module_values(path))
    return out


def lint_group_data(path: str, base: lint.ClusterConfig, measured: MeasuredColdStarts = None) -> list[lint.Problem]:
    """Lint a group data module exactly as a deploy of that group checks it (same settings, same cluster config)."""
    return lint_values(path, group_data_values(Path(path)), base, measured)


def is_inventory(path: Path, values: dict[str, Any]) -> bool:
    """A pyinfra inventory module (its public `values`) rather than group data: not under group_data/, and every
    public value is a group (a list of hosts, or a (hosts, data) tuple), a host being a name or a (name, data)
    pair."""
    if path.parent.name in ("group_data", "inventories"):
        return path.parent.name == "inventories"
    values = {k: v for k, v in values.items() if not isinstance(v, (types.ModuleType, type)) and not callable(v)}

    def host(h: Any) -> bool:
        return isinstance(h, str) or (isinstance(h, tuple) and len(h) == 2 and isinstance(h[0], str)
                                      and isinstance(h[1], dict))

    def group(g: Any) -> bool:
        if isinstance(g, tuple) and len(g) == 2 and isinstance(g[1], dict):
            g = g[0]
        return isinstance(g, list) and all(host(h) for h in g)
    return bool(values) and all(group(v) for v in values.values())


def lint_inventory(path: str, base: lint.ClusterConfig, measured: MeasuredColdStarts = None) -> list[lint.Problem]:
    """Lint each cluster of an inventory with the data a deploy gives it (its own over its groups', over
    group_data/ of the working directory): one set of problems per cluster, named `<file> (<cluster>)`."""
    from knfleet.fleet import inventory

    try:
        clusters = inventory.load(path)
    except inventory.InventoryError as err:
        severity = "warning" if str(err).endswith(": no hosts") else "error"
        return [lint.Problem(severity, path, "-", "inventory", None, str(err) + (
            " (nothing linted)" if severity == "warning" else ""))]
    return [pr for c in clusters for pr in lint_values(f"{path} ({c.name})", c.data, base, measured)]


def lint_values(path: str, data: dict[str, Any], base: lint.ClusterConfig, measured: MeasuredColdStarts = None
                ) -> list[lint.Problem]:
    values = settings.Data(data, action="install")
    try:
        cfg = settings.from_data(values)
        found = models.from_data(values.get("models"), where=f"{path}: models")
    except (settings.SettingsError, models.ModelError) as err:
        return [lint.Problem("error", path, "-", "group data", None, str(err))]
    cfg = plan.with_model_features(cfg, found)
    try:
        files = manifests.documents(values.get("model_manifests"))
    except manifests.ManifestError as err:
        return [lint.Problem("error", path, "-", "model_manifests", None, str(err))]
    cfg = dataclasses.replace(cfg, features={**manifests.needed_features(files), **cfg.features})
    problems = [lint.Problem(p.severity, path, "-", p.field, p.value, f"{p.message} ({p.configmap})")
                for p in settings.knative_problems(render.config_maps(None, cfg), cfg.knative_version)]
    cfg = dataclasses.replace(
        cfg, autoscaler={**base.autoscaler, **cfg.autoscaler}, defaults={**base.defaults, **cfg.defaults},
        features={**base.features, **cfg.features}, deployment={**base.deployment, **cfg.deployment})
    mine, found_in_files = manifest_problems(path, values, cfg, found, files)
    slow = lint.below_measured([models.render_service(m) for m in found] + mine, plan.cluster_config(cfg), path,
                               measured)
    return problems + plan.lint_models(path, cfg, found) + found_in_files + unreachable_images(path, cfg, found, mine) \
        + slow


def manifest_problems(path: str, values: dict[str, Any], cfg: settings.InstallSettings, found: list[models.Model],
                      files: list[tuple[str, list[Any]]]) -> tuple[list[dict[str, Any]], list[lint.Problem]]:
    """The files of `model_manifests` checked as a deploy of this data checks them (each file as `knfleet lint
    FILE` does, then together: a service defined twice): the services as applied, and the problems."""
    try:
        entries = manifests.entries_of(values.get("model_manifest_settings"))
    except manifests.ManifestError as err:
        return [], [lint.Problem("error", path, "-", "model_manifest_settings", None, str(err))]
    checked = [manifests.check_documents(f, docs, plan.cluster_config(cfg), entries) for f, docs in files]
    problems = [p for c in checked for p in c.problems]
    if any(c.errors for c in checked):
        return [], problems
    try:
        mine = manifests.together(checked, entries, found, f"{path}: models")
    except manifests.ManifestError as err:
        return [], [*problems, lint.Problem("error", path, "-", "model_manifests", None, str(err))]
    return [s.service for s in mine.services], problems


def unreachable_images(path: str, cfg: settings.InstallSettings, found: list[models.Model],
                       services: list[dict[str, Any]] | None = None) -> list[lint.Problem]:
    """Every image of the rendered install (release, post-install Jobs, proxy) and of the model services that still
    points at a registry `unreachable_registries` lists."""
    if not cfg.unreachable_registries:
        return []
    from knfleet.desired import bundle, mirror, upgrade

    objects: list[dict[str, Any]] = []
    out: list[lint.Problem] = []
    try:
        b = bundle.load(cfg.knative_version, cfg.bundle_dir, cfg.optional_files, None, cfg.bundle_files)
        objects += [o for st in render.install_stages(b, cfg) for o in st.objects]
        if upgrade.JOBS_FILE in b.files:
            objects += [render.images(j, cfg) for j in render.load_docs(b.text(upgrade.JOBS_FILE))]
    except bundle.BundleError as err:
        out.append(lint.Problem("warning", path, "-", "install", None, f"release images not checked: {err}"))
    objects += [models.render_service(m) for m in found] + list(services or [])
    for name, where, image in mirror.unreachable(objects, cfg.unreachable_registries):
        out.append(lint.Problem("error", path, name, where, image,
                                f"points at {mirror.registry_of(image)}, which unreachable_registries lists: the pull "
                                "fails there (set image_mirror, or the model's image)"))
    return out


def lint_path(path: str, cfg: lint.ClusterConfig, measured: MeasuredColdStarts = None) -> list[lint.Problem]:
    """A file's problems; with `measured` (slowest cold starts from reports), a deadline below one is a warning."""
    p = Path(path)
    if p.suffix == ".py":
        try:
            inv = is_inventory(p, module_values(p))
            return lint_inventory(path, cfg, measured) if inv else lint_group_data(path, cfg, measured)
        except Exception as err:  # noqa: BLE001 - a data module that does not run: say why, no traceback
            return [lint.Problem("error", path, "-", "module", None, f"cannot be run: {type(err).__name__}: {err}")]
    checked = manifests.check_file(path, cfg)  # the deploy's check of a model_manifests file
    return list(checked.problems) + lint.below_measured([s.service for s in checked.services], cfg, path, measured)


def measured_cold_starts(paths: list[str]) -> dict[str, lint.Measured]:
    """Per service, the slowest cold start in saved reports (each checked as `knfleet report` checks it: a bad
    one raises ReportError naming the file and the field)."""
    from knfleet.report import advise, html

    reports = [(path, html.load(path)) for path in paths]
    return {name: lint.Measured(secs, cluster, report, tuple(paths), advise.deadline_for(secs))
            for name, (secs, cluster, report) in advise.slowest(reports).items()}


def cmd_lint(args: argparse.Namespace) -> int:
    try:
        cfg = _load_cluster_config(args.cluster_config)
    except (OSError, yaml.YAMLError) as err:
        print(f"knfleet lint: cannot read --cluster-config {args.cluster_config}: {err}", file=sys.stderr)
        return 2
    if args.knative_version not in releases.RELEASES:
        print(f"knfleet lint: --knative-version {args.knative_version!r} is not supported; use one of "
              f"{', '.join(releases.RELEASES)}", file=sys.stderr)
        return 2
    cfg = dataclasses.replace(cfg, release=args.knative_version)
    from knfleet.report import validate

    try:
        measured = measured_cold_starts(args.reports) if args.reports else None
    except validate.ReportError as err:
        print(f"knfleet lint: --reports: {err}", file=sys.stderr)
        return 2
    problems: list[lint.Problem] = []
    for path in args.paths:
        if not Path(path).exists():
            print(f"knfleet lint: {path}: no such file", file=sys.stderr)
            return 2
        problems += lint_path(path, cfg, measured)
    failed = lint.has_errors(problems, args.strict)
    if args.json:
        print(json.dumps({"ok": not failed, "problems": [p.as_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p)
        errors = sum(p.severity == "error" for p in problems)
        print(f"{errors} error(s), {len(problems) - errors} warning(s) in {len(args.paths)} file(s)", file=sys.stderr)
    return 1 if failed else 0


def cooperative() -> None:
    """pyinfra (whose inventories these commands read) runs on gevent and patches the standard library when it
    is imported; that must happen before anything else imports ssl or sockets."""
    from gevent import monkey

    monkey.patch_all()


def cmd_rollout(a: argparse.Namespace) -> int:
    cooperative()
    from knfleet.fleet import rollout

    data = [*a.data, "smoke_cold=true"] if a.smoke_cold else a.data
    return rollout.rollout(a.inventory, a.bake, a.max_failed_clusters, a.state, a.resume, a.report, data,
                           report_html=a.report_html)


def cmd_rollback(a: argparse.Namespace) -> int:
    cooperative()
    from knfleet.fleet import rollout

    return rollout.rollback(a.inventory, a.service, a.limit, a.data, a.report)


def cmd_report(a: argparse.Namespace) -> int:
    from knfleet.report import html

    try:
        reports = [html.load(path) for path in a.reports]
        if a.output == "-":
            sys.stdout.write(html.render(reports))
        else:
            html.write(a.output, reports)
    except html.ReportError as err:
        print(f"knfleet report: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"knfleet report: -o {a.output}: cannot write it: {err.strerror or err}", file=sys.stderr)
        return 2
    if a.output != "-":
        print(f"knfleet report: wrote {a.output} ({len(reports)} report(s))", file=sys.stderr)
    return 0


def cmd_advise(a: argparse.Namespace) -> int:
    from knfleet.report import advise, html

    try:
        reports = [(path, html.load(path)) for path in dict.fromkeys(a.reports)]
    except html.ReportError as err:
        print(f"knfleet advise: {err}", file=sys.stderr)
        return 2
    found = advise.advise(reports, advise.Assumptions(a.gpus_per_pod, a.gpu_hour_cost, a.wait_hour_cost,
                                                     a.wakes_per_day))
    sys.stdout.write(json.dumps(found, indent=2) + "\n" if a.json else advise.text(found))
    return 0


def _positive(kind: type) -> Any:
    """An argparse type: a finite number above 0 (a whole one for int), else a message naming what is allowed."""
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            v = None
        if v is None or not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected a "
                                             f"{'whole number' if kind is int else 'number'} above 0")
        return v
    return parse


def cmd_completion(a: argparse.Namespace) -> int:
    sys.stdout.write(completion.script(a.shell, parser()))
    return 0


def cmd_doctor(a: argparse.Namespace) -> int:
    cooperative()
    from knfleet.fleet import doctor

    return doctor.doctor(a.inventory, a.json)


def cmd_status(a: argparse.Namespace) -> int:
    cooperative()
    from knfleet.fleet import status

    return status.status(a.inventory, a.json)


def cmd_diff(a: argparse.Namespace) -> int:
    cooperative()
    from knfleet.fleet import diff

    return diff.run(a.inventory, a.json, a.report, a.report_html)


def cmd_jobs(a: argparse.Namespace) -> int:
    cooperative()
    from knfleet.fleet import jobs

    o = jobs.Options(fleet="",
                     namespace=a.namespace, image=a.image, shard_size=a.shard_size, schedule=a.schedule,
                     parallelism=a.parallelism, deadline=a.deadline, max_failed=a.max_failed_clusters,
                     rollout=a.rollout, converge=not a.no_converge)
    return jobs.command(a.inventory, o, a.management_kubeconfig, a.management_context, a.apply, a.out, a.data,
                        fleet=a.fleet)


def cmd_shard(a: argparse.Namespace) -> int:
    cooperative()
    from knfleet.fleet import shard

    return shard.run(a.fleet_file, a.kind, a.index, a.kubeconfigs, a.run, a.namespace, a.wave, a.rollout)


def cmd_coordinate(a: argparse.Namespace) -> int:
    from knfleet.fleet import coordinator

    return coordinator.main(a.fleet_file, a.rollout, a.namespace, a.image, a.poll)


def _whole(least: int) -> Any:
    """An argparse type: a whole number >= least, else a message naming what is allowed."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected a whole number >= {least}")
        return v
    return parse


def _jobs_parsers(sub: Any) -> None:
    from knfleet.fleet import jobs

    kind = completion.kind
    j = sub.add_parser("jobs", help="render (--apply: apply) what runs the fleet from a management cluster: a CronJob "
                                    "of Indexed Jobs over shards, and with --rollout a coordinator Job")
    kind(j.add_argument("inventory"), "inventory")
    kind(j.add_argument("--management-kubeconfig", metavar="FILE",
                        help="the management cluster's kubeconfig (needed by --apply)"), "file")
    j.add_argument("--management-context", metavar="NAME", help="its context (default: its current one)")
    j.add_argument("--apply", action="store_true", help="apply the objects (server-side apply) instead of printing")
    kind(j.add_argument("--out", metavar="DIR", help="write each object to a file in DIR (mode 0600: real Secrets)"),
         "file")
    j.add_argument("--namespace", default="knfleet", help="the management cluster's namespace (default knfleet)")
    j.add_argument("--fleet", help="the fleet's name (default: the inventory file's stem)")
    j.add_argument("--image", default=f"knfleet:{__version__}", help="knfleet's image (default %(default)s)")
    j.add_argument("--shard-size", type=_whole(1), default=jobs.DEFAULT_SHARD_SIZE, metavar="N",
                   help="clusters per shard at most (default %(default)s); shards are balanced by count")
    j.add_argument("--schedule", default=jobs.DEFAULT_SCHEDULE, help="the converge CronJob's schedule "
                   "(default '%(default)s')")
    j.add_argument("--parallelism", type=_whole(1), metavar="N", help="shards run at once (default: all)")
    j.add_argument("--deadline", type=_whole(1), default=jobs.DEFAULT_DEADLINE, metavar="SECONDS",
                   help="a Job's activeDeadlineSeconds (default %(default)s)")
    j.add_argument("--max-failed-clusters", type=_whole(0), default=0, metavar="N",
                   help="the rollout halts when more than N clusters failed (default 0), as knfleet rollout")
    j.add_argument("--rollout", metavar="NAME", help="also the coordinator Job of rollout NAME (one name per rollout)")
    j.add_argument("--no-converge", action="store_true", help="no converge CronJob (and no converge Secrets)")
    j.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                   help="carried in fleet.json and applied by every shard (as pyinfra --data)")
    j.set_defaults(func=cmd_jobs)
    s = sub.add_parser("shard", help="(in a Job's pod) converge one shard of the fleet, write its result ConfigMap")
    kind(s.add_argument("--fleet-file", required=True, metavar="FILE", help="fleet.json"), "json")
    s.add_argument("--kind", required=True, choices=("converge", "rollout"))
    s.add_argument("--index", required=True, type=_whole(0), metavar="I", help="the shard ($(JOB_COMPLETION_INDEX))")
    kind(s.add_argument("--kubeconfigs", required=True, metavar="DIR", help="the shard's <cluster>.kubeconfig files"),
         "file")
    s.add_argument("--run", required=True, help="the run's name (the Job's)")
    s.add_argument("--namespace", required=True, help="where the result ConfigMap goes")
    s.add_argument("--wave", type=_whole(0), metavar="W", help="the rollout wave (--kind rollout)")
    s.add_argument("--rollout", metavar="NAME", help="the rollout's name (--kind rollout)")
    s.set_defaults(func=cmd_shard)
    c = sub.add_parser("coordinate", help="(in the coordinator Job's pod) run a rollout's waves as Indexed Jobs, "
                                          "resumable, halting as knfleet rollout")
    kind(c.add_argument("--fleet-file", required=True, metavar="FILE", help="fleet.json"), "json")
    c.add_argument("--rollout", required=True, metavar="NAME")
    c.add_argument("--namespace", required=True)
    c.add_argument("--image", required=True, help="the image of the wave Jobs' pods")
    c.add_argument("--poll", type=_positive(float), default=2.0, metavar="SECONDS",
                   help="how often the wave Job is looked at (default 2)")
    c.set_defaults(func=cmd_coordinate)


def parser() -> argparse.ArgumentParser:
    """knfleet's command line (also what `knfleet completion` is made from)."""
    kind = completion.kind
    ap = argparse.ArgumentParser(prog="knfleet", description="Serverless GPU inference on Kubernetes, by pyinfra.")
    ap.add_argument("--version", action="version", version=f"knfleet {version()}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("lint", help="check Knative Services / group data / inventories before they reach a cluster")
    kind(p.add_argument("paths", nargs="+", metavar="PATH",
                        help="Knative Service YAML files, group data modules or inventories"),
         "lint")
    kind(p.add_argument("--cluster-config", metavar="FILE",
                        help="YAML with the cluster's config-autoscaler, config-defaults, config-features ConfigMaps"),
         "lint")
    p.add_argument("--knative-version", default=releases.DEFAULT, metavar="X.Y.Z",
                   help=f"the Knative Serving release whose webhook decides for Service YAML files ({releases.DEFAULT}"
                        f"; one of {', '.join(releases.RELEASES)}); group data and inventories use their "
                        "knative_version")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    kind(p.add_argument("--reports", nargs="+", action="extend", default=[], metavar="JSON",
                        help="saved JSON reports: warn where a model's progress deadline is below its slowest "
                             "measured cold start (put it after the paths)"), "json")
    p.set_defaults(func=cmd_lint)
    r = sub.add_parser("rollout", help="deploy wave by wave (canary first), halting when a wave breaks")
    kind(r.add_argument("inventory"), "inventory")
    r.add_argument("--bake", type=float, default=0, metavar="SECONDS", help="wait, then smoke-test a wave again")
    r.add_argument("--max-failed-clusters", type=int, default=0, metavar="N",
                   help="halt when more than N clusters failed (default 0)")
    r.add_argument("--resume", action="store_true", help="continue a halted rollout from its failed wave")
    kind(r.add_argument("--state", metavar="FILE",
                        help="rollout state file (default reports/rollout-<inventory>.state.json)"), "json")
    kind(r.add_argument("--report", metavar="FILE", help="write the JSON report here"), "json")
    kind(r.add_argument("--report-html", metavar="FILE",
                        help="write the HTML report here (one self-contained page)"), "html")
    r.add_argument("--smoke-cold", action="store_true",
                   help="wake model services at zero to smoke-test them and report their cold start")
    r.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="passed to pyinfra --data")
    r.set_defaults(func=cmd_rollout)
    rb = sub.add_parser("rollback", help="put a progressively rolled-out model service back on its previous version")
    kind(rb.add_argument("inventory"), "inventory")
    rb.add_argument("service", help="the model service: its name or namespace/name")
    rb.add_argument("--limit", action="append", default=[], metavar="CLUSTER",
                    help="only these clusters (default: every cluster of the inventory)")
    kind(rb.add_argument("--report", metavar="FILE", help="write the JSON report here"), "json")
    rb.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="passed to pyinfra --data")
    rb.set_defaults(func=cmd_rollback)
    st = sub.add_parser("status", help="per cluster: reachable, version, drift, model services (changes nothing)")
    kind(st.add_argument("inventory"), "inventory")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    df = sub.add_parser("diff", help="per cluster, changing nothing: each field a run would change and who changed it "
                                     "last (exit 0 none, 1 changes, 2 bad input, 3 cluster errors)")
    kind(df.add_argument("inventory"), "inventory")
    df.add_argument("--json", action="store_true", help="the JSON report on standard output")
    kind(df.add_argument("--report", metavar="FILE", help="write the JSON report here"), "json")
    kind(df.add_argument("--report-html", metavar="FILE", help="write the HTML report here"), "html")
    df.set_defaults(func=cmd_diff)
    dr = sub.add_parser("doctor", help="per cluster, changing nothing: kubeconfig, context, credential plugin, "
                                       "API server, version, rights, release files")
    kind(dr.add_argument("inventory"), "inventory")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=cmd_doctor)
    rp = sub.add_parser("report", help="render saved JSON reports as one HTML page (several: trends over time)")
    kind(rp.add_argument("reports", nargs="+", metavar="JSON",
                         help="reports of runs (KNFLEET_REPORT), rollouts (--report) or knfleet status --json"), "json")
    kind(rp.add_argument("-o", "--output", metavar="FILE.html", default="-",
                         help="the page to write (default: standard output)"), "html")
    rp.set_defaults(func=cmd_report)
    ad = sub.add_parser("advise", help="from saved reports: measured cold starts per model service and the Knative "
                                       "settings that follow (progress deadline, scale-down delay, min-scale)")
    kind(ad.add_argument("reports", nargs="+", metavar="JSON", help="reports of runs with --smoke-cold"), "json")
    ad.add_argument("--json", action="store_true", help="the advice as JSON (docs/advise.md: its shape)")
    ad.add_argument("--gpus-per-pod", type=_positive(int), default=1, metavar="N",
                    help="GPUs a model pod holds (default 1): what min-scale 1 costs")
    ad.add_argument("--gpu-hour-cost", type=_positive(float), metavar="X", help="what a GPU hour costs")
    ad.add_argument("--wait-hour-cost", type=_positive(float), metavar="Y",
                    help="what an hour of users waiting costs (with --gpu-hour-cost: a min-scale verdict)")
    ad.add_argument("--wakes-per-day", type=_positive(float), metavar="N",
                    help="wakes from zero per day in real traffic (default: those the reports saw, per day)")
    ad.set_defaults(func=cmd_advise)
    _jobs_parsers(sub)
    co = sub.add_parser("completion", help="print the shell completion script: source <(knfleet completion bash)")
    co.add_argument("shell", choices=("bash", "zsh"))
    co.set_defaults(func=cmd_completion)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`knfleet lint … | head`): stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
