"""nats-server configuration: a small parser for what the NATS chart renders, and the chart's own layout.

``parse`` reads the JSON-like document the chart emits (maps with ``:``/``=``, arrays, quoted strings,
numbers, sizes such as ``1Gi`` (a :class:`Size`), booleans, comments, trailing commas) plus unquoted ``$VAR``
references. With ``env`` a reference
is resolved as nats-server does (a block-scoped key first, then the environment, whose value is parsed as
a value); without it, a reference stays a :class:`VarRef`. ``dumps`` writes a config the way the chart does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_natsnet.errors import NatsnetError

_BARE_VALUE_END = frozenset(" \t\r\n,;]}")
_BARE_KEY_END = frozenset(" \t\r\n:={}[],;\"'")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
_BOOLEANS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_SIZE_SUFFIXES = {
    "k": 1000, "kb": 1024, "ki": 1024, "kib": 1024,
    "m": 1000**2, "mb": 1024**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1024**3, "gi": 1024**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1024**4, "ti": 1024**4, "tib": 1024**4,
}  # fmt: skip
_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?\d+\.\d+(?:[eE][-+]?\d+)?")
_SIZED_INT = re.compile(r"([-+]?\d+)([A-Za-z]+)")
_RAW_VALUE = re.compile(r"<<\s*(.*?)\s*>>", re.DOTALL)
_MAX_VARIABLE_DEPTH = 16


@dataclass(frozen=True)
class VarRef:
    """An unresolved ``$NAME`` reference (what ``parse`` returns for it when no ``env`` is given)."""

    name: str

    def __str__(self) -> str:
        return f"${self.name}"


class Size(int):
    """A number with a size suffix (``1Gi``, ``64MB``): its value in bytes, written back as it was read."""

    text: str

    def __new__(cls, value: int, text: str) -> Size:
        size = super().__new__(cls, value)
        size.text = text
        return size

    def __getnewargs__(self) -> tuple[int, str]:  # type: ignore[override]
        return int(self), self.text

    def __repr__(self) -> str:
        return f"Size({int(self)}, {self.text!r})"


class NatsConfError(NatsnetError, ValueError):
    """A nats.conf text that does not parse; names the line and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(message, line, column)

    def __str__(self) -> str:
        return f"nats.conf line {self.line}, column {self.column}: {self.message}"


