"""Issue 14 acceptance: the HTML report of a halted rollout (canary down) and of a converged one, loaded in a real
headless browser (Debian's chromium, JavaScript off); the Prometheus metrics file of a converge against its JSON
report. The reports come from real rollouts and runs on local clusters."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from knfleet.report import html, metrics, outcome
from knfleet.report.records import path_of
from localcluster import browser
from localcluster.cluster import Spec
from tests.integration.test_deploy import pyinfra
from tests.integration.test_rollout import knfleet, write_inventory

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(pool, tmp_path_factory):
    spec = Spec(ready_delay_ms=300, time_factor=0.05)
    clusters = [pool.start("report", spec, group="reports") for _ in range(2)]
    inv = write_inventory(tmp_path_factory.mktemp("inv") / "fleet.py", clusters, [0, 1])
    yield inv, clusters, pool.root_for("reports")
    for c in clusters:
        pool.stop(c)


@pytest.fixture(scope="module")
def chromium():
    if browser.binaries() is None:
        if os.environ.get("CI"):
            pytest.fail(f"chromium/chromedriver missing in CI: .ci/run installs them ({browser.PACKAGES})")
        pytest.skip(f"chromium or chromedriver is not installed and could not be here: apt-get install -y "
                    f"{browser.PACKAGES} (.ci/run does)")
    with browser.browser(width=1280, height=1600) as driver:
        # JavaScript is off: a page that would change its title with a script keeps it.
        driver.get("data:text/html,<title>static</title><script>document.title='scripted'</script>")
        assert driver.title == "static"
        yield driver


def rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return "rgba({}, {}, {}, 1)".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


def rollout(inv: Path, out: Path, name: str) -> tuple[Any, dict[str, Any], Path]:
    """knfleet rollout with the JSON and HTML reports, and the metrics file (KNFLEET_METRICS_FILE, set by the test)."""
    report, page = out / f"{name}.json", out / f"{name}.html"
    run = knfleet("rollout", str(inv), "--state", str(out / "state.json"), "--report", str(report),
                  "--report-html", str(page))
    assert f"HTML report: {page}" in run.stdout, run.stdout + run.stderr
    return run, json.loads(report.read_text()), page


def check_page(driver: Any, page: Path, rep: dict[str, Any], png: Path) -> None:
    """What a person sees: one cell per cluster in its wave's row, coloured by its outcome, the reason on failed
    and untouched cells, one chart point per smoke result at the height of its latency."""
    driver.get(page.resolve().as_uri())
    assert not driver.find_elements("css selector", "script")
    cells = {c.get_attribute("data-cluster"): c for c in driver.find_elements("css selector", "#grid td.cell")}
    assert set(cells) == set(rep["clusters"])
    for name, o in rep["clusters"].items():
        cell = cells[name]
        assert cell.is_displayed()
        assert cell.get_attribute("data-outcome") == o["status"]
        assert o["status"].upper() in cell.text  # the outcome's word, as rendered (text-transform)
        assert cell.value_of_css_property("background-color") == rgb(html.COLOURS[o["status"]])
        row = cell.find_element("xpath", "./ancestor::tr[1]")
        assert row.get_attribute("data-wave") == str(o["wave"])
        if o["errors"] or o["reason"]:
            assert html.reason(o) in cell.text
    results = [(name, s) for name, o in rep["clusters"].items() for s in [*o["smoke"], *o["smoke_after_bake"]]]
    points = driver.find_elements("css selector", "#smoke-chart g.smoke-result")
    assert len(points) == len(results)
    if results:
        svg = driver.find_element("css selector", "#smoke-chart")
        area = driver.find_element("css selector", "#smoke-chart g.plot-area rect").rect
        y_max = float(svg.get_attribute("data-y-max"))
        seen = []
        for p in points:
            circle = p.find_element("css selector", "circle.latency").rect
            cx, cy = circle["x"] + circle["width"] / 2, circle["y"] + circle["height"] / 2
            assert area["x"] <= cx <= area["x"] + area["width"], (circle, area)
            latency = p.get_attribute("data-latency")
            expected = area["y"] + area["height"] * (1 - (float(latency) if latency else 0) / y_max)
            assert abs(cy - expected) <= 1.5, (p.get_attribute("data-service"), cy, expected)
            seen.append((p.get_attribute("data-cluster"), p.get_attribute("data-service"), latency))
        assert sorted(seen) == sorted((n, s["service"], str(s["latency_s"]) if s["latency_s"] is not None else "")
                                      for n, s in results)
        assert_labels_apart(driver, "#smoke-chart", len({(n, s["service"], path_of(s.get("via"))) for n, s in results}))
    else:
        assert driver.find_element("css selector", "#no-smoke").is_displayed()
    # issue 25: the cold starts the run saw (say, a new revision's pods), a stacked bar per service and cluster
    colds = {(c["service"], name) for name, o in rep["clusters"].items() for c in o.get("cold_starts") or []}
    assert len(driver.find_elements("css selector", "#cold-chart g.cold-bar")) == len(colds)
    if colds:
        assert_stacked(driver, "#cold-chart", len(colds))
        assert_labels_apart(driver, "#cold-chart", len(colds))
    else:
        assert driver.find_element("css selector", "#no-cold-starts").is_displayed()
    browser_png = png
    height = driver.find_element("tag name", "body").rect["height"]
    driver.set_window_size(1280, int(height) + 120)
    driver.save_screenshot(str(browser_png))
    assert browser_png.stat().st_size > 10_000
    driver.set_window_size(1280, 1600)


BOXES = ("return Array.from(document.querySelectorAll(arguments[0])).map(e => {"
         "const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom, e.textContent];})")


def assert_labels_apart(driver: Any, chart: str, count: int) -> None:
    """The chart's x-axis labels, as the browser lays them out (getBoundingClientRect of each label element): one
    per band, no two overlapping, each inside the chart."""
    boxes = driver.execute_script(BOXES, f"{chart} text.x-label")
    assert len(boxes) == count, boxes
    (svg,) = driver.execute_script(BOXES, chart)
    for a, b in itertools.combinations(boxes, 2):
        apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        assert apart, f"labels overlap: {a} and {b}"
    for box in boxes:
        assert box[2] > box[0] and svg[0] <= box[0] and box[2] <= svg[2] and box[3] <= svg[3], (box, svg)


def many_results(clusters: list[str], services: list[str], vias: list[str], finished: float = 1795700000.0) -> dict:
    """A run report with a smoke result per service, path and cluster (names as long or as wide as they come)."""
    results = {name: outcome.ClusterOutcome(name, outcome.CONVERGED, smoke=[
        {"service": svc, "ok": True, "status": 200, "latency_s": 0.05 + 0.01 * i, "cold_start_s": 1.5 if i else None,
         "attempts": 1, "error": None, "skipped": None, "via": via}
        for i, svc in enumerate(services) for via in vias]) for name in clusters}
    return {**outcome.report("run", results, action="install", dry_run=False), "finished": finished}


VIAS = ["kourier-internal (port-forward to pod kourier-system/3scale-kourier-gateway-5f7d)",
        "proxy http://127.223.222.167:80", "smoke_url http://gateway.example.org"]


@pytest.mark.parametrize(("clusters", "services", "vias"), [
    (["local-1"], ["knative-qwen7b/knative-qwen7b-svc", "knative-qwen7b/qwen7b-scale-to-zero"], VIAS[:2]),
    ([f"prod-eu-west-{i}-gpu-a100-pool" for i in range(4)],
     [f"llm-serving/qwen2-5-72b-instruct-awq-{i}" for i in range(5)], VIAS[:2]),
    ([f"MMMW-WWWM-mmmm-wwww-{i}" for i in range(3)], ["team-wwwwwwwwwwwwmmmmmmmmmmmmmmmmmmmmmmmm/mmmm-wwww-m",
                                                      "x/y", "ns/服务-模型"], VIAS),
    ([f"c{i}" for i in range(12)], ["n/a"], VIAS[:1]),
])
def test_chart_labels_stay_apart_at_any_number_of_services_paths_and_clusters(chromium, tmp_path, clusters, services,
                                                                               vias):
    page = tmp_path / "many.html"
    html.write(str(page), [many_results(clusters, services, vias)])
    chromium.get(page.resolve().as_uri())
    assert_labels_apart(chromium, "#smoke-chart", len(clusters) * len(services) * len(vias))
    # the same page with many reports: the trend chart's labels (date and time) stay apart too
    reports = [many_results(clusters[:2], services[:2], vias[:1], 1795700000.0 + 60 * k) for k in range(25)]
    html.write(str(page), reports)
    chromium.get(page.resolve().as_uri())
    assert_labels_apart(chromium, "#trend-chart", 25)


def test_html_report_of_a_halted_and_a_converged_rollout_in_a_real_browser(fleet, chromium, tmp_path, monkeypatch):
    inv, (canary, other), _ = fleet
    monkeypatch.setenv("KNFLEET_METRICS_FILE", str(tmp_path / "rollout.prom"))
    canary.cluster.stop_component("kube-apiserver")
    try:
        run, halted, halted_page = rollout(inv, tmp_path, "halted")
        assert run.returncode == 2, run.stdout + run.stderr
    finally:
        canary.cluster.restart_component("kube-apiserver")
    assert halted["status"] == "halted"
    assert halted["clusters"][canary.name]["status"] == "failed"
    assert halted["clusters"][other.name]["status"] == "untouched"
    run, converged, converged_page = rollout(inv, tmp_path, "converged")
    assert run.returncode == 0, run.stdout + run.stderr
    # two services, through the URLs the inventory names (write_inventory: smoke_url overrides the other paths)
    assert all([path_of(s["via"]) for s in o["smoke"]] == ["smoke_url"] * 2
               for o in converged["clusters"].values()), converged

    check_page(chromium, halted_page, halted, tmp_path / "halted.png")
    reason = chromium.find_element("css selector", f'td.cell[data-cluster="{canary.name}"] .reason').text
    assert "not reachable" in reason
    assert "halted after wave 0" in chromium.find_element(
        "css selector", f'td.cell[data-cluster="{other.name}"] .reason').text
    check_page(chromium, converged_page, converged, tmp_path / "converged.png")
    # the first rollout created the services: their first revisions' pods, phase by phase
    assert any(c["trigger"] == "new_revision" for o in converged["clusters"].values() for c in o["cold_starts"])
    for name, o in converged["clusters"].items():
        article = chromium.find_element("css selector", f"article#cluster-{name}")
        assert len(article.find_elements("css selector", "table.steps tr[data-step]")) == len(o["steps"])
        for obj in metrics.changed_objects(o):
            assert obj in article.text

    # several reports: trends, oldest first
    trend = tmp_path / "trend.html"
    run = knfleet("report", str(tmp_path / "converged.json"), str(tmp_path / "halted.json"), "-o", str(trend))
    assert run.returncode == 0, run.stderr
    chromium.get(trend.resolve().as_uri())
    rows = chromium.find_elements("css selector", "#trends tr.run")
    assert len(rows) == 2
    first = {c.get_attribute("data-cluster"): c.get_attribute("data-outcome")
             for c in rows[0].find_elements("css selector", "td.cell")}
    assert first == {canary.name: "failed", other.name: "untouched"}
    assert_labels_apart(chromium, "#trend-chart", 2)
    points = chromium.find_elements("css selector", "#trend-chart g.trend-point")
    assert len(points) == sum(1 for o in converged["clusters"].values() for s in o["smoke"]
                              for v in (s["latency_s"], s["cold_start_s"]) if v is not None)

    # the metrics of the two rollouts (one file, rewritten): counters went on
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families((tmp_path / "rollout.prom").read_text()) for s in f.samples}
    assert found[("knfleet_cluster_runs_total", (("cluster", canary.name), ("outcome", "failed")))] == 1
    assert found[("knfleet_cluster_runs_total", (("cluster", other.name), ("outcome", converged["clusters"][
        other.name]["status"])))] == 1
    assert found[("knfleet_rollout_exit_code", ())] == 0


def test_metrics_file_of_a_converge_holds_the_json_report_values(fleet, tmp_path, monkeypatch):
    _, clusters, root = fleet
    report, prom, page = tmp_path / "run.json", tmp_path / "textfile" / "knfleet.prom", tmp_path / "run.html"
    monkeypatch.setenv("KNFLEET_REPORT", str(report))
    monkeypatch.setenv("KNFLEET_METRICS_FILE", str(prom))
    monkeypatch.setenv("KNFLEET_REPORT_HTML", str(page))
    # smoke_cold: services at zero are woken, so every smoke result has a latency (and those a cold start)
    data = ("--data", "knative_domain=metrics.example", "--data", "smoke_cold=true")
    first = pyinfra(root, "-y", *data)  # changes config-domain at least
    assert first.returncode == 0, first.stderr[-3000:]
    run = pyinfra(root, "-y", *data)  # converged: nothing to change
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"knfleet: metrics report: {prom}" in run.stderr and f"knfleet: HTML report: {page}" in run.stderr
    rep = json.loads(report.read_text())
    assert [p.name for p in prom.parent.iterdir()] == ["knfleet.prom"]
    fams = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert len(fams) == len(list(text_string_to_metric_families(prom.read_text())))  # one family per name
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}

    def get(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert {c.name for c in clusters} == set(rep["clusters"])
    for name, o in rep["clusters"].items():
        assert o["status"] == "converged" and o["knative_version"] == "1.17.0"
        assert get("knfleet_cluster_outcome", cluster=name, outcome="converged") == 1
        assert get("knfleet_cluster_ok", cluster=name) == 1
        assert get("knfleet_cluster_last_run_timestamp_seconds", cluster=name) == pytest.approx(rep["finished"])
        assert get("knfleet_cluster_duration_seconds", cluster=name) == o["duration_s"]
        assert get("knfleet_cluster_api_requests", cluster=name) == o["api_requests"]
        assert get("knfleet_cluster_last_run_changed_objects", cluster=name) == len(metrics.changed_objects(o)) == 0
        assert get("knfleet_cluster_runs_total", cluster=name, outcome="converged") == 1
        assert get("knfleet_knative_version_info", cluster=name, version="1.17.0") == 1
        assert o["steps"]
        for title, seconds in metrics.step_seconds(o).items():
            assert get("knfleet_step_duration_seconds", cluster=name, step=title) == pytest.approx(seconds)
        # inventories/local.py: each of the two public services through kourier-internal and the proxy's balancer
        assert sorted(path_of(s["via"]) for s in o["smoke"]) == ["kourier-internal"] * 2 + ["proxy"] * 2, o["smoke"]
        assert all(s["ok"] and not s["skipped"] for s in o["smoke"]), o["smoke"]
        for s in o["smoke"]:
            where = {"cluster": name, "service": s["service"], "phase": "deploy", "path": path_of(s["via"])}
            assert get("knfleet_smoke_success", **where) == 1
            assert get("knfleet_smoke_latency_seconds", **where) == pytest.approx(s["latency_s"])
            if s["cold_start_s"] is None:
                assert ("knfleet_smoke_cold_start_seconds", tuple(sorted(where.items()))) not in found
            else:
                assert get("knfleet_smoke_cold_start_seconds", **where) == pytest.approx(s["cold_start_s"])
    # the first run's count carried on: it changed objects
    total = sum(v for (n, labels), v in found.items() if n == "knfleet_cluster_runs_total")
    assert total == 2 * len(clusters)
    assert all(get("knfleet_cluster_changed_objects_total", cluster=c.name) > 0 for c in clusters)
    assert "No smoke results" not in page.read_text()


PHASE_BOXES = ("return Array.from(document.querySelectorAll(arguments[0])).map(g => Array.from("
               "g.querySelectorAll('rect.cold-phase')).map(e => {const r = e.getBoundingClientRect(); "
               "return [r.left, r.top, r.right, r.bottom, e.getAttribute('data-phase'), "
               "parseFloat(e.getAttribute('data-seconds'))];}))")


def cold_report(clusters: list[str], services: list[str], finished: float, pull: float) -> dict:
    """A run report with a cold start per service and cluster (one of them with its pull phase unknown)."""
    results = {name: outcome.ClusterOutcome(name, outcome.CONVERGED, cold_starts=[
        {"service": svc, "revision": f"{svc.split('/')[-1]}-00001", "pod": "p", "node": "kwok-gpu-1",
         "image": "vllm/vllm-openai:v0.6.4", "trigger": "wake", "started": finished - 500,
         "phases": {"schedule": 3.0, "pull": None if (i, j) == (1, 0) else pull + i, "start": 0.5, "load": 195.0 - i,
                    "first_answer": 0.4}, "total_s": None}
        for i, svc in enumerate(services)]) for j, name in enumerate(clusters)}
    return {**outcome.report("run", results, action="install", dry_run=False), "finished": finished}


def assert_stacked(driver: Any, chart: str, count: int) -> None:
    """Each bar's phases as the browser lays them out: in order from the bottom of the plot up, each on top of the
    one below, as tall as its seconds on the chart's scale; no two bars overlapping."""
    svg = driver.find_element("css selector", chart)
    y_max = float(svg.get_attribute("data-y-max"))
    area = driver.find_element("css selector", f"{chart} g.plot-area rect").rect
    bars = driver.execute_script(PHASE_BOXES, f"{chart} g.cold-bar")
    assert len(bars) == count
    for segments in bars:
        assert segments, "a bar with no phase drawn"
        order = [s[4] for s in segments]
        assert order == [p for p in ("schedule", "pull", "start", "load", "first_answer") if p in order]
        bottom = area["y"] + area["height"]
        for left, top, right, low, phase, seconds in segments:
            assert abs(low - bottom) <= 1.0, (phase, low, bottom)
            assert abs((low - top) - area["height"] * seconds / y_max) <= 1.5, (phase, low - top, seconds)
            assert right - left >= 8
            bottom = top
    spans = sorted((s[0][0], s[0][2]) for s in bars)
    for (_, right), (left, _) in itertools.pairwise(spans):
        assert right <= left + 0.5, spans


