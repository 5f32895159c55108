"""package.json: read the sharp dependency and `overrides` pins; edit them without reformatting.

Pure text in, text out.  Edits replace only the bytes of the string values they change (or
insert one member with the indentation of its neighbours), so indentation, key order, line
endings and the trailing newline all survive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any, Protocol

from bot.errors import ManifestError
from bot.manifests import tree
from bot.manifests.tree import Path_
from bot.models import ManifestEdit

DEPENDENCY_FIELDS = ("dependencies", "devDependencies", "optionalDependencies")
_SIMPLE_SPEC = re.compile(r"^(?P<operator>\^|~|>=|=|v)?(?P<version>\d+\.\d+\.\d+)$")
_LITERAL = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")
_WHITESPACE = re.compile(r"[ \t\n\r]*")


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


class Manifest(Protocol):
    """What planning reads from a manifest: package.json, or the YAML file holding a project's
    overrides (pnpm-workspace.yaml)."""

    @property
    def data(self) -> Mapping[str, Any]:
        """The parsed document."""

    def get(self, location: Path_) -> object:
        """The value at a key path, or None."""

    def strings_under(self, location: Path_) -> Iterator[tuple[Path_, str]]:
        """Every string value in the object tree at `location`, with its path."""


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

    def get(self, location: Path_) -> object:
        """The value at a JSON path, or None."""
        return tree.value_at(self.data, location)

    def strings_under(self, location: Path_) -> Iterator[tuple[Path_, str]]:
        """Every string value in the object tree at `location`, with its path."""
        return tree.strings_under(self.get(location), location)


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


def _indent_unit(text: str) -> str:
    """The file's indentation step: a tab, or the smallest run of leading spaces."""
    widths = [
        len(line) - len(line.lstrip(" "))
        for line in text.splitlines()
        if line.startswith(" ") and line.strip()
    ]
    if any(line.startswith("\t") for line in text.splitlines()):
        return "\t"
    return " " * (min(widths) if widths else 2)


def _render(value: str | Mapping[str, str], indent: str, unit: str) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    members = [
        f"{indent}{unit}{json.dumps(key)}: {json.dumps(item)}" for key, item in value.items()
    ]
    return "{\n" + ",\n".join(members) + f"\n{indent}}}"


def insert_member(
    document: PackageJson, parent: Path_, key: str, value: str | Mapping[str, str]
) -> str:
    """Add `"key": value` (a string, or an object of strings) as the last member of the object
    at `parent`, indented like its siblings (or one step deeper than the object when it is
    empty), in the file's own indentation (tabs stay tabs)."""
    span = document.spans.get(parent)
    if span is None or document.text[span.start] != "{":
        raise ManifestError(f"{document.source}: {'.'.join(parent)} is not an object")
    text = document.text
    members = [
        member
        for path, member in document.spans.items()
        if len(path) == len(parent) + 1 and path[: len(parent)] == parent
    ]
    unit = _indent_unit(text)
    if members:
        last = max(members, key=lambda member: member.start)
        line_start = text.rfind("\n", 0, last.key_start) + 1
        indent = text[line_start : last.key_start]
        inline = indent.strip() != ""
        rendered = f"{json.dumps(key)}: {_render(value, '' if inline else indent, unit)}"
        separator = ", " if inline else f",\n{indent}"
        return text[: last.end] + separator + rendered + text[last.end :]
    line_start = text.rfind("\n", 0, span.start) + 1
    outer = re.match(r"[ \t]*", text[line_start:])
    outer_indent = outer.group(0) if outer else ""
    rendered = f"{json.dumps(key)}: {_render(value, outer_indent + unit, unit)}"
    inner = f"\n{outer_indent}{unit}{rendered}\n{outer_indent}"
    return text[: span.start + 1] + inner + text[span.end - 1 :]


def rename_key(document: PackageJson, location: Path_, new_key: str) -> str:
    """Rename the member at `location` to `new_key`; only the key's bytes change."""
    span = document.spans.get(location)
    if span is None:
        raise ManifestError(f"{document.source}: {'.'.join(location)} does not exist")
    _, key_end = scanstring(document.text, span.key_start + 1)
    return document.text[: span.key_start] + json.dumps(new_key) + document.text[key_end:]


def apply_edits(text: str, edits: Sequence[ManifestEdit], *, source: str) -> str:
    """Apply one manifest's edits and check the result holds every one of them.

    Values first (in place, by span), then key renames, then inserts, re-reading the text
    between kinds; raises `ManifestError` when an edit's old value is not where the plan saw
    it or the result does not hold the new value."""
    document = PackageJson.parse(text, source=source)
    values = {}
    for edit in edits:
        if edit.kind == "value":
            if document.get(edit.location) != edit.previous:
                raise ManifestError(
                    f"{source}: {'.'.join(edit.location)} is no longer {edit.previous!r}"
                )
            values[edit.location] = edit.new
    text = replace_values(document, values)
    for edit in (edit for edit in edits if edit.kind == "key"):
        text = rename_key(PackageJson.parse(text, source=source), edit.location, edit.new)
    for edit in (edit for edit in edits if edit.kind == "insert"):
        document = PackageJson.parse(text, source=source)
        parent, key = edit.location[:-1], edit.location[-1]
        value: str | Mapping[str, str] = edit.new
        if edit.new.startswith("{"):
            value = json.loads(edit.new)
        if document.get(parent) is None and len(parent) > 0:
            value = {key: edit.new}
            parent, key = parent[:-1], parent[-1]
        text = insert_member(document, parent, key, value)
    result = PackageJson.parse(text, source=source)
    for edit in edits:
        location = edit.location
        if edit.kind == "key":
            location = (*edit.location[:-1], edit.new)
            ok = location in result.spans
        elif edit.kind == "insert" and edit.new.startswith("{"):
            ok = result.get(location) == json.loads(edit.new)
        else:
            ok = result.get(location) == edit.new
        if not ok:
            raise ManifestError(f"{source} does not hold {'.'.join(location)} after editing")
    return text


def simple_spec(spec: str) -> tuple[str, str] | None:
    """(operator, version) of an exact, `^`, `~` or `>=` spec (`=` and `v` count as exact)."""
    match = _SIMPLE_SPEC.match(spec.strip())
    if not match:
        return None
    operator = match.group("operator") or ""
    return ("" if operator in ("=", "v") else operator), match.group("version")


def respec(spec: str, new_version: str) -> str | None:
    """`spec` with its version replaced by `new_version`, keeping its operator (`^0.33.4` →
    `^0.33.6`, `0.33.4` → `0.33.6`, a `>=0.33.4` floor → `>=0.33.6`); None for anything but
    an exact, `^`, `~` or `>=` spec."""
    parsed = simple_spec(spec)
    return None if parsed is None else parsed[0] + new_version
