"""Dockerfile FROM parsing and digest editing: pure text in, text out."""

from __future__ import annotations

import pytest

from bot.errors import InvalidRemoteData, ManifestError
from bot.manifests.dockerfile import (
    DEFAULT_DOCKERFILES,
    Dockerfile,
    ImageReference,
    parse_reference,
    select_dockerfiles,
)

OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64
OTHER = "sha256:" + "c" * 64

MULTI_STAGE = f"""\
# syntax=docker/dockerfile:1.6
# A comment before everything.
ARG BASE=node:20.11.0-alpine3.19@{OLD}
ARG TOOLS="cgr.dev/chainguard/wolfi-base:latest@{OLD}"
ARG UNUSED=busybox:1@{OLD}

from --platform=$BUILDPLATFORM ${{BASE}} as build
WORKDIR /app
RUN echo building \\
    && echo done
ARG BASE=ignored:1

FROM \\
  # comments may sit inside a continuation
  --platform=linux/arm64 \\
  alpine:3.19@{OLD} AS Runtime
COPY --from=build /app /app

FROM build AS test
FROM runtime
FROM ${{TOOLS}} AS tools
FROM scratch AS empty
FROM ghcr.io/acme/base:2@{OLD}
"""


def test_multi_stage_finds_images_and_leaves_stages_alone() -> None:
    dockerfile = Dockerfile.parse(MULTI_STAGE, "Dockerfile")

    found = [
        (image.line, str(image.reference), image.stage, image.platform, image.argument)
        for image in dockerfile.images
    ]
    assert found == [
        (7, f"node:20.11.0-alpine3.19@{OLD}", "build", None, "BASE"),
        (13, f"alpine:3.19@{OLD}", "Runtime", "linux/arm64", None),
        (21, f"cgr.dev/chainguard/wolfi-base:latest@{OLD}", "tools", None, "TOOLS"),
        (23, f"ghcr.io/acme/base:2@{OLD}", None, None, None),
    ]
    assert dockerfile.skipped == ()
    # the ARG default is where the pin lives, so that is the line that gets edited
    assert [image.span.line for image in dockerfile.images] == [3, 16, 4, 23]


def test_repin_changes_only_the_digests() -> None:
    dockerfile = Dockerfile.parse(MULTI_STAGE, "Dockerfile")

    edited = dockerfile.repin([(image, NEW) for image in dockerfile.images])

    expected = (
        MULTI_STAGE.replace(f"alpine3.19@{OLD}", f"alpine3.19@{NEW}")
        .replace(f"latest@{OLD}", f"latest@{NEW}")
        .replace(f"alpine:3.19@{OLD}", f"alpine:3.19@{NEW}")
        .replace(f"base:2@{OLD}", f"base:2@{NEW}")
    )
    assert edited == expected
    # the unused ARG keeps its old digest
    assert f"busybox:1@{OLD}" in edited
    again = Dockerfile.parse(edited, "Dockerfile")
    assert {image.reference.digest for image in again.images} == {NEW}


def test_one_arg_used_by_two_stages_is_edited_once_and_conflicts_are_refused() -> None:
    text = f"ARG BASE=node:20@{OLD}\nFROM $BASE AS a\nFROM ${{BASE}} AS b\n"
    dockerfile = Dockerfile.parse(text, "Dockerfile")
    first, second = dockerfile.images
    assert first.span == second.span

    assert dockerfile.repin([(first, NEW), (second, NEW)]) == text.replace(OLD, NEW)
    with pytest.raises(ManifestError, match="two digests"):
        dockerfile.repin([(first, NEW), (second, OTHER)])


def test_unpinned_images_get_a_digest_appended() -> None:
    text = "FROM node:20 AS build\nARG X=1\nFROM python\n"
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    assert [image.reference.digest for image in dockerfile.images] == [None, None]
    edited = dockerfile.repin([(image, NEW) for image in dockerfile.images])

    assert edited == f"FROM node:20@{NEW} AS build\nARG X=1\nFROM python@{NEW}\n"


def test_crlf_tabs_and_escape_directive_survive() -> None:
    text = (
        "# escape=`\r\n"
        "FROM\t`\r\n"
        f"    mcr.microsoft.com/windows/servercore:ltsc2022@{OLD}\tAS base\r\n"
        "RUN echo hi\r\n"
    )
    dockerfile = Dockerfile.parse(text, "Dockerfile.windows")
    (image,) = dockerfile.images

    assert image.reference.domain == "mcr.microsoft.com"
    assert image.stage == "base"
    assert dockerfile.repin([(image, NEW)]) == text.replace(OLD, NEW)


