"""A small, self-contained Knative bundle for unit tests (tests/fixtures/bundle): no network, no ../shared."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from knfleet.desired.bundle import Bundle

FOLDER = Path(__file__).resolve().parent.parent / "fixtures" / "bundle"


@lru_cache(maxsize=1)
def fixture_bundle() -> Bundle:
    return Bundle("1.17.0", {p.name: p.read_text() for p in sorted(FOLDER.glob("*.yaml"))})
