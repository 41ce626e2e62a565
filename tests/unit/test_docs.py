"""The documentation stays true to the repository: README.md short and linking every docs/*.md, each docs/*.md with
a table of contents whose links resolve to its own headings, and every repository path the docs name present (a path
that no longer exists fails).

What counts as a repository path, in backticks, fenced code blocks and link targets (prose is not read: "broken
files/clusters" is no path):
- a token whose first segment is one of the repository's top-level folders (ROOTS, plus any top-level folder that
  exists and is not hidden), such as `knfleet/desired/bundle.py`, `localcluster/`, `tests/unit/test_docs.py`,
  `group_data/all.py`, `inventories/example.py`, `files/knative-nginx.yaml`, `bench/…`, `.ci/run`, `docs/run.md`;
- a bare top-level file name of TOP_FILES (`deploy.py`, `Makefile`, …);
- every relative markdown link target (`[x](run.md#the-lock)`, relative to the file that holds it), with its anchor
  checked against the target's headings.
Placeholders match any name: `<group>`, `{version}`, `*` (so `group_data/<group>.py` needs some `group_data/*.py`).

Not repository paths, skipped on purpose (NOT_REPO): `../shared` (the shared Knative manifests and notes beside the
repository), `reports/` and `.local/` (written by runs and local clusters, git-ignored), `.venv/` (the virtualenv
`make` creates) and `~/.cache` (the user's build cache, outside the repository). Absolute paths (`/var/log/…`), URLs
and home paths (`~/.kube/…`) never start with a repository folder, so they are not checked either.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200
ROOTS = {"knfleet", "localcluster", "tests", "group_data", "inventories", "files", "bench", "tasks", "docs", ".ci"}
TOP_FILES = {"deploy.py", "Makefile", "pyproject.toml", "README.md", ".gitignore"}
NOT_REPO = ("../shared", "reports/", ".local/", ".venv/", "~/.cache")
SEPARATORS = re.compile(r"[\s`'\"()\[\]=,;|&]+")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"(`+)([^`]+?)\1")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
PLACEHOLDER = re.compile(r"<[^>/]*>|\{[^}/]*\}")


def docs() -> list[Path]:
    return sorted((REPO / "docs").glob("*.md"))


# --- markdown: headings, anchors, table of contents ------------------------------------------------------------------
def prose_lines(text: str) -> list[tuple[bool, str]]:
    """Each line with whether it is inside a fenced code block."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append((True, line))
            continue
        out.append((fenced, line))
    return out


def headings(text: str) -> list[tuple[int, str]]:
    return [(len(m.group(1)), m.group(2)) for fenced, line in prose_lines(text) if not fenced
            for m in [HEADING.match(line)] if m]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (letters, digits, '_' and '-' kept), each space a
    '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, h in headings(text):
        base = slug(h)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def toc_problems(text: str) -> list[str]:
    """A table of contents: links to the file's own anchors before its first '##' section, each resolving to a
    heading, every '##' section listed."""
    lines = prose_lines(text)
    first_section = next((i for i, (fenced, line) in enumerate(lines) if not fenced and line.startswith("## ")),
                         len(lines))
    toc = [m.group(1)[1:] for _, line in lines[:first_section] for m in LINK.finditer(line)
           if m.group(1).startswith("#")]
    if not toc:
        return ["no table of contents (links to its own ## sections before the first ## heading)"]
    own = anchors(text)
    problems = [f"table of contents links to #{a}, which is no heading here" for a in toc if a not in own]
    sections = [slug(h) for level, h in headings(text) if level == 2]
    problems += [f"section #{s} is missing from the table of contents" for s in sections if s not in toc]
    return problems