def test_what_cannot_be_edited_safely_is_skipped_with_a_reason() -> None:
    text = (
        "ARG NODEFAULT\n"
        "ARG REGISTRY=docker.io\n"
        "ARG TAG=20\n"
        "FROM ${NODEFAULT}\n"
        "FROM ${REGISTRY}/library/node:20\n"
        "FROM Node:20\n"
        "FROM node:20@sha512:" + "a" * 128 + "\n"
        "FROM node:20@sha256:aaaa\\\n" + "a" * 60 + "\n"
        "FROM --platform=linux/amd64\n"
        "FROM node:${TAG}-slim\n"
        "FROM node:20 AS a b\n"
        "FROM --network=none node:20\n"
        "FROM node:20 AS 1st\n"
        "FROM node:${TARGETARCH}\n"
        "FROM node:${TAG%.*}\n"
    )
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    reasons = {item.subject: item.reason for item in dockerfile.skipped}
    assert "without a default value" in reasons["Dockerfile:4"]
    # a digest appended after a literal tail would survive `--build-arg REGISTRY=…`
    assert "build argument REGISTRY" in reasons["Dockerfile:5"]
    assert "not a valid image reference" in reasons["Dockerfile:6"]
    assert "sha256" in reasons["Dockerfile:7"]
    assert "not written in one piece" in reasons["Dockerfile:8"]
    assert "names no image" in reasons["Dockerfile:10"]
    assert "build argument TAG" in reasons["Dockerfile:11"]
    assert "unexpected words" in reasons["Dockerfile:12"]
    assert "--network" in reasons["Dockerfile:13"]
    assert "not a stage name" in reasons["Dockerfile:14"]
    assert "each build platform" in reasons["Dockerfile:15"]
    assert "evaluates only -, + and ?" in reasons["Dockerfile:16"]
    assert dockerfile.images == ()


def test_a_digest_held_by_an_arg_is_re_pinned_there_unless_two_images_share_it() -> None:
    text = (
        f"ARG DIGEST={OLD}\n"
        f"ARG SHARED={OLD}\n"
        "FROM node:20@${DIGEST}\n"
        "FROM ruby:3@${SHARED}\n"
        "FROM python:3@${SHARED}\n"
    )
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    (image,) = dockerfile.images
    assert (image.argument, image.span.line) == ("DIGEST", 1)
    assert dockerfile.repin([(image, NEW)]) == text.replace(f"DIGEST={OLD}", f"DIGEST={NEW}")
    reasons = [(item.subject, item.reason) for item in dockerfile.skipped]
    assert [subject for subject, _ in reasons] == ["Dockerfile:4", "Dockerfile:5"]
    assert all("ARG SHARED" in reason and "python:3, ruby:3" in reason for _, reason in reasons)


def test_repin_refuses_an_invalid_digest() -> None:
    dockerfile = Dockerfile.parse(f"FROM node:20@{OLD}\n", "Dockerfile")
    with pytest.raises(InvalidRemoteData):
        dockerfile.repin([(dockerfile.images[0], "sha256:" + "A" * 64)])


@pytest.mark.parametrize(
    ("text", "registry", "path", "name", "tag"),
    [
        ("node", "registry-1.docker.io", "library/node", "node", None),
        ("node:20-alpine", "registry-1.docker.io", "library/node", "node", "20-alpine"),
        ("bitnami/redis:7", "registry-1.docker.io", "bitnami/redis", "bitnami/redis", "7"),
        ("docker.io/library/node:20", "registry-1.docker.io", "library/node", "node", "20"),
        ("index.docker.io/library/node:20", "registry-1.docker.io", "library/node", "node", "20"),
        (
            "cgr.dev/chainguard/wolfi-base:latest",
            "cgr.dev",
            "chainguard/wolfi-base",
            "cgr.dev/chainguard/wolfi-base",
            "latest",
        ),
        ("localhost:5000/app:1", "localhost:5000", "app", "localhost:5000/app", "1"),
        ("127.0.0.1:5000/team/app", "127.0.0.1:5000", "team/app", "127.0.0.1:5000/team/app", None),
    ],
)
def test_references_are_normalised_like_docker(
    text: str, registry: str, path: str, name: str, tag: str | None
) -> None:
    reference = parse_reference(text)

    assert isinstance(reference, ImageReference)
    assert (reference.registry, reference.path, reference.name, reference.tag) == (
        registry,
        path,
        name,
        tag,
    )
    assert reference.lookup_tag == (tag or "latest")


