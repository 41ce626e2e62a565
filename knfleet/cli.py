"""The `knfleet` command: what pyinfra's CLI does not do.

    knfleet lint [--cluster-config FILE] [--strict] [--json] PATH...
    knfleet rollout INVENTORY [--bake S] [--max-failed-clusters N] [--resume] [--report FILE]
    knfleet status INVENTORY [--json]
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path
from typing import Any

import yaml

from knfleet import __version__, lint, models, rollout, status


def _load_cluster_config(path: str | None) -> lint.ClusterConfig:
    if not path:
        return lint.ClusterConfig()
    docs: list[dict[str, Any]] = []
    for d in yaml.safe_load_all(Path(path).read_text()):
        if isinstance(d, dict) and d.get("kind") == "List":
            docs += d.get("items") or []
        elif isinstance(d, dict):
            docs.append(d)
    return lint.ClusterConfig.from_configmaps(docs)


def group_data_config(values: dict[str, Any], base: lint.ClusterConfig,
                      found: list[models.Model]) -> lint.ClusterConfig:
    """The cluster config a group data module asks knfleet to install, over `base`."""
    return lint.ClusterConfig(
        autoscaler={**base.autoscaler, **{k: str(v) for k, v in (values.get("knative_autoscaler") or {}).items()}},
        defaults={**base.defaults, **{k: str(v) for k, v in (values.get("knative_defaults") or {}).items()}},
        features={**base.features, **{k: str(v) for k, v in (values.get("knative_features") or {}).items()},
                  **models.needed_features(found)},
        deployment={**base.deployment, **{k: str(v) for k, v in (values.get("knative_deployment") or {}).items()}},
        max_gpus_per_node=base.max_gpus_per_node, proxy_timeout_seconds=base.proxy_timeout_seconds,
    )


def lint_path(path: str, cfg: lint.ClusterConfig) -> list[lint.Problem]:
    p = Path(path)
    if p.suffix == ".py":
        values = runpy.run_path(str(p))
        try:
            found = models.from_data(values.get("models"), where=f"{path}: models")
        except models.ModelError as err:
            return [lint.Problem("error", path, "-", "models", None, str(err))]
        local = group_data_config(values, cfg, found)
        return [pr for m in found for pr in lint.lint_service(models.render_service(m), local, path)]
    try:
        docs = [d for d in yaml.safe_load_all(p.read_text()) if d]
    except yaml.YAMLError as err:
        return [lint.Problem("error", path, "-", "-", None, f"not valid YAML: {err}")]
    return lint.lint_objects(docs, cfg, path)


def cmd_lint(args: argparse.Namespace) -> int:
    try:
        cfg = _load_cluster_config(args.cluster_config)
    except (OSError, yaml.YAMLError) as err:
        print(f"knfleet lint: cannot read --cluster-config {args.cluster_config}: {err}", file=sys.stderr)
        return 2
    problems: list[lint.Problem] = []
    for path in args.paths:
        if not Path(path).exists():
            print(f"knfleet lint: {path}: no such file", file=sys.stderr)
            return 2
        problems += lint_path(path, cfg)
    failed = lint.has_errors(problems, args.strict)
    if args.json:
        print(json.dumps({"ok": not failed, "problems": [p.as_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p)
        errors = sum(p.severity == "error" for p in problems)
        print(f"{errors} error(s), {len(problems) - errors} warning(s) in {len(args.paths)} file(s)", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="knfleet", description="Serverless GPU inference on Kubernetes, by pyinfra.")
    ap.add_argument("--version", action="version", version=f"knfleet {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("lint", help="check Knative Services / group data before they reach a cluster")
    p.add_argument("paths", nargs="+", metavar="PATH", help="Knative Service YAML files or group data modules")
    p.add_argument("--cluster-config", metavar="FILE",
                   help="YAML with the cluster's config-autoscaler, config-defaults, config-features ConfigMaps")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_lint)
    r = sub.add_parser("rollout", help="deploy wave by wave (canary first), halting when a wave breaks")
    r.add_argument("inventory")
    r.add_argument("--bake", type=float, default=0, metavar="SECONDS", help="wait, then smoke-test a wave again")
    r.add_argument("--max-failed-clusters", type=int, default=0, metavar="N",
                   help="halt when more than N clusters failed (default 0)")
    r.add_argument("--resume", action="store_true", help="continue a halted rollout from its failed wave")
    r.add_argument("--state", metavar="FILE",
                   help="rollout state file (default reports/rollout-<inventory>.state.json)")
    r.add_argument("--report", metavar="FILE", help="write the JSON report here")
    r.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="passed to pyinfra --data")
    r.set_defaults(func=lambda a: rollout.rollout(a.inventory, a.bake, a.max_failed_clusters, a.state, a.resume,
                                                  a.report, a.data))
    st = sub.add_parser("status", help="per cluster: reachable, version, drift, model services (changes nothing)")
    st.add_argument("inventory")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=lambda a: status.status(a.inventory, a.json))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
