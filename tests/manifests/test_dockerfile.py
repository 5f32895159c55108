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
        "ARG DIGEST=" + OLD + "\n"
        "ARG TAG=20\n"
        "FROM ${NODEFAULT}\n"
        "FROM node:20@${DIGEST}\n"
        "FROM Node:20\n"
        "FROM node:20@sha512:" + "a" * 128 + "\n"
        "FROM node:2\\\n0@" + OLD + "\n"
        "FROM --platform=linux/amd64\n"
        "FROM node:${TAG}\n"
        "FROM node:20 AS a b\n"
    )
    dockerfile = Dockerfile.parse(text, "Dockerfile")

    reasons = {item.subject: item.reason for item in dockerfile.skipped}
    assert "without a default value" in reasons["Dockerfile:4"]
    assert "comes from a variable" in reasons["Dockerfile:5"]
    assert "not a valid image reference" in reasons["Dockerfile:6"]
    assert "sha256" in reasons["Dockerfile:7"]
    assert "split across lines" in reasons["Dockerfile:8"]
    assert "names no image" in reasons["Dockerfile:10"]
    # appending a digest after a variable tag would silently override --build-arg TAG=…
    assert "ends in a variable" in reasons["Dockerfile:11"]
    assert "unexpected words" in reasons["Dockerfile:12"]
    assert dockerfile.images == ()


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