def parse(text: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The config as nested dicts/lists; ``$VAR`` resolved through ``env`` or kept as :class:`VarRef`."""
    return _Parser(text, env, depth=0).document()


def dumps(config: Mapping[str, Any]) -> str:
    """The chart's layout: pretty JSON, sorted keys, 2-space indent; ``"<< X >>"`` and VarRef unquoted."""
    return _dump_value(config, indent=0) + "\n"


def raw_value(text: str) -> str | None:
    """The unquoted text of a chart ``<< X >>`` value, or None for an ordinary string."""
    match = _RAW_VALUE.fullmatch(text)
    return match.group(1) if match else None


def _dump_value(value: Any, indent: int) -> str:
    pad = "  " * (indent + 1)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = [f"{pad}{_quote(str(k))}: {_dump_value(value[k], indent + 1)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        items = [f"{pad}{_dump_value(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    if isinstance(value, VarRef):
        return str(value)
    if isinstance(value, Size):
        return value.text
    if isinstance(value, str):
        raw = raw_value(value)
        return raw if raw is not None else _quote(value)
    return json.dumps(value)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _scalar(word: str) -> Any:
    """A bare word as nats-server reads it: boolean, number (with size suffix) or string."""
    lowered = word.lower()
    if lowered in _BOOLEANS:
        return _BOOLEANS[lowered]
    if _INT.fullmatch(word):
        return int(word)
    if _FLOAT.fullmatch(word):
        return float(word)
    sized = _SIZED_INT.fullmatch(word)
    if sized and sized.group(2).lower() in _SIZE_SUFFIXES:
        return Size(int(sized.group(1)) * _SIZE_SUFFIXES[sized.group(2).lower()], word)
    return word


class _Parser:
    """Recursive descent over the characters (the format is context-sensitive: ``//`` in a bare URL)."""

    def __init__(self, text: str, env: Mapping[str, str] | None, depth: int) -> None:
        self.text = text
        self.env = env
        self.depth = depth
        self.pos = 0
        self.scopes: list[dict[str, Any]] = []

    # -- positions and errors

    def error(self, message: str, pos: int | None = None) -> NatsConfError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return NatsConfError(message, line, column)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def describe(self) -> str:
        char = self.peek()
        return repr(char) if char else "end of input"

    def skip_blank(self) -> bool:
        """Skips whitespace and comments; True when a line ended in between."""
        newline = False
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r":
                self.pos += 1
            elif char == "\n":
                newline = True
                self.pos += 1
            elif char == "#" or self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                break
        return newline

    # -- grammar

    def document(self) -> dict[str, Any]:
        self.skip_blank()
        if self.peek() == "{":
            self.pos += 1
            result = self.map_body("}")
            self.pos += 1
        else:
            result = self.map_body("")
        self.skip_blank()
        if self.pos < len(self.text):
            raise self.error(f"unexpected {self.describe()} after the end of the document")
        return result

    def map_body(self, closer: str) -> dict[str, Any]:
        """Entries up to ``closer`` (not consumed; ``""`` = end of input)."""
        result: dict[str, Any] = {}
        self.scopes.append(result)
        try:
            while True:
                self.skip_blank()
                if self.peek() == closer:
                    return result
                if not self.peek():
                    raise self.error(f"missing {closer!r}: the map is not closed")
                key = self.key()
                self.skip_inline_blank()
                if self.peek() in (":", "="):
                    self.pos += 1
                self.skip_blank()
                result[key] = self.value()
                self.end_of_item(closer, "map entry", ",;")
        finally:
            self.scopes.pop()

    def end_of_item(self, closer: str, what: str, separators: str) -> None:
        newline = self.skip_blank()
        if self.peek() and self.peek() in separators:
            self.pos += 1
        elif not newline and self.peek() != closer:
            raise self.error(
                f"expected {separators[0]!r}, a new line or {closer or 'end of input'!r} "
                f"after a {what}, got {self.describe()}"
            )

    def skip_inline_blank(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.pos += 1

    def key(self) -> str:
        if self.peek() in ('"', "'"):
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _BARE_KEY_END:
            self.pos += 1
        if self.pos == start:
            raise self.error(f"expected a key, got {self.describe()}")
        return self.text[start : self.pos]

    def value(self) -> Any:
        char = self.peek()
        if char == "{":
            self.pos += 1
            result = self.map_body("}")
            self.pos += 1
            return result
        if char == "[":
            return self.array()
        if char in ('"', "'"):
            return self.quoted()
        if char == "$":
            return self.variable()
        start = self.pos
        word = self.bare_word()
        if not word:
            raise self.error(f"expected a value, got {self.describe()}", start)
        return _scalar(word)

    def array(self) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        while True:
            self.skip_blank()
            if self.peek() == "]":
                self.pos += 1
                return result
            if not self.peek():
                raise self.error("missing ']': the array is not closed")
            result.append(self.value())
            self.end_of_item("]", "array element", ",")

    def bare_word(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _BARE_VALUE_END:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        quote = self.peek()
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while True:
            char = self.peek()
            if not char or char == "\n":
                raise self.error("unterminated string", start)
            self.pos += 1
            if char == quote:
                return "".join(chars)
            if char == "\\" and quote == '"':
                chars.append(self.escape())
            else:
                chars.append(char)

    def escape(self) -> str:
        char = self.peek()
        if char in _ESCAPES:
            self.pos += 1
            return _ESCAPES[char]
        if char == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", self.text[self.pos + 1 : self.pos + 3]):
            self.pos += 3
            return chr(int(self.text[self.pos - 2 : self.pos], 16))
        raise self.error(f'invalid escape \\{char}: only \\xXX, \\t, \\n, \\r, \\" and \\\\ are allowed')

    def variable(self) -> Any:
        start = self.pos
        self.pos += 1
        name = self.bare_word()
        if not name:
            raise self.error("'$' without a variable name", start)
        if self.env is None:
            return VarRef(name)
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name not in self.env:
            raise self.error(f"variable ${name} is neither a key in scope nor in the environment", start)
        if self.depth >= _MAX_VARIABLE_DEPTH:
            raise self.error(f"variable ${name}: references nest deeper than {_MAX_VARIABLE_DEPTH}", start)
        return self.env_value(name, start)

    def env_value(self, name: str, start: int) -> Any:
        """The environment's text parsed as a value (a word stays a string), like nats-server."""
        inner = _Parser(self.env[name] if self.env else "", self.env, self.depth + 1)
        try:
            inner.skip_blank()
            value = inner.value() if inner.peek() else ""
            inner.skip_blank()
            if inner.pos < len(inner.text):
                raise inner.error(f"unexpected {inner.describe()} after the value")
        except NatsConfError as err:
            raise self.error(f"variable ${name} from the environment does not parse ({err})", start) from None
        return value
