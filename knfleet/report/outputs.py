"""Where a finished report goes: the JSON file, the HTML page and the Prometheus metrics file, each optional.

One place for a plain pyinfra run (`KNFLEET_REPORT`, `KNFLEET_REPORT_HTML`, `KNFLEET_METRICS_FILE`) and a rollout
(`--report`, `--report-html`, `KNFLEET_METRICS_FILE`). A file that cannot be written is said on stderr; it does
not change the run's outcome (the clusters are as the report says either way).
"""

from __future__ import annotations

import sys
from typing import Any

from knfleet.report import outcome


def write_all(data: dict[str, Any], json_file: str | None = None, html_file: str | None = None,
              metrics_file: str | None = None) -> list[tuple[str, str]]:
    """Write each output that has a path; the (kind, path) of those written."""
    written: list[tuple[str, str]] = []
    if json_file:
        outcome.write(json_file, data)
        written.append(("JSON", json_file))
    if html_file:
        from knfleet.report import html

        try:
            html.write(html_file, [data])
            written.append(("HTML", html_file))
        except OSError as err:
            print(f"knfleet: cannot write the HTML report {html_file}: {err}", file=sys.stderr, flush=True)
    if metrics_file:
        from knfleet.report import metrics

        try:
            metrics.write(metrics_file, data)
            written.append(("metrics", metrics_file))
        except OSError as err:
            print(f"knfleet: cannot write the metrics file {metrics_file}: {err}", file=sys.stderr, flush=True)
    return written
