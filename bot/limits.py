"""Resource limits for everything the bot parses from outside: size caps per kind of file and a
nesting limit, checked before a parser sees the bytes.

A target repository or a registry may send a file of any size or shape.  `check_file` refuses a
file over its kind's cap, or one that is not UTF-8 text, and `check_json_nesting` refuses JSON
nested deeper than `MAX_NESTING` levels (Python's `json` and the span-keeping package.json parser
recurse once per level, so 20,000 `[` would end in a `RecursionError`).  Each refusal is one line
naming the file, the cap and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

import yaml

from bot.errors import BotError, ConfigError, ManifestError

MAX_NESTING = 64
KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class FileKind:
    """A kind of file read from a repository: its size cap and the error a bad one raises."""

    name: str
    limit: int
    error: type[BotError] = ManifestError
    json: bool = False


PACKAGE_JSON = FileKind("package.json", 512 * KIB, json=True)
JSON_LOCKFILE = FileKind("lockfiles", 64 * MIB, json=True)
LOCKFILE = FileKind("lockfiles", 64 * MIB)
REPO_CONFIG = FileKind("the rotation-bot config", 256 * KIB, error=ConfigError)
NPMRC = FileKind(".npmrc", 64 * KIB, error=ConfigError)
DOCKERFILE = FileKind("Dockerfiles", 1 * MIB)
OTHER = FileKind("repository files", 4 * MIB)
_BY_NAME = {
    "package.json": PACKAGE_JSON,
    "package-lock.json": JSON_LOCKFILE,
    "npm-shrinkwrap.json": JSON_LOCKFILE,
    "pnpm-lock.yaml": LOCKFILE,
    "yarn.lock": LOCKFILE,
    "rotation-bot.yml": REPO_CONFIG,
    ".npmrc": NPMRC,
}


def kind_of(path: str) -> FileKind:
    """The kind of a repository-relative path, by its name (`OTHER` for anything else)."""
    name = PurePosixPath(path).name
    if name in _BY_NAME:
        return _BY_NAME[name]
    if "dockerfile" in name.lower():
        return DOCKERFILE
    return OTHER


def describe_size(size: int) -> str:
    """A cap for people: `64 MiB`, `256 KiB`, `1.5 MiB` or `12 bytes`."""
    for unit, name in ((MIB, "MiB"), (KIB, "KiB")):
        if size >= unit:
            return f"{size / unit:.1f}".removesuffix(".0") + f" {name}"
    return f"{size} bytes"


def check_size(path: str, size: int, kind: FileKind | None = None) -> FileKind:
    """Refuse `path` when `size` is over its kind's cap (before reading it); returns the kind."""
    kind = kind or kind_of(path)
    if size > kind.limit:
        raise kind.error(
            f"{path} is {size:,} bytes, over rotation-bot's {describe_size(kind.limit)} "
            f"cap for {kind.name}; shrink it, or leave this repository out of what the bot serves"
        )
    return kind


def decode_file(path: str, data: bytes, kind: FileKind | None = None) -> str:
    """`data` (the whole file) as text, after the size cap, UTF-8 and nesting checks."""
    kind = check_size(path, len(data), kind)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise kind.error(
            f"{path} is not UTF-8 text (invalid byte at offset {error.start}); save it as UTF-8"
        ) from None
    if kind.json:
        check_json_nesting(text, path, kind.error)
    return text


_JSON_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_JSON_STRUCTURE_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPENING = frozenset("[{") | frozenset(b"[{")
_CLOSING = frozenset("]}") | frozenset(b"]}")


def json_nesting_exceeds(data: str | bytes, limit: int = MAX_NESTING) -> bool:
    """Whether JSON text nests arrays and objects deeper than `limit` (strings are skipped, so
    brackets inside them do not count; the text need not be valid JSON)."""
    pattern = _JSON_STRUCTURE_BYTES if isinstance(data, bytes) else _JSON_STRUCTURE
    depth = 0
    for match in pattern.finditer(data):  # type: ignore[arg-type]
        token = match.group()[0]
        if token in _OPENING:
            depth += 1
            if depth > limit:
                return True
        elif token in _CLOSING:
            depth -= 1
    return False


def check_json_nesting(
    data: str | bytes, source: str, error: type[BotError] = ManifestError
) -> None:
    """Refuse JSON from `source` nested deeper than `MAX_NESTING` levels."""
    if json_nesting_exceeds(data):
        raise error(too_deep(source))


def too_deep(source: str) -> str:
    """The one-line refusal of a document nested deeper than `MAX_NESTING` levels."""
    return (
        f"{source} nests deeper than {MAX_NESTING} levels of arrays and objects; "
        "rotation-bot refuses it (no real manifest or config is that deep)"
    )


def yaml_nesting_exceeds(text: str, limit: int = MAX_NESTING) -> bool:
    """Whether YAML text nests collections deeper than `limit`, judged from the parser's event
    stream (iterative, unlike PyYAML's recursive composer); `yaml.YAMLError` when malformed."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > limit:
                return True
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
    return False
