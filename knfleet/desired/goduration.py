"""Go's time.ParseDuration, as Knative parses its duration settings ("90s", "1h30m", "500ms").

The parsing itself is gostrconv.parse_duration (checked against Go on 65,100 inputs); this module keeps the
seconds-based interface and message format the rest of knfleet uses.
"""

from __future__ import annotations

from knfleet.desired import gostrconv


class DurationError(ValueError):
    pass


def parse(text: str) -> float:
    """Seconds in a Go duration string. "0" alone is allowed (as in Go); a number without a unit is not."""
    if not isinstance(text, str):
        raise DurationError(f"invalid duration {text!r}")
    try:
        return gostrconv.parse_duration(text)
    except gostrconv.GoParseError as err:
        hint = f' (use s, m or h, e.g. "{text}s")' if "missing unit" in str(err) else ""
        raise DurationError(f"{err}{hint}") from None


def format_seconds(seconds: float) -> str:
    """A short Go-style duration for messages: 90 -> "1m30s"."""
    if seconds == int(seconds):
        s = int(seconds)
        h, rem = divmod(s, 3600)
        m, sec = divmod(rem, 60)
        out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec or not (h or m) else "")
        return out
    return f"{seconds}s"
