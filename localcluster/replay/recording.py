"""The recording (JSON lines, one exchange a line) and how a request is matched against it.

A request is matched by (method, path, query, body) after normalising what legitimately differs between two runs of
the same no-op converge: timestamps, the lock holder's identity (user@host/pid-…/nonce), and random ids (UUIDs). Nothing
else is normalised: any other difference is an unrecorded request, answered as an error that names it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

KEPT_HEADERS = ("Content-Type", "Content-Encoding")  # the answer as the client decodes it
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)")
HOLDER = re.compile(r"[^\s\"@/]*@[^\s\"/]+/pid-\d+/[^\s\"]*")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Exchange:
    """One request and its answer."""

    method: str
    target: str  # path and query, as sent
    status: int
    body: bytes = b""
    request_body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # the answer's headers that matter (KEPT_HEADERS)

    def to_json(self) -> str:
        return json.dumps({"method": self.method, "target": self.target, "status": self.status,
                           "headers": self.headers, "request_body": _text(self.request_body),
                           "body": _text(self.body)}, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Exchange:
        d = json.loads(line)
        return cls(d["method"], d["target"], int(d["status"]), _bytes(d.get("body")), _bytes(d.get("request_body")),
                   dict(d.get("headers") or {}))


def _text(data: bytes) -> Any:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return str(value).encode("utf-8")


def normalise_text(text: str) -> str:
    """What legitimately differs between runs, replaced by placeholders (and nothing else)."""
    text = HOLDER.sub("<holder>", text)
    text = TIME.sub("<time>", text)
    return UUID.sub("<uuid>", text)


def normalise_body(body: bytes) -> str:
    """A request body for matching: JSON re-serialised with sorted keys (key order is not meaning), normalised."""
    if not body:
        return ""
    try:
        text = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        text = body.decode("utf-8", "replace")
    return normalise_text(text)


def split_target(target: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urlsplit(target)
    return parts.path, sorted(parse_qsl(parts.query, keep_blank_values=True))


def key_of(method: str, target: str, body: bytes) -> str:
    """The match key of a request (a digest: bodies of applies are large)."""
    path, query = split_target(target)
    text = f"{method.upper()} {path}?{normalise_text(json.dumps(query))}\n{normalise_body(body)}"
    return hashlib.sha256(text.encode()).hexdigest()


def write(path: Path, exchanges: list[Exchange]) -> None:
    path.write_text("".join(e.to_json() + "\n" for e in exchanges), encoding="utf-8")


def read(path: Path) -> list[Exchange]:
    return [Exchange.from_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
