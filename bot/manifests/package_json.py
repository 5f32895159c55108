"""package.json: read the sharp dependency and `overrides` pins; edit them without reformatting.

Pure text in, text out.  Edits replace only the bytes of the string values they change (or
insert one member with the indentation of its neighbours), so indentation, key order, line
endings and the trailing newline all survive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

from bot.errors import ManifestError
from bot.models import Pin

DEPENDENCY_FIELDS = ("dependencies", "devDependencies", "optionalDependencies")
_SIMPLE_SPEC = re.compile(r"^(?P<operator>\^|~|=|v)?(?P<version>\d+\.\d+\.\d+)$")
_LITERAL = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")
_WHITESPACE = re.compile(r"[ \t\n\r]*")

Path_ = tuple[str, ...]


@dataclass(frozen=True)
class Span:
    """Where one JSON value sits in the text (start inclusive, end exclusive)."""

    start: int
    end: int
    key_start: int


def _spans(text: str) -> dict[Path_, Span]:
    """Map every value's key path to its span (strict JSON, duplicate keys rejected)."""
    spans: dict[Path_, Span] = {}

    def skip(position: int) -> int:
        match = _WHITESPACE.match(text, position)
        return match.end() if match else position

    def value(position: int, path: Path_, key_start: int) -> int:
        position = skip(position)
        start = position
        if position >= len(text):
            raise ValueError("unexpected end of JSON")
        char = text[position]
        if char == "{":
            position = skip(position + 1)
            if text[position : position + 1] == "}":
                end = position + 1
            else:
                while True:
                    position = skip(position)
                    member_start = position
                    if text[position : position + 1] != '"':
                        raise ValueError(f"expected a key at offset {position}")
                    key, position = scanstring(text, position + 1)
                    if (*path, key) in spans:
                        raise ValueError(f"duplicate key {key!r}")
                    position = skip(position)
                    if text[position : position + 1] != ":":
                        raise ValueError(f"expected ':' at offset {position}")
                    position = skip(value(position + 1, (*path, key), member_start))
                    if text[position : position + 1] == ",":
                        position += 1
                        continue
                    if text[position : position + 1] == "}":
                        end = position + 1
                        break
                    raise ValueError(f"expected ',' or '}}' at offset {position}")
        elif char == "[":
            position = skip(position + 1)
            index = 0
            if text[position : position + 1] == "]":
                end = position + 1
            else:
                while True:
                    position = skip(value(position, (*path, str(index)), position))
                    index += 1
                    if text[position : position + 1] == ",":
                        position += 1
                        continue
                    if text[position : position + 1] == "]":
                        end = position + 1
                        break
                    raise ValueError(f"expected ',' or ']' at offset {position}")
        elif char == '"':
            _, end = scanstring(text, position + 1)
        else:
            match = _LITERAL.match(text, position)
            if not match:
                raise ValueError(f"unexpected character at offset {position}")
            end = match.end()
        spans[path] = Span(start, end, key_start)
        return end

    end = skip(value(0, (), 0))
    if end != len(text):
        raise ValueError(f"extra data at offset {end}")
    return spans


