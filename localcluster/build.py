"""Build the local clusters' binaries from their Go modules, once, into a cache.

    python -m localcluster.build          # builds what is missing, prints each step's time
    python -m localcluster.build --print  # prints the bin folder

kube-apiserver, kube-controller-manager, kube-scheduler and kubectl come from
k8s.io/kubernetes/cmd/... through a small generated Go module whose `replace`
directives point every k8s.io staging module at its v0.<minor>.<patch> release;
etcd from go.etcd.io/etcd/server/v3's etcdmain; kwok with `go install`; Knative Serving's webhook,
controller, migrate and cleanup of each release in versions.KNATIVE_BUILDS from knative.dev/serving through a
wrapper module that repeats serving's own `replace` directives (the controller from a small main of ours:
localcluster/knative/controller/main.go, the same for every release built here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from localcluster import paths, versions

ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def _log(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"[build] failed ({proc.returncode}): {' '.join(cmd)} in {cwd}")


def kubernetes_go_mod() -> str:
    sv = versions.staging_version()
    lines = [
        "module knfleet.local/k8sbin",
        "",
        "go 1.23.0",
        "",
        f"require k8s.io/kubernetes v{versions.KUBERNETES}",
        "",
        "replace (",
    ]
    lines += [f"\tk8s.io/{m} => k8s.io/{m} {sv}" for m in versions.K8S_STAGING_MODULES]
    lines += [")", ""]
    return "\n".join(lines)


def etcd_go_mod() -> str:
    return f"module knfleet.local/etcdbin\n\ngo 1.23.0\n\nrequire go.etcd.io/etcd/server/v3 v{versions.ETCD}\n"


def knative_go_mod(serving: str, replaces: list[str]) -> str:
    """The wrapper module of one Knative Serving build: requires knative.dev/serving v<serving> and repeats its own
    go.mod's replaces (`go install …@v0.44.0` refuses a module with a replace)."""
    lines = ["module knfleet.local/knativebin", "", "go 1.23.0", "", f"require knative.dev/serving v{serving}", ""]
    lines += [f"replace {r}" for r in replaces]
    return "\n".join(lines) + "\n"


def replace_lines(gomod_json: dict) -> list[str]:
    """`go mod edit -json`'s Replace entries as go.mod `replace` lines (old [version] => new version)."""
    out = []
    for r in gomod_json.get("Replace") or []:
        old, new = r["Old"], r["New"]
        if not new.get("Version"):
            raise SystemExit(f"[build] knative.dev/serving replaces {old['Path']} by a local path ({new['Path']}): "
                             "a wrapper module cannot repeat that")
        left = f"{old['Path']} {old['Version']}" if old.get("Version") else old["Path"]
        out.append(f"{left} => {new['Path']} {new['Version']}")
    return out


def serving_replaces(serving: str, env: dict[str, str]) -> list[str]:
    """The `replace` directives of knative.dev/serving v<serving>'s own go.mod (downloaded from the module proxy)."""
    env = {k: v for k, v in env.items() if k != "GOFLAGS"}
    where = paths.cache_root()
    where.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["go", "mod", "download", "-json", f"knative.dev/serving@v{serving}"], cwd=where, env=env,
                         capture_output=True, text=True)
    if got.returncode != 0:
        raise SystemExit(f"[build] cannot download knative.dev/serving@v{serving}: {got.stdout}{got.stderr}")
    gomod = json.loads(got.stdout)["GoMod"]
    edit = subprocess.run(["go", "mod", "edit", "-json", gomod], cwd=where, env=env, capture_output=True, text=True)
    if edit.returncode != 0:
        raise SystemExit(f"[build] cannot read {gomod}: {edit.stderr}")
    return replace_lines(json.loads(edit.stdout))


KNATIVE_TOOLS = """//go:build tools

// Package tools keeps knative.dev/serving/cmd/webhook in the module graph for `go mod tidy`.
package tools

import _ "knative.dev/serving/cmd/webhook"
"""


def version_ldflags() -> str:
    """Stamp the Kubernetes version the way the release build does (Knative checks it)."""
    v = versions.KUBERNETES
    major, minor, _ = v.split(".")
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion=v{v}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def missing(bin_dir: Path) -> list[str]:
    wanted = [*versions.K8S_COMMANDS, "etcd", "kwok"]
    return [n for n in wanted if not (bin_dir / n).is_file()]


def missing_knative(bin_dir: Path) -> list[str]:
    return [n for n in versions.KNATIVE_COMMANDS if not (bin_dir / n).is_file()]


def build_knative(force: bool = False) -> dict[str, Path]:
    """Knative Serving's webhook, controller, migrate and cleanup of every release in versions.KNATIVE_BUILDS (real
    binaries, run as the processes behind their pods): release -> its bin folder."""
    out = {}
    for release in versions.KNATIVE_BUILDS:
        out[release] = build_knative_release(release, force)
    return out


