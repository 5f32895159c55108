"""Dockerfiles: find the base images in `FROM` lines and re-pin their digests without reformatting.

Pure text in, text out.  `dockerfile-parse` splits the file into instructions (line
continuations, comments inside them, the `# escape=` directive, lower-case keywords); this module
then reads each `FROM` (and each global `ARG` a `FROM` uses) character by character to know
exactly where the reference's text sits.  An edit replaces only the `@sha256:…` suffix of that
text (or appends one), so every other byte of the file survives.

Handled: multi-stage builds, `FROM --platform=… image AS name`, references to earlier stages
(never touched), `scratch`, `ARG` defaults used in `FROM ${BASE}` (the ARG's default is
re-pinned), `${VAR:-default}`.  Anything the bot cannot edit safely (a reference split across
lines, a digest coming from a variable, an ARG without a default, an invalid reference) is
reported as `Skipped` with the reason, never guessed at.
"""

from __future__ import annotations

import bisect
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pathspec
from docker_image import digest as docker_digest
from docker_image import reference as docker_reference
from dockerfile_parse import DockerfileParser

from bot.errors import InvalidRemoteData, ManifestError
from bot.models import Skipped, strict_digest

DEFAULT_DOCKERFILES = ("Dockerfile", "*.Dockerfile", "Dockerfile.*")
DOCKER_HUB = "docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
_ESCAPE_DIRECTIVE = re.compile(r"^\s*#\s*escape\s*=\s*([\\`])\s*$", re.IGNORECASE)
_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<modifier>:[-+])(?P<word>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
_WHOLE_VARIABLE = re.compile(
    r"^\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<plain>[A-Za-z_]\w*))$"
)


def select_dockerfiles(paths: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The paths matching `patterns` (gitignore rules: `Dockerfile` matches at any depth)."""
    spec = pathspec.GitIgnoreSpec.from_lines(list(patterns))
    return sorted(path for path in paths if spec.match_file(path))


@dataclass(frozen=True)
class ImageReference:
    """A validated image reference (distribution's grammar, with Docker Hub normalisation)."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def registry(self) -> str:
        """The host serving the distribution API (`docker.io` → `registry-1.docker.io`)."""
        return DOCKER_HUB_REGISTRY if self.domain == DOCKER_HUB else self.domain

    @property
    def name(self) -> str:
        """The short name people write: `node`, `bitnami/redis`, `cgr.dev/chainguard/wolfi-base`."""
        if self.domain == DOCKER_HUB:
            namespace, _, rest = self.path.partition("/")
            return rest if namespace == "library" and "/" not in rest else self.path
        return f"{self.domain}/{self.path}"

    @property
    def lookup_tag(self) -> str:
        """The tag to resolve (`latest` when none is written, as Docker does)."""
        return self.tag or "latest"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"


def parse_reference(text: str) -> ImageReference | str:
    """The reference (validated as Docker does, Docker Hub names normalised), or why `text` is
    not one."""
    try:
        parsed = docker_reference.Reference.parse_normalized_named(text)
    except (docker_reference.InvalidReference, docker_digest.InvalidDigest) as error:
        return f"{text!r} is not a valid image reference ({error})"
    digest = parsed["digest"]
    if digest is not None:
        try:
            strict_digest(digest, source=text)
        except InvalidRemoteData:
            return f"{text!r} is not pinned with a sha256 digest"
    return ImageReference(
        domain=str(parsed.domain()), path=str(parsed.path()), tag=parsed["tag"], digest=digest
    )


@dataclass(frozen=True)
class TextSpan:
    """Where a reference's text sits in the file: character offsets and its 1-based line."""

    start: int
    end: int
    line: int


@dataclass(frozen=True)
class BaseImage:
    """One `FROM` that names an image (not a stage, not `scratch`), and where to edit its digest.

    `span` is the text that holds the reference: the image word of the `FROM` line itself, or
    the default value of the global `ARG` named by `argument` when the line is `FROM ${ARG}`.
    """

    file: str
    line: int
    reference: ImageReference
    span: TextSpan
    stage: str | None = None
    platform: str | None = None
    argument: str | None = None

    @property
    def subject(self) -> str:
        """`file:line` for messages and skipped entries."""
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class _Argument:
    value: str | None
    span: TextSpan | None


class _Logical:
    """One instruction with continuations removed, mapping each character back to the file."""

    def __init__(self, text: str, offsets: list[int]) -> None:
        self.text = text
        self.offsets = offsets

    def words(self) -> list[tuple[int, int]]:
        """Whitespace-separated words (quotes keep spaces inside), as logical index ranges."""
        words: list[tuple[int, int]] = []
        index = 0
        while index < len(self.text):
            if self.text[index].isspace():
                index += 1
                continue
            start, quote = index, ""
            while index < len(self.text) and (quote or not self.text[index].isspace()):
                char = self.text[index]
                if quote and char == quote:
                    quote = ""
                elif not quote and char in "\"'":
                    quote = char
                index += 1
            words.append((start, index))
        return words

    def span(self, start: int, end: int) -> tuple[int, int] | None:
        """File offsets of a logical range, or None when a line continuation splits it."""
        if end <= start:
            return None
        first, last = self.offsets[start], self.offsets[end - 1]
        return (first, last + 1) if last - first == end - 1 - start else None


class Dockerfile:
    """A parsed Dockerfile: its base images and what could not be read safely."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self._line_starts = [0, *(match.end() for match in re.finditer("\n", text))]
        images: list[BaseImage] = []
        skipped: list[Skipped] = []
        self._read(images, skipped)
        self.images = tuple(images)
        self.skipped = tuple(skipped)

    @classmethod
    def parse(cls, text: str, path: str) -> Dockerfile:
        """Parse `text` (the content of `path`)."""
        return cls(text, path)

    # --- reading -----------------------------------------------------------------------

    def _line_of(self, offset: int) -> int:
        return bisect.bisect_right(self._line_starts, offset)

    def _logical(self, start_line: int, end_line: int, escape: str) -> _Logical:
        chars: list[str] = []
        offsets: list[int] = []
        for number in range(start_line, end_line + 1):
            begin = self._line_starts[number]
            finish = (
                self._line_starts[number + 1]
                if number + 1 < len(self._line_starts)
                else len(self.text)
            )
            body = self.text[begin:finish].rstrip("\r\n")
            if number > start_line and (not body.strip() or body.lstrip().startswith("#")):
                continue
            if number < end_line:
                stripped = body.rstrip()
                if stripped.endswith(escape):
                    body = stripped[: -len(escape)]
            chars.extend(body)
            offsets.extend(range(begin, begin + len(body)))
        return _Logical("".join(chars), offsets)

    def _read(self, images: list[BaseImage], skipped: list[Skipped]) -> None:
        parser = DockerfileParser(fileobj=io.BytesIO(self.text.encode("utf-8")))
        escape = "\\"
        for raw in self.text.split("\n"):
            match = _ESCAPE_DIRECTIVE.match(raw)
            if match:
                escape = match.group(1)
                break
            if not raw.lstrip().startswith("#"):
                break
        arguments: dict[str, _Argument] = {}
        stages: set[str] = set()
        seen_from = False
        for instruction in parser.structure:
            kind = instruction["instruction"]
            if kind not in ("FROM", "ARG"):
                continue
            logical = self._logical(instruction["startline"], instruction["endline"], escape)
            line = int(instruction["startline"]) + 1
            if kind == "ARG":
                if not seen_from:
                    self._read_arguments(logical, arguments)
                continue
            seen_from = True
            result = self._read_from(logical, line, arguments, stages)
            if isinstance(result, Skipped):
                skipped.append(result)
            elif result is not None:
                images.append(result)

    def _read_arguments(self, logical: _Logical, arguments: dict[str, _Argument]) -> None:
        for start, end in logical.words()[1:]:
            word = logical.text[start:end]
            name, equals, value = word.partition("=")
            if not equals:
                arguments.setdefault(name, _Argument(None, None))
                continue
            value_start = start + len(name) + 1
            value_end = end
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value, value_start, value_end = value[1:-1], value_start + 1, value_end - 1
            if any(char in value for char in "\"'\\`"):
                arguments[name] = _Argument(None, None)
                continue
            offsets = logical.span(value_start, value_end)
            span = None
            if offsets is not None:
                span = TextSpan(offsets[0], offsets[1], self._line_of(offsets[0]))
            elif value_start == value_end:
                offset = logical.offsets[value_start - 1] + 1
                span = TextSpan(offset, offset, self._line_of(offset))
            arguments[name] = _Argument(_substitute(value, arguments), span)

    def _read_from(
        self, logical: _Logical, line: int, arguments: Mapping[str, _Argument], stages: set[str]
    ) -> BaseImage | Skipped | None:
        subject = f"{self.path}:{line}"
        words = logical.words()[1:]
        platform: str | None = None
        while words and logical.text[words[0][0] : words[0][1]].startswith("--"):
            flag = logical.text[words[0][0] : words[0][1]]
            name, _, value = flag.partition("=")
            if name.lower() == "--platform" and "$" not in value:
                platform = value
            words = words[1:]
        if not words:
            return Skipped(subject, "FROM names no image")
        stage = None
        if len(words) == 3 and logical.text[words[1][0] : words[1][1]].lower() == "as":
            stage = logical.text[words[2][0] : words[2][1]]
        elif len(words) != 1:
            return Skipped(subject, "FROM has unexpected words after the image; expected `AS name`")
        start, end = words[0]
        written = logical.text[start:end]
        resolved = _substitute(written, arguments)
        if stage is not None:
            stages.add(stage.lower())
        if resolved is None:
            return Skipped(
                subject,
                f"{written} uses a build argument without a default value; the bot cannot "
                "resolve it (give the ARG a default before the first FROM)",
            )
        if resolved.lower() in stages - {(stage or "").lower()} or resolved == "scratch":
            return None
        reference = parse_reference(resolved)
        if isinstance(reference, str):
            return Skipped(subject, reference)
        span, argument = self._edit_span(logical, start, end, written, arguments)
        if isinstance(span, str):
            return Skipped(subject, span)
        held = self.text[span.start : span.end]
        if reference.digest is not None and not held.endswith(f"@{reference.digest}"):
            return Skipped(
                subject, f"the digest of {written} comes from a variable; pin it literally"
            )
        if reference.digest is None and held.endswith(("}", "@")):
            return Skipped(subject, f"{written} ends in a variable; the bot cannot append a digest")
        return BaseImage(
            file=self.path,
            line=line,
            reference=reference,
            span=span,
            stage=stage,
            platform=platform,
            argument=argument,
        )

    def _edit_span(
        self,
        logical: _Logical,
        start: int,
        end: int,
        written: str,
        arguments: Mapping[str, _Argument],
    ) -> tuple[TextSpan | str, str | None]:
        """The span to edit (or why there is none) and the ARG it belongs to."""
        whole = _WHOLE_VARIABLE.match(written)
        if whole:
            name = whole.group("braced") or whole.group("plain")
            argument = arguments.get(name)
            if argument is None or argument.span is None:
                return f"the default of ARG {name} cannot be edited safely; write it unquoted", name
            return argument.span, name
        offsets = logical.span(start, end)
        if offsets is None:
            return f"{written} is split across lines; join it onto one line", None
        return TextSpan(offsets[0], offsets[1], self._line_of(offsets[0])), None

    # --- editing -----------------------------------------------------------------------

    def repin(self, new_digests: Iterable[tuple[BaseImage, str]]) -> str:
        """The text with each image's digest set to its new one (added when it had none).

        Images that share a span (several `FROM ${BASE}`) are edited once; asking for two
        different digests in one span is a `ManifestError`.
        """
        wanted: dict[TextSpan, tuple[BaseImage, str]] = {}
        for image, digest in new_digests:
            strict_digest(digest, source=f"new digest for {image.reference}")
            previous = wanted.get(image.span)
            if previous is not None and previous[1] != digest:
                raise ManifestError(
                    f"{image.subject}: {image.reference.name} would get two digests "
                    f"({previous[1]} and {digest}); pin the stages separately"
                )
            wanted[image.span] = (image, digest)
        text = self.text
        for span in sorted(wanted, key=lambda item: item.start, reverse=True):
            image, digest = wanted[span]
            held = text[span.start : span.end]
            if image.reference.digest is not None:
                held = held[: -len(image.reference.digest)]
            else:
                held += "@"
            text = text[: span.start] + held + digest + text[span.end :]
        return text


def _substitute(word: str, arguments: Mapping[str, _Argument]) -> str | None:
    """`word` with `$NAME`, `${NAME}`, `${NAME:-x}`, `${NAME:+x}` replaced; None if undefined."""
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group("braced") or match.group("plain")
        argument = arguments.get(name)
        value = argument.value if argument is not None else None
        modifier = match.group("modifier")
        if modifier == ":-":
            return value or match.group("word")
        if modifier == ":+":
            return match.group("word") if value else ""
        if value is None:
            missing = True
            return ""
        return value

    result = _VARIABLE.sub(replace, word)
    return None if missing else result
