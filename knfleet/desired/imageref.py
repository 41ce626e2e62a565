"""Container image references, checked by the grammar of the distribution reference (github.com/distribution/
reference, which containerd, Docker and Knative's tag resolution use). Pure: no cluster.

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain '/'] remote-name          (at most 255 characters)
    domain           := host [':' port-number]
    host             := domain-name | IPv4address | '[' IPv6address ']'
    domain-name      := domain-component ['.' domain-component]*
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    remote-name      := path-component ['/' path-component]*
    path-component   := alpha-numeric [separator alpha-numeric]*
    alpha-numeric    := /[a-z0-9]+/
    separator        := /[_.]|__|[-]+/
    tag              := /[\\w][\\w.-]{0,127}/
    digest           := algorithm ":" hex   (algorithm /[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*/,
                                             hex /[0-9a-fA-F]{32,}/)

A value that is not an image reference (a newline, a space, YAML, a second document) is refused by name before it
gets anywhere near an object.
"""

from __future__ import annotations

import re

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII)
NAME_MAX = 255

ALLOWED = ("an image reference such as nginx:1.27.3-alpine, registry.example:5000/team/app:v1 or "
           "repo/app@sha256:<64 hex digits> (lowercase path, no spaces or newlines)")


def problem(value: object) -> str | None:
    """Why `value` is not an image reference (None when it is one)."""
    if not isinstance(value, str) or not value:
        return "not a non-empty string"
    m = REFERENCE.fullmatch(value)
    if m is None:
        return "not an image reference"
    if len(m["name"]) > NAME_MAX:
        return f"its name is longer than {NAME_MAX} characters"
    return None


def is_reference(value: object) -> bool:
    return problem(value) is None
