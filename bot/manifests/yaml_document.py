"""YAML a repository commits (pnpm-workspace.yaml, .yarnrc.yml, pnpm-lock.yaml, Yarn Berry's
yarn.lock): loaded safely, and edited without reformatting.

Pure text in, text out.  Loading refuses aliases and documents nested deeper than
`bot.limits.MAX_NESTING` before building anything (a lockfile has neither).  `YamlDocument`
remembers where each scalar sits in the text, so an edit replaces only the bytes of the value
(or key) it changes, in the quoting style it had, and an insert adds one line indented like its
neighbours: comments, key order, quoting and indentation all survive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from bot.errors import ManifestError
from bot.limits import MAX_NESTING, too_deep
from bot.manifests import tree
from bot.manifests.tree import Path_
from bot.models import ManifestEdit

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# a plain scalar that YAML reads back as the same string: versions, ranges, names
_PLAIN = re.compile(r"^[A-Za-z0-9^~<>=.*_/@+-][A-Za-z0-9^~<>=.*_/@+ |-]*$")


def _check_events(text: str, source: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise ManifestError(
                f"{source} uses a YAML alias (*{event.anchor}); rotation-bot refuses aliases "
                "(no lockfile or workspace file needs them): write the value out"
            )
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                raise ManifestError(too_deep(source))
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1


def load_yaml(text: str, *, source: str) -> Any:
    """Parse YAML safely; malformed, aliased or too deep is a one-line `ManifestError`."""
    try:
        _check_events(text, source)
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or "malformed"
        raise ManifestError(
            f"{source} is not valid YAML ({problem}{line}); fix it and retry"
        ) from error


@dataclass(frozen=True)
class Scalar:
    """Where one scalar (a value, or a mapping key) sits in the text, and how it is quoted."""

    start: int
    end: int
    style: str | None


@dataclass(frozen=True)
class Block:
    """A mapping: where it starts and ends, whether it is a flow mapping (`{a: b}`), and the
    column of its keys."""

    start: int
    end: int
    flow: bool
    column: int


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML mapping that remembers where each scalar and mapping sits in its text."""

    text: str
    data: Mapping[str, Any]
    values: Mapping[Path_, Scalar]
    keys: Mapping[Path_, Scalar]
    blocks: Mapping[Path_, Block]
    # where each value (scalar, list or mapping) ends in the text
    ends: Mapping[Path_, int]
    source: str

    @classmethod
    def parse(cls, text: str, *, source: str) -> YamlDocument:
        """Parse a YAML mapping (an empty file is an empty mapping)."""
        data = load_yaml(text, source=source)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ManifestError(f"{source} must hold a YAML mapping")
        values: dict[Path_, Scalar] = {}
        keys: dict[Path_, Scalar] = {}
        blocks: dict[Path_, Block] = {}
        ends: dict[Path_, int] = {}
        # the pure-Python composer: its marks count characters of `text`
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _index(node, (), values, keys, blocks, ends)
        return cls(text, data, values, keys, blocks, ends, source)

    def get(self, location: Path_) -> object:
        """The value at a key path, or None."""
        return tree.value_at(self.data, location)

    def strings_under(self, location: Path_) -> Iterator[tuple[Path_, str]]:
        """Every string value in the mapping tree at `location`, with its path."""
        return tree.strings_under(self.get(location), location)


def _index(
    node: yaml.Node,
    path: Path_,
    values: dict[Path_, Scalar],
    keys: dict[Path_, Scalar],
    blocks: dict[Path_, Block],
    ends: dict[Path_, int],
) -> None:
    ends[path] = node.end_mark.index
    if isinstance(node, yaml.MappingNode):
        column = node.value[0][0].start_mark.column if node.value else node.start_mark.column
        blocks[path] = Block(
            node.start_mark.index, node.end_mark.index, bool(node.flow_style), column
        )
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            child = (*path, str(key_node.value))
            keys[child] = Scalar(key_node.start_mark.index, key_node.end_mark.index, key_node.style)
            _index(value_node, child, values, keys, blocks, ends)
    elif isinstance(node, yaml.ScalarNode):
        values[path] = Scalar(node.start_mark.index, node.end_mark.index, node.style)


