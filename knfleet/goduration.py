"""Go's time.ParseDuration, as Knative parses its duration settings ("90s", "1h30m", "500ms")."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    pass


def parse(text: str) -> float:
    """Seconds in a Go duration string. "0" alone is allowed (as in Go); a number without a unit is not."""
    s = text.strip() if isinstance(text, str) else text
    if not isinstance(s, str) or not s:
        raise DurationError(f"invalid duration {text!r}")
    sign = 1.0
    if s[0] in "+-":
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:]
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            if re.fullmatch(r"\d+\.?\d*", s[pos:]):
                raise DurationError(f"invalid duration {text!r}: missing unit (use s, m or h, e.g. \"{s[pos:]}s\")")
            raise DurationError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_seconds(seconds: float) -> str:
    """A short Go-style duration for messages: 90 -> "1m30s"."""
    if seconds == int(seconds):
        s = int(seconds)
        h, rem = divmod(s, 3600)
        m, sec = divmod(rem, 60)
        out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec or not (h or m) else "")
        return out
    return f"{seconds}s"
