"""Per-host preparation of a run: settings, verified bundle, rendered manifests on disk."""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pyinfra.api.state import StateStage

from knfleet import bundle, lint, lock, models, render, settings, summary
from knfleet.kubectl import Target

_RUN_DIR: Path | None = None


def run_dir() -> Path:
    """A private folder for this run's rendered manifests, removed when the run ends."""
    global _RUN_DIR
    if _RUN_DIR is None:
        _RUN_DIR = Path(tempfile.mkdtemp(prefix="knfleet-run-"))
        atexit.register(shutil.rmtree, _RUN_DIR, True)
    return _RUN_DIR


def write_stages(host_name: str, stages: list[render.Stage]) -> dict[str, str]:
    folder = run_dir() / host_name.replace("/", "_").replace("@", "")
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for i, stage in enumerate(stages):
        path = folder / f"{i:02d}-{stage.name}.json"
        path.write_text(stage.manifest())
        paths[stage.name] = str(path)
    return paths


class LintFailed(ValueError):
    """A model service would be rejected by Knative's webhook; nothing was changed on any cluster."""


def with_model_features(cfg: settings.InstallSettings, found: list[models.Model]) -> settings.InstallSettings:
    """The config-features flags the models need turned on, unless group data sets the flag itself (then an
    explicit `disabled` stays, and lint reports the model field it refuses)."""
    return dataclasses.replace(cfg, features={**models.needed_features(found), **cfg.features})


def cluster_config(cfg: settings.InstallSettings) -> lint.ClusterConfig:
    """The cluster configuration a run installs, as lint sees it (one function for the deploy and `knfleet lint`)."""
    return lint.ClusterConfig(autoscaler=cfg.autoscaler, defaults=cfg.defaults, features=cfg.features,
                              deployment=cfg.deployment, proxy_timeout_seconds=render.proxy_timeout(cfg))


def lint_models(where: str, cfg: settings.InstallSettings, found: list[models.Model]) -> list[lint.Problem]:
    return [p for m in found for p in lint.lint_service(models.render_service(m), cluster_config(cfg), where)]


def check_models(host_name: str, cfg: settings.InstallSettings, found: list[models.Model]) -> None:
    """Lint the rendered services with the configuration knfleet installs: errors stop the run."""
    problems = lint_models(f"group data of {host_name} (models)", cfg, found)
    for p in problems:
        if p.severity == "warning":
            print(f"knfleet: {p}", file=sys.stderr, flush=True)
    errors = [str(p) for p in problems if p.severity == "error"]
    if errors:
        raise LintFailed("lint found errors Knative would reject:\n  " + "\n  ".join(errors))


def check_config(cfg: settings.InstallSettings, b: bundle.Bundle) -> None:
    """Knative's config webhook verdict on the ConfigMaps as installed, before any cluster is touched."""
    problems = settings.knative_problems(render.config_maps(b, cfg))
    for p in problems:
        if p.severity == "warning":
            print(f"knfleet: warning: {p}", file=sys.stderr, flush=True)
    errors = [str(p) for p in problems if p.severity == "error"]
    if errors:
        raise settings.SettingsError("\n".join(errors))


def prepare(host_name: str, data: Any) -> tuple[Target, settings.InstallSettings, dict[str, str], list[models.Model]]:
    """Check the data, verify the bundle, lint and render; raise before any change when anything is wrong."""
    cfg = settings.from_data(data)
    found = models.from_data(data.get("models"))
    cfg = with_model_features(cfg, found)
    target = Target.from_host_data(data)
    b = bundle.load(cfg.knative_version, cfg.bundle_dir, cfg.optional_files)
    if cfg.action == "install":
        check_config(cfg, b)
        check_models(host_name, cfg, found)
        stages = render.install_stages(b, cfg)
        if found:
            stages.append(render.Stage("services", tuple(models.render_manifest(found))))
    else:
        stages = render.uninstall_stages(b, cfg)
    return target, cfg, write_stages(host_name, stages), found


_SUMMARY_REGISTERED = False


def register_summary(state: Any, action: str) -> None:
    """At exit (after pyinfra's own results): one line per cluster, and the JSON report if asked for."""
    global _SUMMARY_REGISTERED
    if _SUMMARY_REGISTERED:
        return
    _SUMMARY_REGISTERED = True

    def show() -> None:
        lock.release_all(state)
        if state.current_stage is None or not state.ops:
            return
        dry = state.current_stage in (StateStage.Setup, StateStage.Connect, StateStage.Prepare)
        results = summary.cluster_results(state, dry=dry)
        text = summary.lines(results, action)
        if text:
            print("\n".join(text), file=sys.stderr, flush=True)
        if summary.report_path():
            summary.write_report(summary.report_path(), results, action, dry)
    atexit.register(show)


def fail_early(err: Exception) -> None:
    """Bad input: say so and stop the whole run before any cluster is touched."""
    print(f"knfleet: error: {err}\nknfleet: nothing was changed on any cluster.", file=sys.stderr, flush=True)
    os._exit(2)
