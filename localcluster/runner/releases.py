"""Which Knative release a pod's image belongs to, by its digest: the pod runner runs that release's build.

    python -m localcluster.runner.releases           # prints the table derived from the pinned release files
    python -m localcluster.runner.releases --check   # exit 1 when IMAGES below differs from it

IMAGES is derived from the pinned manifests (serving-core.yaml and serving-post-install-jobs.yaml of every release
in knfleet.desired.bundle.PINS, loaded and sha256-verified by knfleet.desired.bundle from ../shared/knative/v<release>
or the official URLs) and kept here, like the pins themselves, so a cluster needs no release file to know it.
A mirrored image keeps its digest, so the registry does not matter.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import versions
from localcluster.runner.binaries import Binary, for_image

# image digest -> (Knative Serving release, binary): derived by derive(), checked by tests/integration/
# test_knative_releases.py
IMAGES: dict[str, tuple[str, str]] = {
    "sha256:132227372caba8e03df65fcf4d61738c0dfaa7c3a5d3c5fae57e6f4b3655c7d5": ("1.17.0", "cleanup"),
    "sha256:df24c6d3e20bc22a691fcd8db6df25a66c67498abd38a8a56e8847cb6bfb875b": ("1.17.0", "controller"),
    "sha256:c7ae2bf09e8f4236fad16705aa2ec69ab69e0f31ebd53159a6b0d734039538b4": ("1.17.0", "migrate"),
    "sha256:d842f05a1b05b1805021b9c0657783b4721e79dc96c5b58dc206998c7062d9d9": ("1.17.0", "webhook"),
    "sha256:2129d3b5da6b41a9a1e4e460c82fdf955b25a4b2638d8d135d02a4a51e755643": ("1.17.1", "cleanup"),
    "sha256:f5b958cba3340f65542d3e12eb1e41e9706100ebabc59f1743c932e64261f4b5": ("1.17.1", "controller"),
    "sha256:6ae0953fdc1d44b18299aad228cb3496fe435f496065f3142ea41013cd27e941": ("1.17.1", "migrate"),
    "sha256:05b3fbda5878292c5fb97233339b83862e60b41a83716c103f9411fa619f1416": ("1.17.1", "webhook"),
    "sha256:15641a9eb09cb20782bb0bb0a9605668bef7751559f26d3f89667da6b2a3ae65": ("1.17.2", "cleanup"),
    "sha256:63c93d34955835084b060f0d4460a97713cac3aa51169b6d3cab03e06d2d5898": ("1.17.2", "controller"),
    "sha256:64b74d1bdc50a5fb83ffd242c120623f06e9c57453c084d55f02037bd9c38851": ("1.17.2", "migrate"),
    "sha256:1b79e592b85722e4ff3d28be3b94758d4e3e7a3c085c78a3e21772ac3b62c980": ("1.17.2", "webhook"),
    "sha256:7376d3c9b24947830dca9cada5da9926e15203204dfd183780d5fe88e684deb2": ("1.18.1", "cleanup"),
    "sha256:5b93308a392c00381f0ac48e7f55806bce7b4d30c34cf399fc7dae3ec538b23d": ("1.18.1", "controller"),
    "sha256:4446c18c763149a3ac93ab49868a8085c5163558b70542dfd6f2337ec3b4c985": ("1.18.1", "migrate"),
    "sha256:50831d9aaa69c4d2a8277d35650d3e2ad4832b4a04c0a089e715fd190fd8c273": ("1.18.1", "webhook"),
}
_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")
REPO = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Pick:
    """What to run for a container image: the binary, the release, its path; or why nothing may run."""

    binary: Binary
    release: str | None
    path: Path | None
    reason: str = ""  # a kubelet-style waiting reason when path is None
    message: str = ""


def digest_of(image: str) -> str | None:
    m = _DIGEST.search(image or "")
    return m.group(1) if m else None


def pick(image: str, bin_root: Path) -> Pick | None:
    """The build to run for `image` (None: not one of the binaries the runner backs). A release without a build here
    (1.17.2) or an unknown digest is never run with another release's binary: the Pick says why instead."""
    binary = for_image(image)
    if binary is None:
        return None
    digest = digest_of(image)
    found = IMAGES.get(digest or "")
    built = ", ".join(versions.KNATIVE_BUILDS)
    if found is None or found[1] != binary.name:
        what = f"digest {digest}" if digest else "no digest"
        return Pick(binary, None, None, "UnknownKnativeRelease",
                    f"image {image} has {what}, which is no pinned Knative release's {binary.name} "
                    f"({', '.join(sorted({r for r, _ in IMAGES.values()}))}): which build to run is unknown, so "
                    "none runs (builds here: " + built + ")")
    release = found[0]
    if release not in versions.KNATIVE_BUILDS:
        module = versions.KNATIVE_NOT_BUILT.get(release, "?")
        return Pick(binary, release, None, "KnativeReleaseNotBuilt",
                    f"Knative Serving {release} ({binary.name} {digest[:19]}…) has no build on this machine: "
                    f"knative.dev/serving v{module} is not served by the Go module proxy reachable here; it is not "
                    f"run with another release's binary (builds here: {built})")
    path = bin_root / versions.knative_bin_key(release) / binary.name
    if not path.is_file():
        return Pick(binary, release, None, "KnativeBuildMissing",
                    f"Knative Serving {release}'s {binary.name} is not built yet ({path} is missing): run "
                    "python -m localcluster.build")
    return Pick(binary, release, path)


def derive(load: Callable[[str], Any] | None = None) -> dict[str, tuple[str, str]]:
    """digest -> (release, binary) from every pinned release's serving-core.yaml and post-install Jobs."""
    from knfleet.desired import bundle, render

    shared = REPO.parent / "shared" / "knative"

    def default_load(version: str) -> Any:
        folder = shared / f"v{version}"
        return bundle.load(version, str(folder) if folder.is_dir() else None, ("serving-post-install-jobs.yaml",))
    load = load or default_load
    out: dict[str, tuple[str, str]] = {}
    for version in bundle.PINS:
        b = load(version)
        for name in ("serving-core.yaml", "serving-post-install-jobs.yaml"):
            for doc in render.load_docs(b.text(name)):
                for image in _images(doc):
                    binary, digest = for_image(image), digest_of(image)
                    if binary is not None and digest:
                        out[digest] = (version, binary.name)
    return dict(sorted(out.items(), key=lambda kv: (kv[1], kv[0])))


def _images(doc: dict[str, Any]) -> list[str]:
    spec = (((doc.get("spec") or {}).get("template") or {}).get("spec")) or {}
    return [c.get("image", "") for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])]


def render_table(table: dict[str, tuple[str, str]]) -> str:
    return "\n".join(f'    "{d}": ("{r}", "{b}"),' for d, (r, b) in table.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m localcluster.runner.releases", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when IMAGES differs from the derived table")
    args = ap.parse_args(argv)
    table = derive()
    if args.check:
        if table != IMAGES:
            print("IMAGES differs from the pinned release files; the derived table:\n" + render_table(table))
            return 1
        print(f"IMAGES matches the {len(table)} images of the pinned release files")
        return 0
    print(render_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