@pytest.mark.parametrize("text", ["Node:1", "node:20@sha256:abc", "-node", "node::1", ""])
def test_invalid_references_are_refused_with_a_reason(text: str) -> None:
    reason = parse_reference(text)
    assert isinstance(reason, str) and repr(text) in reason


def test_default_patterns_find_dockerfiles_at_any_depth() -> None:
    paths = [
        "Dockerfile",
        "deploy/api.Dockerfile",
        "deploy/Dockerfile.dev",
        "src/Dockerfiles.md",
        "docs/dockerfile.txt",
        "README.md",
    ]

    assert select_dockerfiles(paths, DEFAULT_DOCKERFILES) == [
        "Dockerfile",
        "deploy/Dockerfile.dev",
        "deploy/api.Dockerfile",
    ]
    assert select_dockerfiles(paths, ["deploy/*.Dockerfile"]) == ["deploy/api.Dockerfile"]


# --- issue 17: read every Dockerfile as Docker does ---------------------------------------


def test_a_byte_order_mark_is_stripped_as_docker_does() -> None:
    text = f"\ufeffFROM node:20@{OLD}\n"
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    (image,) = dockerfile.images
    assert str(image.reference) == f"node:20@{OLD}"
    assert dockerfile.repin([(image, NEW)]) == text.replace(OLD, NEW)


def test_a_continuation_right_after_the_keyword() -> None:
    text = f"FROM\\\n    node:20@{OLD} AS build\nfrom\\\r\n  --platform=linux/arm64 \\\r\n  alpine:3\r\n"
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    assert [(image.line, str(image.reference), image.stage) for image in dockerfile.images] == [
        (1, f"node:20@{OLD}", "build"),
        (3, "alpine:3", None),
    ]
    assert dockerfile.images[1].platform == "linux/arm64"


def test_parser_directives_end_at_the_first_line_that_is_not_one() -> None:
    # Docker adopts `# escape=` only before any other comment, empty line or instruction
    text = f"# a comment first\n# escape=`\nFROM \\\n  nginx:1.20@{OLD}\n"
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    (image,) = dockerfile.images
    assert str(image.reference) == f"nginx:1.20@{OLD}"
    assert dockerfile.repin([(image, NEW)]) == text.replace(OLD, NEW)
    # a real directive block: syntax, then escape
    windows = f"# syntax=docker/dockerfile:1\n#escape=`\nFROM `\n  nginx:1.20@{OLD}\n"
    assert str(Dockerfile.parse(windows, "Dockerfile").images[0].reference) == (f"nginx:1.20@{OLD}")


def test_modifier_defaults_in_from_are_read_and_re_pinned() -> None:
    text = (
        "ARG SET=ruby:3\n"
        f"FROM ${{IMG:-node:20@{OLD}}} AS a\n"
        f'FROM ${{REF:-"python:3.12@{OLD}"}} AS b\n'
        f"FROM ${{SET:-ignored:1@{OTHER}}} AS c\n"
        f"FROM ${{SET:+golang:1.22@{OLD}}} AS d\n"
        "ARG STAGE=not-seen-by-from:1\n"
        f"FROM ${{STAGE:-alpine:3@{OLD}}} AS e\n"
    )
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    found = [(image.line, str(image.reference)) for image in dockerfile.images]
    assert found == [
        (2, f"node:20@{OLD}"),
        (3, f"python:3.12@{OLD}"),
        (4, "ruby:3"),
        (5, f"golang:1.22@{OLD}"),
        (7, f"alpine:3@{OLD}"),
    ]
    assert dockerfile.skipped == ()
    pinned = [image for image in dockerfile.images if image.reference.digest]
    assert dockerfile.repin([(image, NEW) for image in pinned]) == text.replace(OLD, NEW)


def test_only_args_before_the_first_from_feed_from_lines() -> None:
    text = (
        "ARG GLOBAL=3.19\n"
        f"FROM alpine:${{GLOBAL}}@{OLD} AS a\n"
        "ARG STAGE=20\n"
        "FROM node:${STAGE}\n"
        "ARG QUOTED\n"
        'FROM python:${QUOTED:-"3.12"}\n'
    )
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    assert [str(image.reference) for image in dockerfile.images] == [
        f"alpine:3.19@{OLD}",
        "python:3.12",
    ]
    (skipped,) = dockerfile.skipped
    assert skipped.subject == "Dockerfile:4"
    # the truth: STAGE is declared inside a stage, where FROM cannot see it
    assert "line 3" in skipped.reason and "inside a stage" in skipped.reason
    assert "without a default" not in skipped.reason


