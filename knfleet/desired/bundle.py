"""The Knative release bundle: official URLs (downloaded once, sha256-verified) or an offline folder.

Every file is checked against the sha256 pins below before any cluster is touched.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from knfleet import fsio
from knfleet.desired import releases
from knfleet.errors import InputError

SERVING_URL = "https://github.com/knative/serving/releases/download/knative-v{version}/{file}"
KOURIER_URL = "https://github.com/knative/net-kourier/releases/download/knative-v{version}/kourier.yaml"

# Knative Serving version -> file -> sha256 (values from the official release assets; kourier.yaml is the Kourier
# release knfleet.desired.releases pairs with it: 1.17.0 for 1.17.x, 1.18.0 for 1.18.1).
PINS: dict[str, dict[str, str]] = {
    "1.17.0": {
        "serving-crds.yaml": "44da0af26bc92a220df44caf19b576bd1943461c8e73fee811f90fd87a188cb1",
        "serving-core.yaml": "b4cf7529c1b21196193907db821c1fc6838e38c87050d6acd2ed2118e3ab99ce",
        "serving-hpa.yaml": "5710416411f836e722e90547a9d89470c76b10bcf681fa4f01401c77c8f40bdc",
        "serving-post-install-jobs.yaml": "e770ef221b6f4cfc910ddd51f0af4bffb8ccd4acf60b778814e306808c6d9665",
        "kourier.yaml": "e9b6cfe230efdda1bf1e7dcf34ff28d2a34c3c7e83c17cf2509926ef76fd27ef",
    },
    "1.17.1": {
        "serving-crds.yaml": "a5941cdfcecbd8f3679803bb65b70c188e083c87c0a83b92d98bdb9e53fe8d88",
        "serving-core.yaml": "fdb0417aec3decb2a29de053e910c53878834ec0b78cc1b4a7bfb98f2e8f017e",
        "serving-hpa.yaml": "4f39dc4f40777fcdc83085fe6c22cbdd7a71f927bb5aadc4ffb830019041d77f",
        "serving-post-install-jobs.yaml": "28f0359e7755f38e6397ab7e8e1e66e1ed305e9a534ccb6d540cacce46c121f2",
        "kourier.yaml": "e9b6cfe230efdda1bf1e7dcf34ff28d2a34c3c7e83c17cf2509926ef76fd27ef",
    },
    "1.17.2": {
        "serving-crds.yaml": "77d892e798b62e8c27788497404026f7cc488276de3fd7f506e4022285102c32",
        "serving-core.yaml": "5eaf5ae9f778dc11ed1971bb490b162f8a613dc57589ff789d5ccb9a4821b72d",
        "serving-hpa.yaml": "1425af637eca1f7ed92a9d18cddab42879ea53147751e3dba4026dd7d32c9bc0",
        "serving-post-install-jobs.yaml": "6dad2503534ceb82830996768c8f976c5a2be858c2138aa10b3c73d8c6cd1e4c",
        "kourier.yaml": "e9b6cfe230efdda1bf1e7dcf34ff28d2a34c3c7e83c17cf2509926ef76fd27ef",
    },
    "1.18.1": {
        "serving-crds.yaml": "7a8a02f5f962895407e9d4feabb030e8a9ca9069906980367c919ef1d48eb414",
        "serving-core.yaml": "318964139b903aac5bc191c9e9d28e15684dd4871f280d3f783928fa65649967",
        "serving-hpa.yaml": "0f262c0b680c9f6be0475713cabfeec1e6e0fc92e8053cf32ac45ef9a9e2fbed",
        "serving-post-install-jobs.yaml": "11086e8de8769bc641bf7bba5e35a998d4c76f7e90607fd8eca33bc19c167c48",
        "kourier.yaml": "88c3e1bd121d72bb0b48b8af84823d19a7264dd452add250decb779eac904eae",
    },
}
KOURIER_VERSION = {v: releases.RELEASES[v].kourier for v in PINS}
REQUIRED = ("serving-crds.yaml", "serving-core.yaml", "kourier.yaml")
OPTIONAL = ("serving-hpa.yaml", "serving-post-install-jobs.yaml")
# Loaded whenever there: an offline folder without it still installs; an upgrade needs it (its Jobs).
WHEN_PRESENT = ("serving-post-install-jobs.yaml",)
def default_cache() -> Path:
    """Downloaded release files: $KNFLEET_CACHE/bundles, else ~/.cache/knfleet/bundles (verified before use)."""
    root = os.environ.get("KNFLEET_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "knfleet") / "bundles"


class BundleError(InputError):
    """A bundle file is missing or does not match its pinned checksum. Nothing was changed on any cluster."""


@dataclass(frozen=True)
class Bundle:
    version: str
    files: dict[str, str]  # file name -> content (verified)

    def text(self, name: str) -> str:
        return self.files[name]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def url_for(version: str, name: str) -> str:
    if name == "kourier.yaml":
        return KOURIER_URL.format(version=KOURIER_VERSION[version])
    return SERVING_URL.format(version=version, file=name)


_TEXTS: dict[str, str] = {}  # sha256 -> the verified text: every cluster of a fleet run shares one copy of a file


def _shared(digest: str, text: str) -> str:
    """One copy of each verified file's text per process (a run loads the bundle once per cluster: 1,000 clusters
    kept 1,000 copies of the same megabyte)."""
    return _TEXTS.setdefault(digest, text)


def _verify(version: str, name: str, data: bytes, where: str) -> str:
    want = PINS[version][name]
    got = sha256(data)
    if got != want:
        raise BundleError(
            f"{where}: checksum mismatch for {name} (Knative {version}): expected sha256 {want}, got {got}. "
            "Use the official release file, or remove the cached copy to download it again."
        )
    return _shared(got, _text(data, where))


def _text(data: bytes, where: str) -> str:
    """The text of verified bytes (the same bytes that were hashed: a file is read once)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BundleError(f"{where}: not UTF-8 text ({err}); a Knative release file is YAML") from None


