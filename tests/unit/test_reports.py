"""Issue 14, the pure parts: Prometheus metrics and the HTML page from knfleet's own report values, knfleet report,
shell completion, --version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from knfleet import cli
from knfleet.report import html, metrics, outcome
from knfleet.report.records import SmokeResult, skipped
from tests.conftest import REPO

C = outcome.ClusterOutcome


def smoke(service: str, latency: float | None, cold: float | None = None, ok: bool = True,
          via: str = "kourier-internal (port-forward)") -> dict:
    return SmokeResult(service, ok, 200 if ok else None, latency, cold, 1, None if ok else "HTTP 503: no",
                       via=via).as_dict()


STEPS = [
    {"title": "Preflight", "status": "ok", "seconds": 0.25, "objects": [], "note": ""},
    {"title": "Apply config", "status": "changed", "seconds": 1.5,
     "objects": ["ConfigMap/knative-serving/config-domain", "ConfigMap/knative-serving/config-autoscaler"], "note": ""},
    {"title": 'Model "services" Ready', "status": "changed", "seconds": 2.0,
     "objects": ["Service/knative-qwen7b/svc", "ConfigMap/knative-serving/config-domain"], "note": ""},
]


def converged_rollout() -> dict:
    results = {
        "c1": C("c1", outcome.CHANGED, host="@kube/c1", wave=0, steps=STEPS, duration_s=4.5, knative_version="1.17.0",
                changed_operations=["Apply config"],
                smoke=[smoke("ns/a", 0.125), smoke("ns/a", 0.0625, via="proxy http://203.0.113.7:80"),
                       smoke("ns/b", 0.75, cold=0.75)], smoke_after_bake=[smoke("ns/a", 0.5)]),
        "c2": C("c2", outcome.CONVERGED, host="@kube/c2", wave=1, steps=STEPS[:1], duration_s=1.5,
                knative_version="1.17.0", smoke=[smoke("ns/a", 0.25), skipped("ns/b", "at zero, not woken").as_dict()]),
    }
    return outcome.report("rollout", results, inventory="inv.py", status="converged", exit_code=0,
                          halted_at_wave=None, max_failed_clusters=0, duration_s=9.0)


def halted_rollout() -> dict:
    results = {
        "c1": C("c1", outcome.FAILED, host="@kube/c1", wave=0, duration_s=3.0,
                errors=["preflight: API server not reachable: connection refused\nmore"]),
        "c2": C("c2", outcome.UNTOUCHED, host="@kube/c2", wave=1, reason="not touched: rollout halted after wave 0"),
    }
    return outcome.report("rollout", results, inventory="inv.py", status="halted", exit_code=2, halted_at_wave=0,
                          max_failed_clusters=0, duration_s=3.5)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    names = [fam.name for fam in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)), names  # a gauge `x` and a counter `x_total` would be one family
    for fam in text_string_to_metric_families(text):
        assert fam.name.startswith("knfleet_")
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


# --- metrics --------------------------------------------------------------------------------------------------------
def test_metrics_parse_with_prometheus_client_and_hold_the_report_values():
    rep = converged_rollout()
    text = metrics.text(rep)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["knfleet_cluster_runs"].type == "counter"  # the parser names counters without _total
    assert fams["knfleet_smoke_latency_seconds"].type == "gauge"
    found = samples(text)
    for name, o in rep["clusters"].items():
        last_run = value(found, "knfleet_cluster_last_run_timestamp_seconds", cluster=name)
        assert last_run == pytest.approx(rep["finished"])
        assert value(found, "knfleet_cluster_outcome", cluster=name, outcome=o["status"]) == 1
        assert sum(v for (n, labels), v in found.items()
                   if n == "knfleet_cluster_outcome" and ("cluster", name) in labels) == 1
        assert value(found, "knfleet_cluster_duration_seconds", cluster=name) == o["duration_s"]
        assert value(found, "knfleet_knative_version_info", cluster=name, version="1.17.0") == 1
        assert value(found, "knfleet_cluster_wave", cluster=name) == o["wave"]
        assert value(found, "knfleet_cluster_ok", cluster=name) == 1
        for s in o["steps"]:
            assert value(found, "knfleet_step_duration_seconds", cluster=name, step=s["title"]) == s["seconds"]
        for key, phase in metrics.PHASES:
            for s in o[key]:
                where = {"cluster": name, "service": s["service"], "phase": phase}
                if s["skipped"]:
                    assert value(found, "knfleet_smoke_skipped", **where) == 1
                    assert ("knfleet_smoke_latency_seconds", tuple(sorted(where.items()))) not in found
                    continue
                where["path"] = s["via"].split(" ")[0]  # one series per path: the proxy's and kourier-internal's
                assert value(found, "knfleet_smoke_latency_seconds", **where) == s["latency_s"]
                assert value(found, "knfleet_smoke_success", **where) == 1
                if s["cold_start_s"] is not None:
                    assert value(found, "knfleet_smoke_cold_start_seconds", **where) == s["cold_start_s"]
    # changed objects: each object once (config-domain changed in two steps)
    assert value(found, "knfleet_cluster_last_run_changed_objects", cluster="c1") == 3
    assert value(found, "knfleet_cluster_changed_objects_total", cluster="c1") == 3
    assert value(found, "knfleet_cluster_runs_total", cluster="c1", outcome="changed") == 1
    assert value(found, "knfleet_rollout_exit_code") == 0 and value(found, "knfleet_rollout_duration_seconds") == 9.0
    assert value(found, "knfleet_report_info", kind="rollout", status="converged") == 1


def test_counters_go_on_from_the_replaced_file_and_untouched_clusters_keep_their_last_run(tmp_path):
    path = tmp_path / "textfile" / "knfleet.prom"
    first = converged_rollout()
    metrics.write(str(path), first)
    metrics.write(str(path), first)
    halted = halted_rollout()
    metrics.write(str(path), halted)
    found = samples(path.read_text())
    assert value(found, "knfleet_cluster_runs_total", cluster="c1", outcome="changed") == 2
    assert value(found, "knfleet_cluster_runs_total", cluster="c1", outcome="failed") == 1
    assert value(found, "knfleet_cluster_runs_total", cluster="c2", outcome="converged") == 2
    assert value(found, "knfleet_cluster_changed_objects_total", cluster="c1") == 6
    # c2 was not touched by the halted rollout: its last run is the converged one's
    assert value(found, "knfleet_cluster_last_run_timestamp_seconds", cluster="c2") == pytest.approx(first["finished"])
    assert value(found, "knfleet_cluster_last_run_timestamp_seconds", cluster="c1") == pytest.approx(halted["finished"])
    assert value(found, "knfleet_cluster_outcome", cluster="c2", outcome="untouched") == 1
    assert value(found, "knfleet_cluster_ok", cluster="c1") == 0
    assert ("knfleet_cluster_ok", (("cluster", "c2"),)) not in found
    assert [p.name for p in path.parent.iterdir()] == ["knfleet.prom"]  # no temporary file left
    assert oct(path.stat().st_mode & 0o777) == "0o644"  # node_exporter runs as another user


def test_metrics_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "knfleet.prom"
    metrics.write(str(path), halted_rollout())
    before = path.read_text()

    def crash(src, dst):
        assert Path(src).parent == path.parent and Path(src).name.startswith(".")  # written beside it, hidden
        assert Path(src).read_text() != before
        raise OSError("disk gone")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        metrics.write(str(path), converged_rollout())
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["knfleet.prom"]


def test_label_values_are_escaped():
    rep = converged_rollout()
    rep["clusters"]["c1"]["steps"].append({"title": 'odd \\ "step"\nline', "status": "ok", "seconds": 0.5,
                                           "objects": [], "note": ""})
    found = samples(metrics.text(rep))
    assert value(found, "knfleet_step_duration_seconds", cluster="c1", step='odd \\ "step"\nline') == 0.5
    prev = metrics.parse_previous(metrics.text(rep))
    assert prev[("knfleet_step_duration_seconds", (("cluster", "c1"), ("step", 'odd \\ "step"\nline')))] == 0.5


# --- the HTML page --------------------------------------------------------------------------------------------------
class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and cls in a.get("class", "").split()]


def parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    return p


def test_page_is_self_contained_and_shows_cells_reasons_and_a_point_per_smoke_result():
    page = html.render([converged_rollout()])
    p = parse(page)
    assert not [t for t, _ in p.tags if t in ("script", "link", "img", "iframe", "object")]
    assert not [a for _, a in p.tags for k in ("src", "href") if k in a]  # nothing fetched at view time
    # no address besides the proxy path's, shown as text (the smoke result's `via`)
    bare = page.replace("http://203.0.113.7:80", "")
    assert "http://" not in bare and "https://" not in bare and "url(" not in page
    cells = {a["data-cluster"]: a for a in p.find("td", "cell")}
    assert {k: v["data-outcome"] for k, v in cells.items()} == {"c1": "changed", "c2": "converged"}
    points = p.find("g", "smoke-result")
    rep = converged_rollout()
    assert len(points) == sum(len(o["smoke"]) + len(o["smoke_after_bake"]) for o in rep["clusters"].values()) == 6
    assert {(a["data-cluster"], a["data-service"], a["data-phase"], a["data-latency"]) for a in points} == {
        ("c1", "ns/a", "deploy", "0.125"), ("c1", "ns/a", "deploy", "0.0625"), ("c1", "ns/b", "deploy", "0.75"),
        ("c1", "ns/a", "after_bake", "0.5"),
        ("c2", "ns/a", "deploy", "0.25"), ("c2", "ns/b", "deploy", "")}
    assert len(p.find("rect", "cold-start")) == 1
    text = " ".join(p.text)
    for obj in ("ConfigMap/knative-serving/config-domain", "Service/knative-qwen7b/svc"):
        assert obj in text
    assert 'Model "services" Ready' in text and "2.000" in text  # steps and their durations


def test_chart_coordinates_follow_the_values():
    chart = html.smoke_chart(converged_rollout())
    bottom = chart.top + chart.plot_h
    for pt in chart.points:
        expected = bottom - chart.plot_h * (pt.latency or 0) / chart.y_max
        assert pt.y == pytest.approx(expected, abs=0.01)
        assert chart.left <= pt.x <= chart.left + chart.plot_w
    assert chart.y_max >= max(p.latency or 0 for p in chart.points)


def test_x_labels_have_a_line_per_part_and_bands_wider_than_their_widest_line():
    chart = html.smoke_chart(converged_rollout())
    assert [lab.lines for lab in chart.x_labels][:2] == [["a", "c1", "via kourier-internal"], ["a", "c1", "via proxy"]]
    assert chart.x_labels[0].title == "ns/a on c1 via kourier-internal"
    centres = [lab.x for lab in chart.x_labels]
    widest = max(html.text_width(line) for lab in chart.x_labels for line in lab.lines)
    gaps = [b - a for a, b in zip(centres, centres[1:], strict=False)]
    assert min(gaps) >= widest + html.LABEL_GAP - 0.01  # x is rounded to 2 decimals
    long = "qwen2-5-72b-instruct-awq-with-a-name-far-too-long-for-one-band"
    cut = html.fit(long)
    assert cut.endswith("…") and long.startswith(cut[:-1]) and html.text_width(cut) <= html.LABEL_MAX_PX
    assert html.fit("svc") == "svc"
    assert html.text_width("mmmm") > html.text_width("nnnn") > html.text_width("iiii")  # upper bounds per glyph


def test_halted_rollout_page_names_the_failure_and_the_untouched_wave():
    p = parse(html.render([halted_rollout()]))
    cells = {a["data-cluster"]: a for a in p.find("td", "cell")}
    assert cells["c1"]["data-outcome"] == "failed" and cells["c1"]["data-bad"] == "true"
    assert cells["c2"]["data-outcome"] == "untouched"
    text = " ".join(p.text)
    assert "preflight: API server not reachable: connection refused" in text
    assert "not touched: rollout halted after wave 0" in text and "halted here" in text
    assert not p.find("g", "smoke-result") and "No smoke results" in text


def test_text_from_reports_is_escaped():
    rep = halted_rollout()
    rep["clusters"]["c1"]["errors"] = ["apply: <script>alert(1)</script>"]
    page = html.render([rep])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_several_reports_give_trends_in_time_order():
    old, new = halted_rollout(), converged_rollout()
    old["finished"] = new["finished"] - 3600
    p = parse(html.render([new, old]))
    runs = [a for t, a in p.tags if t == "tr" and a.get("class") == "run"]
    assert len(runs) == 2
    history = [a["data-outcome"] for a in p.find("td", "cell") if a.get("title") is not None]
    assert history == ["failed", "untouched", "changed", "converged"]  # oldest first, cluster by cluster
    trend = html.trend_chart([html.normalized(old), html.normalized(new)])
    assert {(pt.cluster, pt.service, pt.phase) for pt in trend.points} == {
        ("c1", "ns/a", "latency"), ("c1", "ns/b", "latency"), ("c1", "ns/b", "cold-start"), ("c2", "ns/a", "latency")}


# --- the command line -----------------------------------------------------------------------------------------------
def test_knfleet_report_renders_saved_reports_and_refuses_other_files(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    outcome.write(str(a), halted_rollout())
    outcome.write(str(b), converged_rollout())
    out = tmp_path / "site" / "fleet.html"
    assert cli.main(["report", str(a), str(b), "-o", str(out)]) == 0
    assert "Over time (2 reports)" in out.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "other/v1", "clusters": {}}))
    assert cli.main(["report", str(a), str(bad), "-o", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "'other/v1'" in err and outcome.SCHEMA in err
    assert not (tmp_path / "x.html").exists()
    assert cli.main(["report", str(tmp_path / "missing.json")]) == 2


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as ex:
        cli.main(["--version"])
    assert ex.value.code == 0
    assert capsys.readouterr().out.strip() == f"knfleet {metadata.version('knfleet')}"


def complete(script: Path, *words: str, cwd: Path = REPO) -> list[str]:
    """What bash offers for `knfleet <words>` (the last word is the one being completed)."""
    probe = f"""source {script}
