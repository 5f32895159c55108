"""Property-based tests: generated Dockerfiles never crash the parser and never lose a FROM.

The generator writes files the way people (and editors) do: a BOM or not, LF or CRLF, parser
directives (`# syntax=`, `# escape=` with `\\` or a backtick), comments and blank lines, line
continuations in any word gap (and comment or empty lines inside them), ARGs with and without
defaults (plain, quoted, `${X:-…}`) before and inside stages, heredocs whose bodies look like
FROM lines, and FROM lines with flags, stage names, variables, quotes and registries with ports.
It knows on which line each real FROM starts; the parser must give each exactly one outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.manifests.dockerfile import Dockerfile

DIGEST = "sha256:" + "d" * 64
NEW = "sha256:" + "f" * 64
REFERENCES = [
    "node:20",
    f"node:20-alpine@{DIGEST}",
    "cgr.dev/chainguard/wolfi-base:latest",
    f"localhost:5000/team/app:1@{DIGEST}",
    "registry.example.com:8443/x/y",
    f"python@{DIGEST}",
    "Invalid:Ref",
    "scratch",
]
NAMES = ["BASE", "TAG", "IMAGE", "VARIANT"]
WORDS = st.sampled_from(["echo", "hi", "&&", "make", "-j2", "FROM", "from", "x=1", "'a b'", '"c"'])


@dataclass(frozen=True)
class Instruction:
    """Words of one instruction; `is_from` marks the FROMs the parser must account for."""

    words: tuple[str, ...]
    is_from: bool = False
    heredoc: tuple[str, ...] = ()


@st.composite
def image_words(draw: st.DrawFn) -> str:
    reference = draw(st.sampled_from(REFERENCES))
    name = draw(st.sampled_from(NAMES))
    form = draw(st.integers(0, 6))
    return [
        reference,
        f"${{{name}}}",
        f"${name}",
        f"${{{name}:-{reference}}}",
        f"${{{name}:+{reference}}}",
        f'"{reference}"',
        f"{reference.split('@')[0]}${{{name}}}" if ":" not in reference else f"node:${{{name}}}",
    ][form]


@st.composite
def from_instruction(draw: st.DrawFn, stages: list[str]) -> Instruction:
    keyword = draw(st.sampled_from(["FROM", "from", "From"]))
    words = [keyword]
    if draw(st.booleans()):
        words.append(draw(st.sampled_from(["--platform=linux/arm64", "--platform=$BUILDPLATFORM"])))
    if stages and draw(st.integers(0, 3)) == 0:
        words.append(draw(st.sampled_from(stages)))
    else:
        words.append(draw(image_words()))
    if draw(st.booleans()):
        stage = f"stage{len(stages)}"
        stages.append(stage)
        words += [draw(st.sampled_from(["AS", "as"])), stage]
    return Instruction(tuple(words), is_from=True)


@st.composite
def arg_instruction(draw: st.DrawFn) -> Instruction:
    name = draw(st.sampled_from(NAMES))
    value = draw(st.sampled_from(["", *REFERENCES, "20", "3.19-alpine", f"@{DIGEST}"]))
    form = draw(st.integers(0, 4))
    word = [
        name,
        f"{name}={value}",
        f'{name}="{value}"',
        f"{name}='{value}'",
        f"{name}=${{{name}:-{value}}}",
    ][form]
    return Instruction(("ARG", word))


@st.composite
def other_instruction(draw: st.DrawFn) -> Instruction:
    keyword = draw(st.sampled_from(["RUN", "ENV", "COPY", "WORKDIR", "LABEL"]))
    words = (keyword, *draw(st.lists(WORDS, min_size=1, max_size=4)))
    if keyword in ("RUN", "COPY") and draw(st.booleans()):
        body = draw(
            st.lists(st.sampled_from(["FROM evil:1", "echo", "  FROM x", "ARG Z=1"]), max_size=3)
        )
        return Instruction((*words, "<<EOF"), heredoc=(*body, "EOF"))
    return Instruction(words)


@st.composite
def dockerfiles(draw: st.DrawFn) -> tuple[str, list[int]]:
    """A Dockerfile's text and the 1-based lines on which its FROM instructions start."""
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    escape = draw(st.sampled_from(["\\", "`"]))
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append("# syntax=docker/dockerfile:1")
    if escape == "`" or draw(st.booleans()):
        lines.append(f"# escape={escape}")
    stages: list[str] = []
    instructions = draw(st.lists(arg_instruction(), max_size=3))
    for _ in range(draw(st.integers(1, 6))):
        instructions.append(draw(from_instruction(stages)))
        instructions += draw(
            st.lists(st.one_of(arg_instruction(), other_instruction()), max_size=3)
        )
    starts: list[int] = []
    for instruction in instructions:
        lines += draw(
            st.lists(st.sampled_from(["", "# a comment", "   # indented comment"]), max_size=2)
        )
        indent = draw(st.sampled_from(["", " ", "\t"]))
        if instruction.is_from:
            starts.append(len(lines) + 1)
        current = indent + instruction.words[0]
        for word in instruction.words[1:]:
            if draw(st.integers(0, 3)) == 0:
                # a continuation in this gap; the space survives before or after it
                before = draw(st.booleans())
                lines.append(
                    current
                    + (" " if before else "")
                    + escape
                    + draw(st.sampled_from(["", " ", "\t"]))
                )
                lines += draw(
                    st.lists(st.sampled_from(["", "  ", "# inside", "\t# inside"]), max_size=2)
                )
                current = ("" if before else draw(st.sampled_from([" ", "\t", "   "]))) + word
            else:
                current += " " + word
        lines.append(current)
        lines += instruction.heredoc
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text, starts


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dockerfiles())
def test_generated_dockerfiles_keep_every_from_line(case: tuple[str, list[int]]) -> None:
    text, starts = case
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    lines = [image.line for image in dockerfile.images]
    lines += [int(item.subject.split(" ")[0].rsplit(":", 1)[1]) for item in dockerfile.not_images]
    lines += [int(item.subject.split(" ")[0].rsplit(":", 1)[1]) for item in dockerfile.skipped]
    assert sorted(lines) == starts

    edited = dockerfile.repin([(image, NEW) for image in dockerfile.images])
    again = Dockerfile.parse(edited, "Dockerfile")
    assert [image.line for image in again.images] == [image.line for image in dockerfile.images]
    assert all(image.reference.digest == NEW for image in again.images)


TOKENS = ["FROM ", "ARG ", "RUN ", "A", "=", "$", "{", "}", ":-", ":+", "\\", "`", "#", "\n"]
TOKENS += ["\r\n", " ", "\t", '"', "'", "<<", "EOF", "@", "node:20", "\ufeff", "# escape=`\n", "-"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_arbitrary_text_never_crashes_the_parser(text: str) -> None:
    dockerfile = Dockerfile.parse(text, "Dockerfile")
    assert dockerfile.repin([(image, NEW) for image in dockerfile.images]) is not None
