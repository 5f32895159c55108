"""Dockerfiles: find the base image of every `FROM` and re-pin its digest without reformatting.

Pure text in, text out.  The file is read with Docker's (BuildKit's) own rules, so the bot sees
the instructions `docker build` sees: a UTF-8 byte-order mark is dropped; parser directives
(`# syntax=`, `# escape=`, `# check=`) count only at the top, before any other comment, empty
line or instruction; a line ending in the escape character continues on the next one (also
right after the keyword, `FROM\\`), skipping comment and empty lines in between; heredoc bodies
(`RUN <<EOF`) are not instructions.  Every character of an instruction keeps its offset in the
file, so an edit touches exactly the digest's bytes.

A `FROM` word is expanded the way BuildKit expands it: quotes, escapes, `$NAME`, `${NAME}`,
`${NAME:-default}`, `${NAME-default}`, `${NAME:+alt}`, `${NAME+alt}`, with the `ARG`s declared
before the first `FROM` (an `ARG` inside a stage is invisible to `FROM`).  Each character of
the result remembers where it is written (the `FROM` line, an `${…:-default}` word, or the
default of an `ARG`), so the digest is edited where it is written: in `FROM node:${VARIANT}`
with `ARG VARIANT=20@sha256:…` the ARG's default changes, and only its digest bytes.

Every `FROM` ends up as exactly one of: a base image (`images`, pinned or not), an earlier
stage or `scratch` (`not_images`: nothing to pin), or `Skipped` with the reason the bot leaves
it alone (a value only known at build time, a digest it cannot edit safely, an invalid
reference, a file Docker itself refuses).  Never guessed at, never dropped.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pathspec
from docker_image import digest as docker_digest
from docker_image import reference as docker_reference

from bot.errors import InvalidRemoteData, ManifestError
from bot.models import Skipped, strict_digest

DEFAULT_DOCKERFILES = ("Dockerfile", "*.Dockerfile", "Dockerfile.*")
DOCKER_HUB = "docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
BYTE_ORDER_MARK = "\ufeff"
# Build arguments BuildKit defines for every build, per platform (dockerfile2llb defaultArgs).
PLATFORM_ARGUMENTS = frozenset(
    {
        "BUILDPLATFORM",
        "BUILDOS",
        "BUILDOSVERSION",
        "BUILDARCH",
        "BUILDVARIANT",
        "TARGETPLATFORM",
        "TARGETOS",
        "TARGETOSVERSION",
        "TARGETARCH",
        "TARGETVARIANT",
        "TARGETSTAGE",
    }
)
_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
_HEREDOC_KEYWORDS = frozenset({"run", "copy", "add"})
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_SPECIAL_PARAMETERS = frozenset("@*#?-$!0")
# Go's regexp `[\t\v\f\r ]+`, which splits instruction words and FROM arguments
_INSTRUCTION_SPACE = frozenset("\t\v\f\r ")


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
    """Where a digest is written (or would be inserted, when `start == end`): character offsets
    in the file and the 1-based line."""

    start: int
    end: int
    line: int


@dataclass(frozen=True)
class BaseImage:
    """One `FROM` that names an image (not a stage, not `scratch`), and where its digest goes.

    `span` holds the digest's text (`sha256:…`) when the image is pinned, or is the empty point
    where `@sha256:…` would be inserted when it is not.  It lies in the `FROM` line itself or in
    the default of the `ARG` named by `argument` (`FROM ${BASE}`, `FROM node:${VARIANT}`).
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


# --- reading the file as BuildKit does ---------------------------------------------------