@pytest.mark.parametrize(("clusters", "services"), [
    (["local-1"], ["knative-qwen7b/qwen7b-scale-to-zero"]),
    ([f"prod-eu-west-{i}-gpu-a100-pool" for i in range(4)], [f"llm-serving/qwen2-5-72b-instruct-awq-{i}" for i in
                                                              range(5)]),
    ([f"MMMW-WWWM-mmmm-wwww-{i}" for i in range(3)],
     ["team-wwwwwwwwwwwwmmmmmmmmmmmmmmmmmmmmmmmm/mmmm-wwww-m", "ns/服务"]),
])
def test_cold_start_phases_are_stacked_bars_with_labels_apart(chromium, tmp_path, clusters, services):
    """Issue 25: the page shows each service's cold start on each cluster as a stacked bar of its phases, and over
    time with several reports; the labels never overlap."""
    page = tmp_path / "cold.html"
    html.write(str(page), [cold_report(clusters, services, 1795700000.0, 214.0)])
    chromium.get(page.resolve().as_uri())
    n = len(clusters) * len(services)
    assert_stacked(chromium, "#cold-chart", n)
    assert_labels_apart(chromium, "#cold-chart", n)
    unknown = chromium.find_elements("css selector", '#cold-chart g.cold-bar[data-unknown="pull"]')
    assert len(unknown) == (1 if len(services) > 1 else 0)  # not drawn, named in the tooltip: "pull ? s"
    for u in unknown:
        assert "pull ? s" in u.find_element("css selector", "title").get_attribute("textContent")
    rows = chromium.find_elements("css selector", "#clusters table.cold-starts tr[data-pod]")
    assert len(rows) == n and all(r.text.startswith("cold start ") for r in rows)
    # several reports: the pull phase going away (a pre-pulled image), report after report
    reports = [cold_report(clusters[:2], services[:2], 1795700000.0 + 600 * k, 214.0 if k < 3 else 0.0)
               for k in range(8)]
    html.write(str(page), reports)
    chromium.get(page.resolve().as_uri())
    per_report = min(len(clusters), 2) * min(len(services), 2)
    assert_stacked(chromium, "#cold-trend-chart", 8 * per_report)
    assert_labels_apart(chromium, "#cold-trend-chart", 8)
