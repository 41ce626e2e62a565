"""Shell completion for `knfleet`, made from its argparse parser (so it never lists a stale option).

    source <(knfleet completion bash)         # bash (~/.bashrc)
    source <(knfleet completion zsh)          # zsh (~/.zshrc): the same function through bashcompinit

Completes subcommands, their options, the choices of an option, and file arguments by what they are: an
inventory (a .py file; `inventories/*.py` first), a JSON report, lint input (.yaml / .yml / .py) or any file.
Each argparse action says which with `completion.kind(action, KIND)`; the default for a value is nothing.
"""

from __future__ import annotations

import argparse
import shlex

# what a value is completed with: a file filter (glob extensions) or nothing
KINDS = {"inventory": ("py",), "json": ("json",), "lint": ("yaml", "yml", "py"), "file": (), "html": ("html",),
         "prom": ("prom",), "none": None}
_ATTR = "knfleet_complete"


def kind(action: argparse.Action, what: str) -> argparse.Action:
    """Mark an action's value as completed by `what` (a key of KINDS)."""
    if what not in KINDS:
        raise ValueError(f"completion kind {what!r}; allowed: {', '.join(KINDS)}")
    setattr(action, _ATTR, what)
    return action


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:  # argparse keeps its actions here (no public accessor)
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings if o.startswith("--") or len(a.option_strings) == 1]


def _value_case(parser: argparse.ArgumentParser) -> tuple[list[str], str]:
    """The `case "$prev"` branches for options taking a value, and the positional's completion."""
    branches: list[str] = []
    positional = "none"
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            continue
        what = getattr(a, _ATTR, "none")
        if not a.option_strings:
            if a.choices:
                positional = "choices:" + " ".join(map(str, a.choices))
            else:
                positional = what
            continue
        if a.nargs == 0:
            continue
        pattern = "|".join(a.option_strings)
        if a.choices:
            words = shlex.quote(" ".join(map(str, a.choices)))
            branches.append(f'            {pattern}) COMPREPLY=($(compgen -W {words} -- "$cur")); return;;')
        else:
            branches.append(f"            {pattern}) {_files_call(what)}; return;;")
    return branches, positional


def _files_call(what: str) -> str:
    exts = KINDS.get(what)
    if exts is None:
        return "COMPREPLY=()"
    return f"_knfleet_files {what} {' '.join(exts)}".rstrip()


def bash(parser: argparse.ArgumentParser) -> str:
    subs = _subparsers(parser)
    prog = parser.prog
    cases = []
    for name, sub in subs.items():
        branches, positional = _value_case(sub)
        if positional.startswith("choices:"):
            pos = f'COMPREPLY=($(compgen -W {shlex.quote(positional[8:])} -- "$cur"))'
        else:
            pos = _files_call(positional)
        opts = shlex.quote(" ".join(_options(sub)))
        cases.append(f"""    {name})
        case "$prev" in
{chr(10).join(branches) if branches else '            "") ;;'}
        esac
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W {opts} -- "$cur"))
        else
            {pos}
        fi
        ;;""")
    top = shlex.quote(" ".join([*subs, *_options(parser)]))
    names = "|".join(subs)
    return f"""# {prog} completion for bash (and zsh through bashcompinit); made by `{prog} completion bash`
_knfleet_files() {{
    # $1: what (inventory lists inventories/*.py first); $2...: extensions to keep (none: every file)
    local what="$1"; shift
    local IFS=$'\\n' f ext keep
    COMPREPLY=()
    if [[ "$what" == inventory && "$cur" != */* && -d inventories ]]; then
        for f in $(compgen -f -- "inventories/$cur"); do
            [[ "$f" == *.py && -f "$f" ]] && COMPREPLY+=("$f")
        done
    fi
    for f in $(compgen -f -- "$cur"); do
        if [[ -d "$f" ]]; then
            COMPREPLY+=("$f")
            continue
        fi
        keep=$(( $# == 0 ))
        for ext in "$@"; do
            [[ "$f" == *."$ext" ]] && keep=1
        done
        (( keep )) && COMPREPLY+=("$f")
    done
    compopt -o filenames 2>/dev/null
    return 0
}}

_knfleet() {{
    # zsh (bashcompinit) passes COMP_WORDS as a zsh array, which counts from 1
    local o=0
    [[ -n "${{ZSH_VERSION:-}}" ]] && o=1
    local cur="${{COMP_WORDS[COMP_CWORD+o]}}" prev="${{COMP_WORDS[COMP_CWORD-1+o]}}" cmd="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i+o]}}" in
            {names}) cmd="${{COMP_WORDS[i+o]}}"; break;;
        esac
    done
    case "$cmd" in
    "")
        COMPREPLY=($(compgen -W {top} -- "$cur"))
        ;;
{chr(10).join(cases)}
    esac
    return 0
}}

if [[ -n "${{ZSH_VERSION:-}}" ]]; then
    autoload -U +X bashcompinit && bashcompinit
fi
complete -F _knfleet {prog}
"""


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    if shell not in ("bash", "zsh"):
        raise ValueError(f"shell {shell!r}; allowed: bash, zsh")
    text = bash(parser)
    if shell == "zsh":
        return f"#compdef {parser.prog}\n" + text.replace("completion bash`", "completion zsh`", 1)
    return text