# --- paths ------------------------------------------------------------------------------------------------------------
def roots(repo: Path) -> set[str]:
    present = {p.name for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return (ROOTS | present) - {n.rstrip("/") for n in NOT_REPO}


def code(text: str) -> str:
    """What a text quotes as code: its fenced blocks, its `backticked` spans and its link targets."""
    lines = prose_lines(text)
    prose = "\n".join("" if fenced else line for fenced, line in lines)  # a span may wrap onto the next line
    return "\n".join([line for fenced, line in lines if fenced] + [m.group(2) for m in INLINE_CODE.finditer(prose)]
                     + LINK.findall(prose))


def repo_paths(text: str, repo: Path = REPO) -> list[str]:
    """The repository paths a text names (see the module's docstring), anchors dropped."""
    found = []
    tops = roots(repo)
    for token in SEPARATORS.split(code(text)):
        token = token.rstrip(".:!?…").split("#", 1)[0]
        if not token or token.startswith(NOT_REPO):
            continue
        if token in TOP_FILES or ("/" in token and token.split("/", 1)[0] in tops):
            found.append(token)
    return found


def exists(path: str, base: Path) -> bool:
    pattern = PLACEHOLDER.sub("*", path).rstrip("/")
    if "*" in pattern:
        return any(base.glob(pattern))
    return (base / pattern).exists()


def missing(text: str, where: Path, repo: Path = REPO) -> list[str]:
    """What a text (the file `where`) names that does not exist: repository paths (from the repository's root) and
    relative links (from the file's folder, with their anchors)."""
    out = [f"{p} (no such path in the repository)" for p in repo_paths(text, repo) if not exists(p, repo)]
    for target in (m.group(1) for m in LINK.finditer(text)):
        if re.match(r"^[a-z]+:", target) or target.startswith("#") or target.startswith(NOT_REPO):
            continue
        path, _, anchor = target.partition("#")
        file = (where.parent / path).resolve()
        if not file.exists():
            out.append(f"{target} (link to a file that does not exist)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            out.append(f"{target} (no heading #{anchor} in {path})")
    return out


# --- the repository's documentation --------------------------------------------------------------------------------
def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_docs_exist_and_the_readme_links_each():
    assert docs(), "docs/ has no .md file"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    linked = {(REPO / m.group(1).split("#", 1)[0]).resolve() for m in LINK.finditer(readme)}
    unlisted = [d.name for d in docs() if d.resolve() not in linked]
    assert not unlisted, f"README.md's Documentation list lacks {unlisted}: add one line for each"


@pytest.mark.parametrize("doc", docs(), ids=lambda p: p.name)
def test_each_doc_has_a_table_of_contents_that_resolves(doc: Path):
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# "), f"{doc.name} does not start with its title (# …)"
    assert not toc_problems(text), f"{doc.name}: {toc_problems(text)}"


@pytest.mark.parametrize("doc", [REPO / "README.md", *docs()], ids=lambda p: p.name)
def test_every_path_the_docs_name_exists(doc: Path):
    text = doc.read_text(encoding="utf-8")
    assert not missing(text, doc), f"{doc.relative_to(REPO)} names what is not there: {missing(text, doc)}"


def test_the_path_check_reads_the_docs_paths():
    """Not vacuous: the docs' paths are found, in prose, backticks, tables and code blocks."""
    names = set(repo_paths((REPO / "docs" / "run.md").read_text(encoding="utf-8")))
    assert {"knfleet/run/operations.py", "knfleet/desired/bundle.py", "deploy.py", "files/knative-nginx.yaml"} <= names
    assert "knfleet/kube/wait.py" in repo_paths((REPO / "docs" / "layout.md").read_text(encoding="utf-8")) or \
        "knfleet/kube/wait.py" in repo_paths((REPO / "docs" / "run.md").read_text(encoding="utf-8"))


# --- the checks themselves, on synthetic text ----------------------------------------------------------------------
def test_a_path_that_no_longer_exists_fails():
    text = ("Pins live in `knfleet/bundle.py` (moved to `knfleet/desired/bundle.py`).\n"
            "```\nknfleet/gostrconv.py   Go's parsing\n```\n"
            "See `tests/unit/test_no_such_file.py`, `group_data/<group>.yaml` and\n`.ci/gone`.\n")
    found = missing(text, REPO / "docs" / "synthetic.md")
    assert sorted(found) == [".ci/gone (no such path in the repository)",
                             "group_data/<group>.yaml (no such path in the repository)",
                             "knfleet/bundle.py (no such path in the repository)",
                             "knfleet/gostrconv.py (no such path in the repository)",
                             "tests/unit/test_no_such_file.py (no such path in the repository)"]


def test_paths_that_exist_placeholders_and_skipped_places_pass():
    text = ("`knfleet/desired/bundle.py`, `group_data/<group>.py`, `inventories/<fleet>.py`, `knfleet/run/`,\n"
            "`/srv/knative/v{version}`, `deploy.py`, `.ci/run`, [layout](layout.md#top-level).\n"
            "Not the repository's: `../shared/knative/1.17.0`, `reports/bench.json`, "
            "`.local/clusters/<name>/kubeconfig`, `.venv/bin/pyinfra`, `~/.cache/knfleet/bin/<versions>/`, "
            "`~/.kube/prod.yaml`, `https://pyinfra.com/x/y`, `knative.dev/serving/cmd/webhook`.\n"
            "Prose is not read: broken files/clusters, tests/nothing.\n")
    assert missing(text, REPO / "docs" / "synthetic.md") == []
    assert sorted(repo_paths(text)) == [".ci/run", "deploy.py", "group_data/<group>.py", "inventories/<fleet>.py",
                                        "knfleet/desired/bundle.py", "knfleet/run/"]


def test_a_broken_link_or_anchor_fails():
    text = "[run](run.md#the-lock) [gone](nowhere.md) [bad anchor](run.md#no-such-section) [web](https://x.org/a.md)"
    assert missing(text, REPO / "docs" / "synthetic.md") == [
        "nowhere.md (link to a file that does not exist)",
        "run.md#no-such-section (no heading #no-such-section in run.md)"]


def test_a_table_of_contents_must_resolve_and_list_every_section():
    good = "# T\n\n- [One](#one)\n- [Two: `x`](#two-x)\n\n## One\n\n```\n## not a heading\n```\n## Two: `x`\n"
    assert toc_problems(good) == []
    assert toc_problems("# T\n\n## One\n") == [
        "no table of contents (links to its own ## sections before the first ## heading)"]
    assert toc_problems("# T\n\n- [One](#one)\n- [Gone](#gone)\n\n## One\n## Two\n") == [
        "table of contents links to #gone, which is no heading here",
        "section #two is missing from the table of contents"]


def test_slugs_are_githubs():
    assert slug("Answers that say \"try again\"") == "answers-that-say-try-again"
    assert slug("Knative's own webhook and controller") == "knatives-own-webhook-and-controller"
    assert slug("Group data `models`") == "group-data-models"
    assert anchors("## A\n## A\n") == {"a", "a-1"}
