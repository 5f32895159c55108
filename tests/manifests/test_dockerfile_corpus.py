"""Real-world Dockerfiles (tests/fixtures/dockerfiles, sources in its README): every FROM line
is read as Docker reads it and shows in the plan exactly once, never silently dropped."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.manifests.dockerfile import Dockerfile, parse_reference
from bot.planning.base_images import DigestPolicy, plan_digests, triage
from bot.watchers.base_images import find_base_images

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "dockerfiles"
EXPECTED: dict[str, list[list[object]]] = json.loads((CORPUS / "expected.json").read_text())
NEW = "sha256:" + "e" * 64
_RESULT_FROM = re.compile(r'^\(from (?:\[[^\]]*\] )?"([^"]*)"', re.MULTILINE)


def corpus() -> list[str]:
    """Every Dockerfile in the corpus, relative to it."""
    return sorted(
        path.relative_to(CORPUS).as_posix()
        for path in CORPUS.rglob("*")
        if path.is_file() and (path.name == "Dockerfile" or path.suffix.lower() == ".dockerfile")
    )


def read(name: str) -> Dockerfile:
    return Dockerfile.parse((CORPUS / name).read_bytes().decode("utf-8"), name)


def line_of(subject: str) -> int:
    return int(subject.split(" ", maxsplit=1)[0].rsplit(":", 1)[1])


def outcomes(dockerfile: Dockerfile) -> list[list[object]]:
    """One row per FROM: line, what the bot made of it, and the detail a reviewer checks."""
    rows: list[list[object]] = [
        [
            image.line,
            "image",
            f"{image.reference}" + (f" (ARG {image.argument})" * bool(image.argument)),
        ]
        for image in dockerfile.images
    ]
    rows += [
        [line_of(item.subject), "not-image", item.subject.split(" ", 1)[1]]
        for item in dockerfile.not_images
    ]
    rows += [[line_of(item.subject), "skipped", item.reason] for item in dockerfile.skipped]
    return sorted(rows, key=lambda row: (row[0], row[1]))


def test_the_corpus_is_the_one_reviewed() -> None:
    assert sorted(EXPECTED) == corpus()
    assert len(corpus()) >= 70


@pytest.mark.parametrize("name", corpus())
def test_every_from_line_is_read_as_reviewed(name: str) -> None:
    rows = outcomes(read(name))

    assert rows == EXPECTED[name]
    lines = [row[0] for row in rows]
    assert len(lines) == len(set(lines)), "a FROM line must have exactly one outcome"


@pytest.mark.parametrize(
    "name", [name for name in corpus() if (CORPUS / Path(name).parent / "result").exists()]
)
def test_buildkit_reads_the_same_from_lines(name: str) -> None:
    """BuildKit's own parse of its test files (`result`) names the same base images."""
    result = CORPUS / Path(name).parent / "result"
    bases = _RESULT_FROM.findall(result.read_text())
    dockerfile = read(name)
    ours = [str(image.reference) for image in dockerfile.images]
    ours += [item.subject.split(" ", 1)[1] for item in dockerfile.not_images]
    theirs = []
    for base in bases:
        reference = parse_reference(base)
        theirs.append(base if isinstance(reference, str) else str(reference))
    assert sorted(ours) == sorted(theirs)
    assert dockerfile.skipped == ()


@pytest.mark.parametrize("pin_unpinned", [False, True])
def test_the_plan_lists_every_from_line_exactly_once(pin_unpinned: bool) -> None:
    names = corpus()
    texts = {name: (CORPUS / name).read_bytes().decode("utf-8") for name in names}
    findings = find_base_images(names, ("*",), texts.get, configured=False)
    policy = DigestPolicy("base-image", pin_unpinned=pin_unpinned)
    chosen, left_alone = triage(findings.images, policy)

    plan = plan_digests(
        repo="corpus",
        base_commit="0" * 40,
        images=chosen,
        resolutions={},
        skipped=(*findings.not_images, *findings.skipped, *left_alone),
        policy=policy,
        now=datetime(2024, 6, 1, tzinfo=UTC),
    )

    listed = [pin.name.split(" ")[0] for pin in plan.current_pins]
    listed += [item.subject.split(" ")[0] for item in plan.skipped]
    unpinned_chosen = [image.subject for image in chosen if image.reference.digest is None]
    expected = sorted(f"{name}:{row[0]}" for name in names for row in EXPECTED[name])
    assert sorted(listed + unpinned_chosen) == expected
    assert len(expected) >= 80


@pytest.mark.parametrize("name", corpus())
def test_re_pinning_changes_only_digest_bytes(name: str) -> None:
    dockerfile = read(name)
    if not dockerfile.images:
        return
    original = dockerfile.text
    for image in dockerfile.images:
        held = original[image.span.start : image.span.end]
        if image.reference.digest is None:
            assert held == "" and image.span.start > 0
        else:
            assert held == image.reference.digest

    edited = dockerfile.repin([(image, NEW) for image in dockerfile.images])

    again = Dockerfile.parse(edited, name)
    assert [
        (image.line, image.reference.name, image.reference.digest) for image in again.images
    ] == [(image.line, image.reference.name, NEW) for image in dockerfile.images]
    assert outcomes(again)[:0] == [] and len(outcomes(again)) == len(outcomes(dockerfile))
    removed = edited
    for image in sorted(
        {image.span: image for image in dockerfile.images}.values(),
        key=lambda item: item.span.start,
    ):
        inserted = NEW if image.reference.digest else f"@{NEW}"
        position = removed.index(inserted, image.span.start)
        assert position == image.span.start
        removed = (
            removed[:position]
            + original[image.span.start : image.span.end]
            + removed[position + len(inserted) :]
        )
    assert removed == original