def render_scalar(value: str, style: str | None) -> str:
    """`value` as a YAML scalar in `style` (plain when it reads back as the same string,
    else single-quoted)."""
    if style == '"':
        return json.dumps(value)
    if style is None and _PLAIN.match(value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return "'" + value.replace("'", "''") + "'"


def _line_end(text: str, position: int) -> int:
    """Where a line can be inserted after the content that ends at `position`: the start of
    `position`'s line when only indentation precedes it there (a node's end mark sits at the
    next token), else just past the end of that line."""
    line_start = text.rfind("\n", 0, position) + 1
    if not text[line_start:position].strip():
        return line_start
    newline = text.find("\n", position)
    return len(text) if newline < 0 else newline + 1


def _insert(document: YamlDocument, parent: Path_, key: str, value: str | Mapping[str, str]) -> str:
    """Add `key: value` as the last member of the block mapping at `parent` (created at the end
    of its own parent when missing), indented like its siblings."""
    text = document.text
    block = document.blocks.get(parent)
    if block is None:
        if len(parent) != 1 or () not in document.blocks:
            raise ManifestError(f"{document.source}: {'.'.join(parent)} is not a mapping")
        body = {key: value} if isinstance(value, str) else {key: dict(value)}
        prefix = "" if not text or text.endswith("\n") else "\n"
        return text + prefix + _render_block(parent[-1], body, 0, _unit(document)) + "\n"
    if block.flow:
        raise ManifestError(
            f"{document.source}: {'.'.join(parent) or 'the document'} is a flow mapping "
            "({…}); rotation-bot only adds lines to block mappings"
        )
    members = [
        path
        for path in document.keys
        if len(path) == len(parent) + 1 and path[: len(parent)] == parent
    ]
    last_end = max((document.ends[member] for member in members), default=block.end)
    position = _line_end(text, last_end)
    rendered = _render_block(key, value, block.column, _unit(document))
    prefix = "" if position == 0 or text[position - 1] == "\n" else "\n"
    return text[:position] + prefix + rendered + "\n" + text[position:]


def _unit(document: YamlDocument) -> int:
    columns = sorted({block.column for block in document.blocks.values() if block.column > 0})
    return columns[0] if columns else 2


def _render_block(key: str, value: str | Mapping[str, Any], column: int, unit: int) -> str:
    indent = " " * column
    if isinstance(value, str):
        return f"{indent}{render_scalar(key, None)}: {render_scalar(value, None)}"
    lines = [f"{indent}{render_scalar(key, None)}:"]
    lines += [_render_block(k, v, column + unit, unit) for k, v in value.items()]
    return "\n".join(lines)


def apply_yaml_edits(text: str, edits: Sequence[ManifestEdit], *, source: str) -> str:
    """Apply one YAML file's edits and check the result holds every one of them (values and key
    renames in place, by span, then inserts); `ManifestError` when an old value is not where
    the plan saw it or the result does not hold the new value."""
    document = YamlDocument.parse(text, source=source)
    replacements: list[tuple[Scalar, str]] = []
    for edit in edits:
        if edit.kind == "value":
            scalar = document.values.get(edit.location)
            if scalar is None or document.get(edit.location) != edit.previous:
                raise ManifestError(
                    f"{source}: {'.'.join(edit.location)} is no longer {edit.previous!r}"
                )
            replacements.append((scalar, render_scalar(edit.new, scalar.style)))
        elif edit.kind == "key":
            scalar = document.keys[edit.location]
            replacements.append((scalar, render_scalar(edit.new, scalar.style)))
    for scalar, rendered in sorted(replacements, key=lambda item: item[0].start, reverse=True):
        text = text[: scalar.start] + rendered + text[scalar.end :]
    for edit in (edit for edit in edits if edit.kind == "insert"):
        document = YamlDocument.parse(text, source=source)
        parent, key = edit.location[:-1], edit.location[-1]
        value: str | Mapping[str, str] = (
            json.loads(edit.new) if edit.new.startswith("{") else edit.new
        )
        text = _insert(document, parent, key, value)
    result = YamlDocument.parse(text, source=source)
    for edit in edits:
        if edit.kind == "key":
            ok = (*edit.location[:-1], edit.new) in result.keys
        elif edit.kind == "insert" and edit.new.startswith("{"):
            ok = result.get(edit.location) == json.loads(edit.new)
        else:
            ok = result.get(edit.location) == edit.new
        if not ok:
            raise ManifestError(f"{source} does not hold {'.'.join(edit.location)} after editing")
    return text