class _Text:
    """Characters of an instruction (continuations and comment lines removed), each mapped to
    its offset in the file."""

    def __init__(self, chars: str = "", offsets: Sequence[int] = ()) -> None:
        self.chars = chars
        self.offsets = list(offsets)

    def append(self, chars: str, start: int) -> None:
        self.chars += chars
        self.offsets.extend(range(start, start + len(chars)))

    def slice(self, start: int, end: int) -> _Text:
        return _Text(self.chars[start:end], self.offsets[start:end])

    def split(self, maxsplit: int = -1) -> list[_Text]:
        """Words separated by Go's `[\\t\\v\\f\\r ]+` (surrounding space trimmed first)."""
        start, end = 0, len(self.chars)
        while start < end and self.chars[start].isspace():
            start += 1
        while end > start and self.chars[end - 1].isspace():
            end -= 1
        words: list[_Text] = []
        index = start
        while index < end:
            if maxsplit >= 0 and len(words) == maxsplit:
                words.append(self.slice(index, end))
                break
            word_end = index
            while word_end < end and self.chars[word_end] not in _INSTRUCTION_SPACE:
                word_end += 1
            words.append(self.slice(index, word_end))
            index = word_end
            while index < end and self.chars[index] in _INSTRUCTION_SPACE:
                index += 1
        return words

    def shell_words(self, escape: str) -> list[_Text]:
        """Words as BuildKit's `parseWords` splits ARG arguments: quotes kept, spaces inside
        quotes and escaped characters do not split."""
        words: list[_Text] = []
        index, length = 0, len(self.chars)
        while index < length:
            if self.chars[index].isspace():
                index += 1
                continue
            start, quote = index, ""
            while index < length:
                char = self.chars[index]
                if not quote and char.isspace():
                    break
                if quote and char == quote:
                    quote = ""
                elif not quote and char in "\"'":
                    quote = char
                elif char == escape and quote != "'" and index + 1 < length:
                    index += 1
                index += 1
            words.append(self.slice(start, index))
        return words


@dataclass(frozen=True)
class _Instruction:
    keyword: str  # lower-case
    line: int  # 1-based line of its first character
    arguments: _Text  # everything after the keyword


@dataclass
class _Lexed:
    instructions: list[_Instruction] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # why Docker refuses the file
    escape: str = "\\"


def _continuation(body: str, escape: str) -> int | None:
    """Where a line continuation starts in `body` (BuildKit's rule: the escape character, then
    only spaces or tabs, not itself escaped), or None."""
    stripped = body.rstrip(" \t")
    if not stripped.endswith(escape):
        return None
    cut = len(stripped) - 1
    if cut > 0 and stripped[cut - 1] == escape:
        return None
    return cut


def _heredocs(arguments: _Text, keyword: str, escape: str) -> list[tuple[str, bool]]:
    """The heredocs (`<<EOF`, `<<-"EOF"`) an instruction opens: (terminator, strip tabs)."""
    text = arguments.chars
    if keyword == "onbuild":
        parts = arguments.split(1)
        if not parts:
            return []
        keyword = parts[0].chars.lower()
        text = parts[1].chars if len(parts) > 1 else ""
    if keyword not in _HEREDOC_KEYWORDS or "<<" not in text:
        return []
    try:
        parsed = json.loads(text.strip())
    except ValueError:
        parsed = None
    if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
        return []  # the JSON form has no heredocs
    words = re.sub(r"<<(-?)\s+", r"<<\1", text)
    found: list[tuple[str, bool]] = []
    for word in _Text(words, range(len(words))).shell_words(escape):
        match = _HEREDOC.match(word.chars)
        if not match or not match.group(3):
            continue
        name = match.group(3)
        for quote in "\"'":
            name = name.replace(quote, "")
        if name and not any(char.isspace() for char in name):
            found.append((name, match.group(2) == "-"))
    return found


def _lex(text: str) -> _Lexed:
    """The instructions of a Dockerfile as BuildKit's parser reads them."""
    lexed = _Lexed()
    starts = [0, *(match.end() for match in re.finditer("\n", text))]
    if starts[-1] == len(text) and len(starts) > 1:
        starts.pop()
    lines = [
        (start, text[start : starts[number + 1] if number + 1 < len(starts) else len(text)])
        for number, start in enumerate(starts)
    ]
    if lines and lines[0][1].startswith(BYTE_ORDER_MARK):
        lines[0] = (lines[0][0] + 1, lines[0][1][1:])
    directives_done, seen_directives = False, set[str]()
    number = 0
    while number < len(lines):
        start, raw = lines[number]
        body = raw.rstrip("\r\n")
        indent = len(body) - len(body.lstrip())
        body = body[indent:]
        line = number + 1
        number += 1
        if not directives_done:
            directives_done = _directive(body, line, lexed, seen_directives)
        if not body or body.startswith("#"):
            continue
        logical = _Text()
        cut = _continuation(body, lexed.escape)
        logical.append(body if cut is None else body[:cut], start + indent)
        while cut is not None and number < len(lines):
            next_start, next_raw = lines[number]
            number += 1
            next_body = next_raw.rstrip("\r\n")
            if not next_body.strip() or next_body.lstrip().startswith("#"):
                continue
            cut = _continuation(next_body, lexed.escape)
            logical.append(next_body if cut is None else next_body[:cut], next_start)
        words = logical.split(1)
        if not words:
            continue  # only continuation characters
        keyword = words[0].chars.lower()
        arguments = words[1] if len(words) > 1 else _Text()
        lexed.instructions.append(_Instruction(keyword, line, arguments))
        for terminator, strip_tabs in _heredocs(arguments, keyword, lexed.escape):
            while True:
                if number >= len(lines):
                    lexed.problems.append((line, f"the heredoc <<{terminator} never ends"))
                    return lexed
                candidate = lines[number][1].rstrip("\r\n")
                number += 1
                if (candidate.lstrip("\t") if strip_tabs else candidate) == terminator:
                    break
    return lexed