def build_knative_release(release: str, force: bool = False) -> Path:
    serving = versions.KNATIVE_BUILDS[release]
    bin_dir = paths.knative_bin_dir(release)
    todo = list(versions.KNATIVE_COMMANDS) if force else missing_knative(bin_dir)
    if not todo:
        return bin_dir
    if shutil.which("go") is None:
        raise SystemExit("[build] the Go toolchain (go) is not on PATH; install Go >= 1.24")
    bin_dir.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    mod = paths.cache_root() / "src" / versions.knative_bin_key(release)
    mod.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
    _log(f"knative.dev/serving v{serving} (Knative Serving {release}): {', '.join(todo)}")
    (mod / "go.mod").write_text(knative_go_mod(serving, serving_replaces(serving, env)))
    (mod / "tools.go").write_text(KNATIVE_TOOLS)
    shutil.copytree(Path(__file__).with_name("knative") / "controller", mod / "controller", dirs_exist_ok=True)
    _run(["go", "mod", "tidy"], mod, env)
    # one `go build` for all of them: the packages compile in parallel; each binary is named after its package's
    # folder (webhook, controller, migrate, cleanup: the names in the release images)
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(bin_dir) + "/",
          *[versions.KNATIVE_COMMANDS[name] for name in todo]], mod, env)
    still = missing_knative(bin_dir)
    if still:
        raise SystemExit(f"[build] finished but {', '.join(still)} missing in {bin_dir}")
    _log(f"knative {release} binaries done in {time.monotonic() - t:.0f}s: {bin_dir}")
    return bin_dir


def build(force: bool = False) -> Path:
    """Every binary the local clusters run; returns the folder of the Kubernetes ones (kubectl among them)."""
    bin_dir = build_kubernetes(force)
    build_knative(force)
    return bin_dir


def build_kubernetes(force: bool = False) -> Path:
    bin_dir = paths.bin_dir()
    todo = missing(bin_dir)
    if not todo and not force:
        return bin_dir
    if shutil.which("go") is None:
        raise SystemExit("[build] the Go toolchain (go) is not on PATH; install Go >= 1.23")
    bin_dir.mkdir(parents=True, exist_ok=True)
    src = paths.cache_root() / "src" / versions.bin_key()
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
    total = time.monotonic()
    _log(f"building {', '.join(todo)} into {bin_dir}")

    k8s_cmds = [c for c in versions.K8S_COMMANDS if force or c in todo]
    if k8s_cmds:
        t = time.monotonic()
        mod = src / "kubernetes"
        mod.mkdir(parents=True, exist_ok=True)
        (mod / "go.mod").write_text(kubernetes_go_mod())
        _log(f"k8s.io/kubernetes v{versions.KUBERNETES} (staging {versions.staging_version()}): {', '.join(k8s_cmds)}")
        _run(
            ["go", "build", "-trimpath", "-ldflags", version_ldflags(), "-o", str(bin_dir) + "/",
             *[f"k8s.io/kubernetes/cmd/{c}" for c in k8s_cmds]],
            mod, env,
        )
        _log(f"kubernetes binaries done in {time.monotonic() - t:.0f}s")

    if force or "etcd" in todo:
        t = time.monotonic()
        mod = src / "etcd"
        mod.mkdir(parents=True, exist_ok=True)
        (mod / "go.mod").write_text(etcd_go_mod())
        (mod / "main.go").write_text(ETCD_MAIN)
        _log(f"etcd v{versions.ETCD} (go.etcd.io/etcd/server/v3/etcdmain)")
        _run(["go", "mod", "tidy"], mod, env)
        _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(bin_dir / "etcd"), "."], mod, env)
        _log(f"etcd done in {time.monotonic() - t:.0f}s")

    if force or "kwok" in todo:
        t = time.monotonic()
        _log(f"kwok v{versions.KWOK} (go install sigs.k8s.io/kwok/cmd/kwok)")
        _run(["go", "install", "-trimpath", "-ldflags", "-s -w", f"sigs.k8s.io/kwok/cmd/kwok@v{versions.KWOK}"],
             Path.cwd(), dict(env, GOBIN=str(bin_dir), GOFLAGS="-buildvcs=false"))
        _log(f"kwok done in {time.monotonic() - t:.0f}s")

    still = missing(bin_dir)
    if still:
        raise SystemExit(f"[build] finished but {', '.join(still)} missing in {bin_dir}")
    _log(f"all binaries ready in {time.monotonic() - total:.0f}s: {bin_dir}")
    return bin_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m localcluster.build", description=__doc__.splitlines()[0])
    ap.add_argument("--print", action="store_true", help="print the bin folder (kubectl …) and exit (no build)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the binaries exist")
    args = ap.parse_args(argv)
    if args.print:
        print(paths.bin_dir())
        return 0
    build(force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