def _download(version: str, name: str, cache: Path) -> bytes:
    path = cache / version / name
    if path.exists():
        return path.read_bytes()
    import requests  # only when downloading (it imports ssl, which pyinfra's gevent must patch first)

    url = url_for(version, name)
    try:
        resp = requests.get(url, timeout=60)
        resp.raise_for_status()
    except requests.RequestException as err:
        raise BundleError(
            f"cannot download {name} for Knative {version} from {url}: {err}. "
            "Set group data 'knative_bundle_dir' to an offline folder holding the release files."
        ) from err
    # Verify before caching so a bad download never lands in the cache.
    _verify(version, name, resp.content, url)
    fsio.write_atomic(path, resp.content)
    return resp.content


def _vendor(version: str, name: str, folder: str | None, vendor: dict[str, tuple[str, str]]) -> str:
    """A release file of a vendor bundle: renamed or changed, verified against the sha256 group data pins."""
    file, want = vendor[name]
    if not folder:
        raise BundleError(f"knative_bundle_files names {file} for {name}: set knative_bundle_dir to the vendor "
                          "bundle's folder")
    path = Path(os.path.expanduser(folder)) / file
    if not path.is_file():
        raise BundleError(f"bundle folder {folder}: {file} is missing (knative_bundle_files names it for {name})")
    data = path.read_bytes()  # read once: the bytes hashed are the bytes parsed
    got = sha256(data)
    if got != want:
        raise BundleError(f"{path}: checksum mismatch for {file} ({name} of the vendor bundle): knative_bundle_files "
                          f"pins sha256 {want}, the file has {got}. Nothing was changed")
    return _text(data, str(path))


@lru_cache(maxsize=8)
def load(version: str, folder: str | None = None, optional: tuple[str, ...] = (), cache: str | None = None,
         vendor_files: tuple[tuple[str, str, str], ...] = ()) -> Bundle:
    """Load and verify the release files: from `folder` (offline bundle) or the official URLs via the cache. A vendor
    bundle's renamed or changed files (`vendor_files`: release name, file name, sha256) are verified against the
    pins group data gives for them instead of the release's."""
    vendor = {name: (file, digest) for name, file, digest in vendor_files}
    if version not in PINS:
        raise BundleError(f"knative_version {version!r} is not supported; supported: {', '.join(sorted(PINS))}")
    unknown = [n for n in optional if n not in OPTIONAL]
    if unknown:
        raise BundleError(f"unknown optional bundle file(s) {unknown}; allowed: {', '.join(OPTIONAL)}")
    files: dict[str, str] = {}
    for name in (*REQUIRED, *optional):
        if name in vendor:
            files[name] = _vendor(version, name, folder, vendor)
        elif folder:
            path = Path(os.path.expanduser(folder)) / name
            if not path.is_file():
                raise BundleError(f"bundle folder {folder}: {name} is missing (needed for Knative {version})")
            files[name] = _verify(version, name, path.read_bytes(), str(path))
        else:
            cache_dir = Path(cache) if cache else default_cache()
            files[name] = _verify(version, name, _download(version, name, cache_dir), str(cache_dir / version / name))
    for name in WHEN_PRESENT:
        if name in files:
            continue
        if name in vendor:
            files[name] = _vendor(version, name, folder, vendor)
        elif folder:
            path = Path(os.path.expanduser(folder)) / name
            if path.is_file():
                files[name] = _verify(version, name, path.read_bytes(), str(path))
        else:
            cache_dir = Path(cache) if cache else default_cache()
            try:
                files[name] = _verify(version, name, _download(version, name, cache_dir),
                                      str(cache_dir / version / name))
            except BundleError as err:
                if "checksum mismatch" in str(err):
                    raise
    return Bundle(version, files)
