"""Clusters with the same bundle and settings share one rendering of the release, and one copy of each file's text
(fleet scale: docs/fleet-scale.md); other settings still get their own."""

from __future__ import annotations

import json
from pathlib import Path

from knfleet.desired import bundle, render, settings
from tests.unit.bundle_fixture import fixture_bundle


def _dump(stages: list[render.Stage]) -> str:
    return json.dumps([(s.name, s.objects) for s in stages], sort_keys=True)


def test_the_same_bundle_and_settings_share_one_rendering() -> None:
    b = fixture_bundle()
    first = render.install_stages(b, settings.from_data({}))
    again = render.install_stages(bundle.Bundle(b.version, dict(b.files)), settings.from_data({}))
    assert [s.objects for s in first] == [s.objects for s in again]
    assert all(x is y for s, t in zip(first, again, strict=True) for x, y in zip(s.objects, t.objects, strict=True))
    again.append(render.Stage("services", ()))  # callers append their own stages: the shared list is not theirs
    assert len(render.install_stages(b, settings.from_data({}))) == len(first)


def test_the_shared_rendering_is_what_a_fresh_one_is() -> None:
    b, cfg = fixture_bundle(), settings.from_data({"kourier_service_type": "NodePort"})
    assert _dump(render.install_stages(b, cfg)) == _dump(render._install_stages(b, cfg))


def test_other_settings_get_their_own_rendering() -> None:
    b = fixture_bundle()
    lb = render.install_stages(b, settings.from_data({"kourier_service_type": "LoadBalancer"}))
    np = render.install_stages(b, settings.from_data({"kourier_service_type": "NodePort"}))

    def kourier_type(stages: list[render.Stage]) -> str:
        st = next(s for s in stages if s.name == "kourier")
        svc = next(o for o in st.objects if o["kind"] == "Service" and o["metadata"]["name"] == "kourier")
        return svc["spec"]["type"]

    assert (kourier_type(lb), kourier_type(np)) == ("LoadBalancer", "NodePort")


def test_verified_files_are_kept_once(tmp_path: Path) -> None:
    name = "serving-crds.yaml"
    data = (Path(__file__).resolve().parent.parent / "fixtures" / "bundle" / name).read_bytes()
    digest = bundle.sha256(data)
    one = bundle._shared(digest, data.decode())
    two = bundle._shared(digest, data.decode())
    assert one is two and one == data.decode()