def test_an_arg_default_tag_is_listed_and_re_pinned_through_the_default() -> None:
    text = (
        f"ARG VARIANT=20-alpine@{OLD}\n"
        "ARG PY=3.12\n"
        "FROM node:${VARIANT} AS a\n"
        "FROM python:$PY AS b\n"
    )
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    node, python = dockerfile.images
    assert (str(node.reference), node.argument, node.span.line) == (
        f"node:20-alpine@{OLD}",
        "VARIANT",
        1,
    )
    assert (str(python.reference), python.argument, python.span.line) == ("python:3.12", "PY", 2)
    edited = dockerfile.repin([(node, NEW), (python, OTHER)])
    # only the digest bytes change; the unpinned tag gets its digest inside the ARG default,
    # so `--build-arg PY=3.13` replaces tag and digest together
    assert edited == text.replace(OLD, NEW).replace("PY=3.12", f"PY=3.12@{OTHER}")


def test_every_from_is_an_image_a_non_image_or_skipped_never_lost() -> None:
    text = (
        "ARG STAGE=build\n"
        f"FROM node:20@{OLD} AS build\n"
        "RUN <<EOF\n"
        "FROM this-is-heredoc-text:1\n"
        "EOF\n"
        "FROM ${STAGE} AS test\n"
        "FROM scratch\n"
        "FROM\\\n"
        "python:3\n"
        "COPY <<-'END' /etc/x\n"
        "\tFROM also-heredoc:2\n"
        "\tEND\n"
        "FROM Build\n"
    )
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    assert [image.line for image in dockerfile.images] == [2]
    assert [(item.subject, item.reason) for item in dockerfile.not_images] == [
        ("Dockerfile:6 build", "the earlier stage `build`; not an image to pin"),
        ("Dockerfile:7 scratch", "the empty image; nothing to pin"),
    ]
    reasons = {item.subject: item.reason for item in dockerfile.skipped}
    assert list(reasons) == ["Dockerfile:8", "Dockerfile:13"]
    # Docker joins `FROM\` and an unindented next line into one word
    assert "'FROMPYTHON:3'" in reasons["Dockerfile:8"]
    # stage names are matched exactly after lower-casing the stage, as BuildKit does
    assert "not a valid image reference" in reasons["Dockerfile:13"]


def test_a_file_docker_refuses_leaves_every_from_alone_with_the_reason() -> None:
    text = f"# escape=`\n# escape=\\\nFROM node:20@{OLD}\nFROM scratch\n"
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    assert dockerfile.images == () and dockerfile.not_images == ()
    assert [item.subject for item in dockerfile.skipped] == ["Dockerfile:3", "Dockerfile:4"]
    assert all("only one escape parser directive" in item.reason for item in dockerfile.skipped)
    unterminated = Dockerfile.parse("FROM node:20\nRUN <<EOF\necho\n", "Dockerfile")
    assert [item.subject for item in unterminated.skipped] == ["Dockerfile:1"]
    assert "never ends" in unterminated.skipped[0].reason


def test_no_digest_is_added_to_an_arg_default_that_is_read_elsewhere() -> None:
    text = (
        "ARG VERSION=20\n"
        "ARG OWN=3.12\n"
        "FROM node:${VERSION} AS a\n"
        "ARG VERSION\n"
        "RUN echo $VERSION\n"
        "FROM python:${OWN}\n"
    )
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    (image,) = dockerfile.images
    assert (str(image.reference), image.argument) == ("python:3.12", "OWN")
    (skipped,) = dockerfile.skipped
    assert skipped.subject == "Dockerfile:3"
    assert "also read by the stage ARG at line 4" in skipped.reason


@pytest.mark.parametrize(("value", "kind"), [("scratch", "scratch"), ("build", "stage")])
def test_no_digest_is_added_to_an_arg_default_a_stage_or_scratch_from_reads(
    value: str, kind: str
) -> None:
    # A digest in TAG's default would turn `FROM ${TAG}` into `scratch@sha256:…` or
    # `build@sha256:…`: Docker refuses the first and pulls an image for the second.
    text = f"ARG TAG={value}\nFROM node:20 AS build\nFROM ${{TAG}}\nFROM node:${{TAG}}\n"
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    assert [image.line for image in dockerfile.images] == [2]
    assert [item.subject.split(" ")[0] for item in dockerfile.not_images] == ["Dockerfile:3"]
    (skipped,) = dockerfile.skipped
    assert skipped.subject == "Dockerfile:4"
    assert "also read by the FROM at line 3" in skipped.reason, kind