@dataclass(frozen=True)
class PackageJson:
    """A parsed package.json that remembers where each value sits in its text."""

    text: str
    data: Mapping[str, Any]
    spans: Mapping[Path_, Span]
    source: str = "package.json"

    @classmethod
    def parse(cls, text: str, *, source: str = "package.json") -> PackageJson:
        """Parse strictly; a malformed file is a `ManifestError` naming `source`."""
        try:
            data = json.loads(text)
            spans = _spans(text)
        except ValueError as error:
            raise ManifestError(
                f"{source} is not valid JSON ({error}); fix it and retry"
            ) from error
        if not isinstance(data, dict):
            raise ManifestError(f"{source} must hold a JSON object")
        return cls(text, data, spans, source)

    def dependency_spec(self, name: str) -> tuple[str, str] | None:
        """(field, spec) of the first dependency field that declares `name`."""
        for field_name in DEPENDENCY_FIELDS:
            section = self.data.get(field_name)
            if isinstance(section, dict) and isinstance(section.get(name), str):
                return field_name, section[name]
        return None

    def override_pins(self, names: set[str]) -> dict[str, list[tuple[Path_, str]]]:
        """Every string under `overrides` whose key is one of `names`, by name."""
        found: dict[str, list[tuple[Path_, str]]] = {}
        for path, value in self._walk(self.data.get("overrides"), ("overrides",)):
            key = path[-1]
            if key in names:
                found.setdefault(key, []).append((path, value))
        return found

    def _walk(self, node: object, path: Path_) -> Iterator[tuple[Path_, str]]:
        if isinstance(node, dict):
            for key, item in node.items():
                if isinstance(item, str):
                    yield (*path, key), item
                else:
                    yield from self._walk(item, (*path, key))

    def pins(self, names: set[str]) -> tuple[Pin, ...]:
        """Exact pins under `overrides` for `names`; non-exact or conflicting pins are errors."""
        pins = []
        for name, places in sorted(self.override_pins(names).items()):
            versions = {value for _, value in places}
            if len(versions) > 1:
                raise ManifestError(
                    f"{self.source}: overrides pin {name} to {sorted(versions)}; "
                    "make them agree and retry"
                )
            version = versions.pop()
            match = _SIMPLE_SPEC.match(version)
            if not match or match.group("operator") not in (None, "="):
                raise ManifestError(
                    f"{self.source}: overrides.{name} is {version!r}, not an exact version; "
                    'pin it exactly (e.g. "0.33.5")'
                )
            pins.append(Pin(name, match.group("version")))
        return tuple(pins)


def replace_values(document: PackageJson, changes: Mapping[Path_, str]) -> str:
    """Replace string values at `changes` paths; bytes outside those values are untouched."""
    text = document.text
    for path, new_value in sorted(
        changes.items(), key=lambda item: document.spans[item[0]].start, reverse=True
    ):
        span = document.spans[path]
        if not text[span.start : span.end].startswith('"'):
            raise ManifestError(f"{document.source}: {'.'.join(path)} is not a string")
        text = text[: span.start] + json.dumps(new_value) + text[span.end :]
    return text


def insert_member(document: PackageJson, parent: Path_, key: str, value: str) -> str:
    """Add `"key": "value"` as the last member of the object at `parent`, indented like its
    siblings (or two spaces deeper than the object when it is empty)."""
    span = document.spans.get(parent)
    if span is None or document.text[span.start] != "{":
        raise ManifestError(f"{document.source}: {'.'.join(parent)} is not an object")
    text = document.text
    members = [
        member
        for path, member in document.spans.items()
        if len(path) == len(parent) + 1 and path[: len(parent)] == parent
    ]
    rendered = f"{json.dumps(key)}: {json.dumps(value)}"
    if members:
        last = max(members, key=lambda member: member.start)
        line_start = text.rfind("\n", 0, last.key_start) + 1
        indent = text[line_start : last.key_start]
        separator = f",\n{indent}" if indent.strip() == "" else ", "
        return text[: last.end] + separator + rendered + text[last.end :]
    line_start = text.rfind("\n", 0, span.start) + 1
    outer = re.match(r"[ \t]*", text[line_start:])
    outer_indent = outer.group(0) if outer else ""
    inner = f"\n{outer_indent}  {rendered}\n{outer_indent}"
    return text[: span.start + 1] + inner + text[span.end - 1 :]


def bump_spec(spec: str, new_version: str, *, source: str, name: str) -> str:
    """Raise a simple spec's floor to `new_version`, keeping its operator (`^`, `~`, exact)."""
    match = _SIMPLE_SPEC.match(spec.strip())
    if not match:
        raise ManifestError(
            f"{source}: {name} is declared as {spec!r}; rotation-bot rewrites exact, ^ and ~ "
            "specs only: use one of those"
        )
    operator = match.group("operator") or ""
    return f"{'' if operator == 'v' else operator}{new_version}"