[[ "$(complete -p knfleet)" == "complete -F _knfleet knfleet" ]] || {{ echo "not registered"; exit 3; }}
COMP_WORDS=(knfleet {' '.join(repr(w) if w else '""' for w in words)})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_knfleet
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    run = subprocess.run(["bash", "--norc", "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    return [x for x in run.stdout.splitlines() if x]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script(tmp_path, shell):
    run = subprocess.run([sys.executable, "-m", "knfleet.cli", "completion", shell], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stderr
    script = tmp_path / f"knfleet.{shell}"
    script.write_text(run.stdout)
    if shell == "zsh":
        assert run.stdout.startswith("#compdef knfleet") and "bashcompinit" in run.stdout
    assert set(complete(script, "")) == {"lint", "rollout", "rollback", "status", "diff", "doctor", "report",
                                         "advise", "jobs", "shard", "coordinate", "completion", "--help", "--version"}
    assert sorted(complete(script, "ro")) == ["rollback", "rollout"]
    assert complete(script, "rollo") == ["rollout"]
    assert sorted(complete(script, "rollout", "--re")) == ["--report", "--report-html", "--resume"]
    assert complete(script, "completion", "") == ["bash", "zsh"]
    assert sorted(complete(script, "rollout", "inventories/")) == ["inventories/example.py", "inventories/local.py"]
    inv = complete(script, "status", "")
    assert "inventories/local.py" in inv and "inventories/example.py" in inv and "README.md" not in inv
    assert sorted(complete(script, "diff", "inventories/")) == ["inventories/example.py", "inventories/local.py"]
    assert sorted(complete(script, "diff", "--re")) == ["--report", "--report-html"]
    assert "--bake" in complete(script, "rollout", "inventories/local.py", "--")
    assert complete(script, "rollout", "--bake", "") == []  # a number: nothing to offer
    (tmp_path / "r1.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    assert complete(script, "report", "", cwd=tmp_path) == ["r1.json"]
    assert sorted(complete(script, "lint", "group_data/")) == ["group_data/all.py", "group_data/local.py"]
    assert complete(script, "advise", "", cwd=tmp_path) == ["r1.json"]  # issue 25: saved reports
    assert sorted(complete(script, "advise", "--g")) == ["--gpu-hour-cost", "--gpus-per-pod"]
    assert complete(script, "lint", "group_data/all.py", "--reports", "", cwd=tmp_path) == ["r1.json"]
    # issue 26: the management cluster's objects
    assert sorted(complete(script, "jobs", "inventories/")) == ["inventories/example.py", "inventories/local.py"]
    assert complete(script, "jobs", "--sh") == ["--shard-size"]
    assert complete(script, "shard", "--kind", "") == ["converge", "rollout"]


def test_zsh_completion_through_bashcompinit(tmp_path):
    """In zsh the same function runs through bashcompinit (its compgen matches by $PREFIX, and COMP_WORDS counts
    from 1); zsh's own completion filters by the word typed, as compadd does."""
    if not shutil.which("zsh"):
        pytest.skip("zsh is not installed (apt-get install zsh); the bash test covers the script's logic")
    script = tmp_path / "knfleet.zsh"
    script.write_text(subprocess.run([sys.executable, "-m", "knfleet.cli", "completion", "zsh"], capture_output=True,
                                     text=True, cwd=REPO, check=True).stdout)
    probe = f"""autoload -U compinit && compinit -u
source {script}
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _knfleet; print -r -- "${{(j:,:)COMPREPLY}}"; }}
t knfleet rollout --re
t knfleet completion ""
PREFIX=inventories/ t knfleet status inventories/
PREFIX=group_data/ t knfleet lint group_data/
"""
    run = subprocess.run(["zsh", "-f", "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    options, shells, inventories, lint_files = run.stdout.splitlines()
    assert {"--resume", "--report", "--report-html", "--bake"} <= set(options.split(","))
    assert shells == "bash,zsh"
    assert sorted(inventories.split(",")) == ["inventories/example.py", "inventories/local.py"]
    assert sorted(lint_files.split(",")) == ["group_data/all.py", "group_data/local.py"]
