"""The one ``$tplYaml`` form the values files use: ``{{ printf "FORMAT" ARG... | quote }}``.

Each ARG must be one of a few known expressions (headless Service name, namespace, fullname, ports);
anything else is an error naming the key. This is a recogniser, not a template engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pytest_natsnet.reference.schema import unsupported

_PRINTF = re.compile(
    r"\{\{-?\s*printf\s+\"(?P<format>(?:[^\"\\]|\\.)*)\"(?P<args>[^|}]*?)\s*(?P<quote>\|\s*quote\s*)?-?\}\}"
)
_ARG = re.compile(r"\([^()]*\)|[^\s()]+")
_VERB = re.compile(r"%[sdv%]")


def expression_values(
    *, fullname: str, headless: str, namespace: str, ports: Mapping[str, int]
) -> dict[str, str | int]:
    """The known argument expressions and their values for one release."""
    known: dict[str, str | int] = {".Values.headlessService.name": headless}
    for root in ("$", "."):
        known[f'(include "nats.namespace" {root})'] = namespace
        known[f'(include "nats.fullname" {root})'] = fullname
    for name, port in ports.items():
        known[f".Values.config.{name}.port"] = port
        known[f"(int .Values.config.{name}.port)"] = port
    return known


def evaluate(template: str, known: Mapping[str, str | int], dotted: str) -> str:
    """The string the template produces; ``dotted`` names the values key in errors."""
    match = _PRINTF.fullmatch(template.strip())
    if not match:
        raise unsupported(
            dotted, f"is a template the built-in reference rendering cannot evaluate: {template!r}"
        )
    args: list[str | int] = []
    for raw in _ARG.findall(match.group("args")):
        expression = " ".join(raw.split())
        if expression not in known:
            raise unsupported(
                dotted, f"uses {expression!r}, which the built-in reference rendering cannot evaluate"
            )
        args.append(known[expression])
    fmt = match.group("format").replace('\\"', '"').replace("\\\\", "\\")
    return _printf(fmt, args, dotted)


def _printf(fmt: str, args: list[str | int], dotted: str) -> str:
    remaining = list(args)

    def substitute(verb: re.Match[str]) -> str:
        if verb.group() == "%%":
            return "%"
        if not remaining:
            raise unsupported(dotted, "has more printf verbs than arguments")
        value = remaining.pop(0)
        if verb.group() == "%d" and not isinstance(value, int):
            raise unsupported(dotted, f"formats {value!r} with %d")
        return str(value)

    text = _VERB.sub(substitute, fmt)
    if remaining:
        raise unsupported(dotted, "has more printf arguments than verbs")
    return text