def _directive(body: str, line: int, lexed: _Lexed, seen: set[str]) -> bool:
    """Read a parser directive; True once directives are over (Docker's rule: at the first line
    that is not one)."""
    if not body.startswith("#"):
        return True
    match = _DIRECTIVE.match(body[1:].lstrip())
    if not match or match.group(1).lower() not in _DIRECTIVES:
        return True
    name, value = match.group(1).lower(), match.group(2)
    if name in seen:
        lexed.problems.append((line, f"only one {name} parser directive can be used"))
    seen.add(name)
    if name == "escape":
        if value in ("\\", "`"):
            lexed.escape = value
        else:
            lexed.problems.append((line, f"invalid escape token {value!r} does not match ` or \\"))
    return False


# --- expanding words as BuildKit's shell lexer does ----------------------------------------


@dataclass(frozen=True)
class _Char:
    """One character of an expanded word: where it is written, in whose text, and which build
    arguments decide whether it is there."""

    char: str
    offset: int
    holder: str | None  # the ARG whose default holds it; None: the FROM line
    depends: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Variable:
    """A build argument as FROM lines see it."""

    name: str
    line: int
    value: tuple[_Char, ...] | None  # None: declared without a default
    problem: str | None = None  # why its default cannot be expanded


class _Unresolvable(Exception):
    """A word whose value depends on something only known at build time (or is malformed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Expander:
    """Expands one word (`$NAME`, `${NAME:-x}`, quotes, escapes) with the global build args."""

    def __init__(
        self,
        word: _Text,
        holder: str | None,
        variables: Mapping[str, _Variable],
        stage_arguments: Mapping[str, int],
        escape: str,
    ) -> None:
        self.word = word
        self.holder = holder
        self.variables = variables
        self.stage_arguments = stage_arguments
        self.escape = escape
        self.position = 0

    def expand(self) -> tuple[_Char, ...]:
        return tuple(self._until(None))

    def _peek(self) -> str | None:
        chars = self.word.chars
        return chars[self.position] if self.position < len(chars) else None

    def _take(self) -> _Char:
        char = _Char(self.word.chars[self.position], self.word.offsets[self.position], self.holder)
        self.position += 1
        return char

    def _until(self, stop: str | None) -> list[_Char]:
        result: list[_Char] = []
        while (char := self._peek()) is not None:
            if stop is not None and char == stop:
                self.position += 1
                return result
            if char == "$":
                result.extend(self._dollar())
            elif char == "'":
                result.extend(self._single_quoted())
            elif char == '"':
                result.extend(self._double_quoted())
            elif char == self.escape:
                self.position += 1
                if self._peek() is None:
                    break
                result.append(self._take())
            else:
                result.append(self._take())
        if stop is not None:
            raise _Unresolvable(f"{self.word.chars} misses a closing {stop!r}")
        return result

    def _single_quoted(self) -> list[_Char]:
        self.position += 1
        result: list[_Char] = []
        while (char := self._peek()) is not None:
            if char == "'":
                self.position += 1
                return result
            result.append(self._take())
        raise _Unresolvable(f"{self.word.chars} has an unterminated single quote")

    def _double_quoted(self) -> list[_Char]:
        self.position += 1
        result: list[_Char] = []
        while (char := self._peek()) is not None:
            if char == '"':
                self.position += 1
                return result
            if char == "$":
                result.extend(self._dollar())
                continue
            if char == self.escape:
                following = self.word.chars[self.position + 1 : self.position + 2]
                if not following:
                    self.position += 1
                    continue
                if following in ('"', "$", self.escape):
                    self.position += 1
            result.append(self._take())
        raise _Unresolvable(f"{self.word.chars} has an unterminated double quote")

    def _name(self) -> str:
        chars = self.word.chars
        start = self.position
        if start < len(chars) and chars[start].isdigit():
            while self.position < len(chars) and chars[self.position].isdigit():
                self.position += 1
        elif start < len(chars) and chars[start] in _SPECIAL_PARAMETERS:
            self.position += 1
        else:
            while self.position < len(chars) and (
                chars[self.position].isalnum() or chars[self.position] == "_"
            ):
                self.position += 1
        return chars[start : self.position]

    def _dollar(self) -> list[_Char]:
        dollar = self._take()
        if self._peek() != "{":
            name = self._name()
            return [dollar] if not name else self._value(name, required=True)
        self.position += 1
        if self._peek() in (None, "{", "}", ":"):
            raise _Unresolvable(f"{self.word.chars}: bad substitution")
        name = self._name()
        operator = self._peek()
        self.position += 1
        if operator == "}":
            return self._value(name, required=True)
        null_is_unset = operator == ":"
        if null_is_unset:
            operator = self._peek()
            self.position += 1
        if operator not in ("-", "+", "?"):
            raise _Unresolvable(
                f"{self.word.chars} uses ${{{name}{':' if null_is_unset else ''}"
                f"{operator or ''}…}}; the bot evaluates only -, + and ? there"
            )
        word = self._until("}")
        value = self._value(name, required=False)
        is_set = name in self.variables and self.variables[name].value is not None
        if null_is_unset and not value:
            is_set = False
        decided = [
            _Char(char.char, char.offset, char.holder, char.depends | {name}) for char in word
        ]
        if operator == "-":
            return value if is_set else decided
        if operator == "+":
            return decided if is_set else []
        if not is_set:
            raise _Unresolvable(f"{self.word.chars} requires {name}, which has no value here")
        return value

    def _value(self, name: str, *, required: bool) -> list[_Char]:
        """The value of build argument `name` (each character depending on it)."""
        variable = self.variables.get(name)
        if variable is not None and variable.problem is not None:
            raise _Unresolvable(variable.problem)
        if variable is not None and variable.value is not None:
            return [
                _Char(char.char, char.offset, char.holder, char.depends | {name})
                for char in variable.value
            ]
        if name in PLATFORM_ARGUMENTS:
            raise _Unresolvable(
                f"{self.word.chars} uses ${name}, which Docker sets for each build platform; "
                "the bot cannot pick one digest for it"
            )
        if not required:
            return []
        if variable is not None:
            raise _Unresolvable(
                f"{self.word.chars} uses a build argument without a default value ({name}, "
                f"line {variable.line}); the bot cannot resolve it (give the ARG a default "
                "before the first FROM)"
            )
        if name in self.stage_arguments:
            raise _Unresolvable(
                f"{self.word.chars} uses {name}, which is declared inside a stage (line "
                f"{self.stage_arguments[name]}); FROM only sees ARGs declared before the first "
                "FROM, so Docker reads it as empty here (move the ARG above the first FROM)"
            )
        raise _Unresolvable(
            f"{self.word.chars} uses {name}, which no ARG before the first FROM declares; "
            "Docker reads it as empty here (declare it with a default before the first FROM)"
        )


# --- the parsed Dockerfile ---------------------------------------------------------------


@dataclass(frozen=True)
class _From:
    """A FROM read as a base image; `chain` is the build arguments its digest's place depends
    on (checked once the whole file is read)."""

    image: BaseImage
    chain: frozenset[str]
    written: str


@dataclass(frozen=True)
class _NotImage:
    """A FROM naming an earlier stage or `scratch`."""

    entry: Skipped


class Dockerfile:
    """A parsed Dockerfile: its base images, the FROMs that name no image, and what the bot
    leaves alone (with why)."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self._line_starts = [0, *(match.end() for match in re.finditer("\n", text))]
        lexed = _lex(text)
        self._escape = lexed.escape
        self._variables: dict[str, _Variable] = {}
        self._stage_arguments: dict[str, int] = {}
        self._inherited: dict[str, int] = {}  # `ARG NAME` (no default) in a stage → its line
        self._platform_words: list[tuple[int, str]] = []
        self._other_froms: list[tuple[int, str]] = []  # FROMs that are not base images
        outcomes: list[_From | _NotImage | Skipped] = []
        stages: set[str] = set()
        seen_from = False
        for instruction in lexed.instructions:
            if instruction.keyword == "arg":
                self._read_arguments(instruction, global_scope=not seen_from)
            elif instruction.keyword == "from":
                seen_from = True
                outcome = self._read_from(instruction, stages)
                if not isinstance(outcome, _From):
                    self._other_froms.append((instruction.line, instruction.arguments.chars))
                outcomes.append(outcome)
            elif instruction.keyword.startswith("from"):
                outcomes.append(
                    Skipped(
                        f"{path}:{instruction.line}",
                        f"Docker reads the instruction {instruction.keyword.upper()!r} here, not "
                        "FROM: the line continuation joins the keyword to the next line (put a "
                        "space before the escape character)",
                    )
                )
        if lexed.problems:
            line, problem = lexed.problems[0]
            refused = f"Docker refuses this Dockerfile ({problem}, line {line}); fix it first"
            lines = [item.line for item in lexed.instructions if item.keyword.startswith("from")]
            self.images: tuple[BaseImage, ...] = ()
            self.not_images: tuple[Skipped, ...] = ()
            self.skipped = tuple(Skipped(f"{path}:{item}", refused) for item in lines or [line])
            return
        problems = self._shared_places([item for item in outcomes if isinstance(item, _From)])
        images: list[BaseImage] = []
        not_images: list[Skipped] = []
        skipped: list[Skipped] = []
        for outcome in outcomes:
            if isinstance(outcome, _NotImage):
                not_images.append(outcome.entry)
            elif isinstance(outcome, Skipped):
                skipped.append(outcome)
            elif (reason := problems.get(outcome.image.span) or self._unsafe(outcome)) is not None:
                skipped.append(Skipped(outcome.image.subject, reason))
            else:
                images.append(outcome.image)
        self.images = tuple(images)
        self.not_images = tuple(not_images)
        self.skipped = tuple(skipped)

    @classmethod
    def parse(cls, text: str, path: str) -> Dockerfile:
        """Parse `text` (the content of `path`)."""
        return cls(text, path)

    # --- reading -----------------------------------------------------------------------

    def _line_of(self, offset: int) -> int:
        return bisect.bisect_right(self._line_starts, offset)

    def _read_arguments(self, instruction: _Instruction, *, global_scope: bool) -> None:
        for word in instruction.arguments.shell_words(self._escape):
            name, equals, _ = word.chars.partition("=")
            if not global_scope:
                self._stage_arguments.setdefault(name, instruction.line)
                if not equals:
                    self._inherited.setdefault(name, instruction.line)
                continue
            if not equals:
                self._variables.setdefault(name, _Variable(name, instruction.line, None))
                continue
            default = word.slice(len(name) + 1, len(word.chars))
            expander = _Expander(default, name, self._variables, {}, self._escape)
            try:
                value = expander.expand()
            except _Unresolvable as error:
                problem = f"the default of ARG {name} (line {instruction.line}): {error.reason}"
                self._variables[name] = _Variable(name, instruction.line, None, problem)
                continue
            self._variables[name] = _Variable(name, instruction.line, value)

    def _read_from(
        self, instruction: _Instruction, stages: set[str]
    ) -> _From | _NotImage | Skipped:
        subject = f"{self.path}:{instruction.line}"
        words = instruction.arguments.split()
        platform_word: _Text | None = None
        while words and words[0].chars.startswith("--"):
            flag = words.pop(0)
            if flag.chars == "--":
                break
            name, _, _ = flag.chars.partition("=")
            if name != "--platform":
                return Skipped(subject, f"FROM has the flag {name}, which Docker refuses")
            platform_word = flag.slice(len(name) + 1, len(flag.chars))
            self._platform_words.append((instruction.line, platform_word.chars))
        if not words:
            return Skipped(subject, "FROM names no image")
        stage = None
        if len(words) == 3 and words[1].chars.lower() == "as":
            stage = words[2].chars
            if not _STAGE_NAME.match(stage.lower()):
                return Skipped(subject, f"{stage!r} is not a stage name Docker accepts")
        elif len(words) != 1:
            return Skipped(subject, "FROM has unexpected words after the image; expected `AS name`")
        written = words[0].chars
        try:
            resolved = self._expand(words[0])
        except _Unresolvable as error:
            return Skipped(subject, error.reason)
        finally:
            if stage is not None:
                stages.add(stage.lower())
        name = "".join(char.char for char in resolved)
        if name == "scratch":
            return _NotImage(Skipped(f"{subject} scratch", "the empty image; nothing to pin"))
        if name in stages - {(stage or "").lower()}:
            return _NotImage(
                Skipped(f"{subject} {name}", f"the earlier stage `{name}`; not an image to pin")
            )
        reference = parse_reference(name)
        if isinstance(reference, str):
            return Skipped(subject, reference)
        place = self._digest_place(resolved, written, reference)
        if isinstance(place, str):
            return Skipped(subject, place)
        span, holder, chain = place
        image = BaseImage(
            file=self.path,
            line=instruction.line,
            reference=reference,
            span=span,
            stage=stage,
            platform=self._platform(platform_word),
            argument=holder,
        )
        return _From(image, chain, written)

    def _expand(self, word: _Text) -> tuple[_Char, ...]:
        return _Expander(word, None, self._variables, self._stage_arguments, self._escape).expand()

    def _platform(self, word: _Text | None) -> str | None:
        """The `--platform` a FROM asks for, when it is a fixed value."""
        if word is None:
            return None
        try:
            chars = self._expand(word)
        except _Unresolvable:
            return None
        return "".join(char.char for char in chars) or None

    def _digest_place(
        self, resolved: tuple[_Char, ...], written: str, reference: ImageReference
    ) -> tuple[TextSpan, str | None, frozenset[str]] | str:
        """Where the digest is written (or would go), the ARG holding that place and the build
        arguments it depends on; or why there is no such place."""
        if reference.digest is not None:
            digest = resolved[len(resolved) - len(reference.digest) :]
            offsets = [char.offset for char in digest]
            start = offsets[0]
            if offsets != list(range(start, start + len(offsets))):
                return (
                    f"the digest of {written} is not written in one piece (split across lines "
                    "or escaped); write it on one line"
                )
            span = TextSpan(start, start + len(offsets), self._line_of(start))
            return span, digest[0].holder, digest[0].depends
        last = resolved[-1]
        depends = frozenset[str]().union(*(char.depends for char in resolved))
        if not depends <= last.depends:
            return (
                f"{written} is not pinned, and the bot cannot add a digest: part of its name or "
                f"tag comes from build argument {', '.join(sorted(depends - last.depends))}, and "
                "a digest written after it would outlive an override of that argument (put the "
                "tag in the ARG default, or pin it by hand)"
            )
        point = last.offset + 1
        return TextSpan(point, point, self._line_of(point)), last.holder, last.depends

    def _unsafe(self, item: _From) -> str | None:
        """Why a digest must not be inserted into the ARG default an unpinned image uses."""
        holder = item.image.argument
        if item.image.reference.digest is not None or holder is None:
            return None
        readers = self._readers(holder, item.chain)
        if not readers:
            return None
        return (
            f"{item.written} is not pinned, and the bot cannot add a digest: ARG {holder} is "
            f"also read by {readers}, and a digest in its default would change that value too "
            "(add it yourself if that is fine, or give the image an ARG of its own)"
        )

    def _readers(self, name: str, chain: frozenset[str]) -> str:
        """Where else global ARG `name` is read, besides the FROMs naming base images."""
        places = []
        if name in self._inherited:
            places.append(f"the stage ARG at line {self._inherited[name]}")
        for variable in self._variables.values():
            if variable.name not in chain and any(
                char.holder == name for char in variable.value or ()
            ):
                places.append(f"ARG {variable.name} (line {variable.line})")
        used = re.compile(rf"\$(?:{re.escape(name)}\b|\{{{re.escape(name)}\b)")
        places += [
            f"--platform at line {line}" for line, text in self._platform_words if used.search(text)
        ]
        places += [
            f"the FROM at line {line}" for line, text in self._other_froms if used.search(text)
        ]
        return ", ".join(places)

    @staticmethod
    def _shared_places(froms: Sequence[_From]) -> dict[TextSpan, str]:
        """Places that would hold the digest of more than one image, and why that is refused."""
        served: dict[TextSpan, set[str]] = {}
        for item in froms:
            reference = item.image.reference
            served.setdefault(item.image.span, set()).add(
                f"{reference.name}:{reference.lookup_tag}"
            )
        problems = {}
        for item in froms:
            names = served[item.image.span]
            if len(names) > 1:
                image = item.image
                where = f"ARG {image.argument}" if image.argument else f"line {image.span.line}"
                problems[image.span] = (
                    f"the digest of {', '.join(sorted(names))} would all live in {where}; give "
                    "each image an ARG of its own"
                )
        return problems

    # --- editing -----------------------------------------------------------------------

    def repin(self, new_digests: Iterable[tuple[BaseImage, str]]) -> str:
        """The text with each image's digest set to its new one (inserted when it had none).

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
            written = digest if image.reference.digest is not None else f"@{digest}"
            text = text[: span.start] + written + text[span.end :]
        return text
