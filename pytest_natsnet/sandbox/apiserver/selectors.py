"""Label and field selectors of list and watch requests (``labelSelector``, ``fieldSelector``), as pure
functions: parse once, then match objects."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pytest_natsnet.sandbox.store import BadRequest

Matcher = Callable[[Mapping[str, Any]], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQUALITY = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")
FIELD_ROOTS = ("metadata.", "spec.", "status.", "involvedObject.", "type", "reason", "source.", "reportingComponent")


def _split_terms(text: str) -> list[str]:
    """Splits on commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Callable[[Mapping[str, str]], bool]:
    found = _SET.match(term)
    if found:
        key, operator = found.group(2), found.group(3)
        values = {v.strip() for v in found.group(4).split(",") if v.strip()}
        if operator == "in":
            return lambda have: key in have and have[key] in values
        return lambda have: key not in have or have[key] not in values
    found = _EQUALITY.match(term)
    if found:
        key, operator, value = found.groups()
        if operator == "!=":
            return lambda have: have.get(key) != value
        return lambda have: have.get(key) == value
    found = _EXISTS.match(term)
    if found:
        negate, key = found.groups()
        return (lambda have: key not in have) if negate else (lambda have: key in have)
    raise BadRequest(f"unable to parse requirement: {term.strip()!r}: found unexpected token")


def label_selector(text: str | None) -> Matcher:
    """``a=b,c!=d,e in (f,g),!h`` → a matcher on objects' ``metadata.labels``. Empty selects everything."""
    if not text:
        return lambda obj: True
    terms = [_label_term(t) for t in _split_terms(text)]

    def matches(obj: Mapping[str, Any]) -> bool:
        have = (obj.get("metadata") or {}).get("labels") or {}
        return all(term(have) for term in terms)

    return matches


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """A dotted path's value as the API server compares it (missing = "")."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_selector(text: str | None) -> Matcher:
    """``metadata.name=x,status.phase!=Running`` → a matcher. Fields outside metadata/spec/status and the
    Event fields are refused as the API server does (400)."""
    if not text:
        return lambda obj: True
    terms: list[tuple[str, bool, str]] = []
    for term in _split_terms(text):
        found = _EQUALITY.match(term)
        if not found:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{term.strip()}'")
        path, operator, value = found.groups()
        if not path.startswith(FIELD_ROOTS):
            raise BadRequest(f'field label not supported: {path}')
        terms.append((path, operator == "!=", value))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) != value) if negate else (field_value(obj, path) == value)
                   for path, negate, value in terms)

    return matches


def selector(labels: str | None, fields: str | None) -> Matcher:
    by_labels, by_fields = label_selector(labels), field_selector(fields)
    return lambda obj: by_labels(obj) and by_fields(obj)
