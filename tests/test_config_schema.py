"""The repo config you can trust: per-runbook settings models, every problem with its line,
`rotation-bot validate` and `rotation-bot schema`, and a JSON Schema that agrees with the models
(configs generated from the schema, and mutated, are accepted or rejected by both alike)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from pydantic import ValidationError

from bot import DATA_DIR
from bot.config import (
    SHIPPED_RUNBOOKS,
    BaseImageSettings,
    NpmFamilySettings,
    config_model,
    config_schema,
    parse_repo_config,
    validate_repo_config,
)
from bot.errors import ConfigError
from bot.runbook import DEFAULT_RUNBOOKS_DIR, load_runbooks
from bot.watchers import watch_kind
from tests.conftest import Env, bot, make_project

SCHEMA = config_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EVERY_KEY = """\
version: 1
runbooks:
  sharp:
    enabled: true
    platforms: [linux-x64]
    document: docs/pins.md
    minimum-release-age: 3d
    schedule: "0 6 * * 1-5"
    major: latest
    major-approval: true
    directories: [apps/*, "!apps/old"]
    pin: true
  base-image:
    enabled: true
    dockerfiles: [Dockerfile]
    minimum-release-age: 1d
    schedule: "0 7 * * *"
    pin-unpinned: true
    image-platforms: [linux/amd64]
verify:
  signatures: required
  provenance: if-published
  npm-audit-signatures: false
pull-requests:
  labels: [dependencies]
  reviewers: [octocat]
  assignees: [octocat]
  base: main
  draft-major: false
  rebase-when: behind-base
  max-open: 3
  automerge: true
dashboard: true
"""


def test_the_shipped_schema_is_the_models_schema() -> None:
    shipped = json.loads((DATA_DIR / "rotation-bot.schema.json").read_text(encoding="utf-8"))
    assert shipped == config_schema()
    kinds = {name: watch_kind(item) for name, item in load_runbooks(DEFAULT_RUNBOOKS_DIR).items()}
    assert kinds == SHIPPED_RUNBOOKS  # the default kinds are the shipped runbooks'


# the Draft 2020-12 keywords the schema may use (pydantic writes a constraint it cannot place,
# like `ge`, verbatim; a validator ignores it, so the schema would accept what the models reject)
KEYWORDS = {
    "$schema", "$defs", "$ref", "additionalProperties", "anyOf", "const", "default",
    "description", "enum", "items", "maxItems", "maximum", "minItems", "minimum", "pattern",
    "prefixItems", "properties", "title", "type",
}  # fmt: skip


def _keywords(node: Any, keywords: set[str]) -> set[str]:
    if isinstance(node, list):
        for item in node:
            _keywords(item, keywords)
    elif isinstance(node, dict):
        for key, value in node.items():
            keywords.add(key)
            if key in ("properties", "$defs"):
                for schema in value.values():
                    _keywords(schema, keywords)
            elif key not in ("default", "const", "enum"):
                _keywords(value, keywords)
    return keywords


def test_the_schema_speaks_only_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert _keywords(SCHEMA, set()) <= KEYWORDS


def test_every_key_that_exists_today_is_valid_where_it_belongs() -> None:
    config = parse_repo_config(EVERY_KEY)
    sharp = config.settings_for("sharp", NpmFamilySettings)
    images = config.settings_for("base-image", BaseImageSettings)
    assert sharp.major_policy == "latest" and sharp.major_approval and sharp.pin
    assert images.pin_unpinned and images.image_platforms == ("linux/amd64",)
    assert config.pull_requests.max_open == 3 and config.pull_requests.rebase_when == "behind-base"
    VALIDATOR.validate(yaml.safe_load(EVERY_KEY))
    for major in ("true", "false", "next", "latest"):
        parse_repo_config(f"runbooks:\n  sharp:\n    major: {major}\n")


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        (
            "runbooks:\n  sharp:\n    image-platforms: [linux/amd64]\n",
            [":3: unknown key runbooks.sharp.image-platforms (it is a setting of base-image)"],
        ),
        (
            "runbooks:\n  base-image:\n    platforms: [linux-x64]\n    pin: true\n",
            [
                ":3: unknown key runbooks.base-image.platforms (it is a setting of sharp)",
                ":4: unknown key runbooks.base-image.pin (it is a setting of sharp)",
            ],
        ),
        (
            "version: 1\nrunbooks:\n  esbuild: {}\npull-requests:\n  max-open: 0\n"
            "  rebase-when: sometimes\n  automerge: yes please\n",
            [
                ":3: unknown runbook 'esbuild' under runbooks (known: base-image, sharp)",
                ":5: pull-requests.max-open: Input should be greater than or equal to 1",
                ":6: pull-requests.rebase-when: input should be 'conflicted', 'behind-base' or "
                "'never'",
                ":7: pull-requests.automerge: Input should be a valid boolean",
            ],
        ),
        ("runbooks:\n  sharp:\n    schedule: every day\n", [":3: runbooks.sharp.schedule"]),
        (
            "runbooks:\n  sharp:\n    minimum-release-age: 99999999999999999\n",
            [":3: runbooks.sharp.minimum-release-age: 99999999999999999 is not a duration"],
        ),
        ("runbooks: [\n", [":2 is not valid YAML"]),
        ("- a list\n", [":1: expected a mapping at the top level"]),
    ],
)
def test_every_problem_on_its_own_line_with_the_line(text: str, problems: list[str]) -> None:
    config, found = validate_repo_config(text, source="x.yml")
    assert config is None
    assert len(found) == len(problems)
    for problem, expected in zip(found, problems, strict=True):
        assert str(problem).startswith("x.yml" + expected.split(" ", 1)[0]), str(problem)
        assert expected.split(" ", 1)[1] in str(problem) if " " in expected else True
    with pytest.raises(ConfigError, match=r"^x\.yml"):
        parse_repo_config(text, source="x.yml")


def test_a_runbook_added_as_a_yaml_file_gets_the_npm_family_model() -> None:
    kinds = {**SHIPPED_RUNBOOKS, "esbuild": "npm"}
    config = parse_repo_config("runbooks:\n  esbuild:\n    platforms: [linux-x64]\n", kinds=kinds)
    assert config.settings_for("esbuild", NpmFamilySettings).platforms == ("linux-x64",)
    _, problems = validate_repo_config(
        "runbooks:\n  esbuild:\n    dockerfiles: [Dockerfile]\n", kinds=kinds
    )
    assert [str(p) for p in problems] == [
        ".github/rotation-bot.yml:3: unknown key runbooks.esbuild.dockerfiles (it is a setting "
        "of base-image)"
    ]


def test_validate_and_schema_commands(env: Env, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text(EVERY_KEY)
    bad.write_text("runbooks:\n  sharp:\n    image-platforms: []\n    major: sometimes\n")

    valid = bot(env, "validate", str(good))
    invalid = bot(env, "validate", str(bad))
    missing = bot(env, "validate", str(tmp_path / "nope.yml"))
    printed = bot(env, "schema")

    assert valid.exit_code == 0 and "is valid" in valid.output
    assert invalid.exit_code == 2
    assert invalid.stderr.splitlines() == [
        f"{bad}:3: unknown key runbooks.sharp.image-platforms (it is a setting of base-image)",
        f"{bad}:4: runbooks.sharp.major: 'sometimes' is not one of true, false, next, latest",
    ]
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    assert json.loads(printed.stdout) == config_schema()


def test_validate_a_repository(env: Env, tmp_path: Path) -> None:
    project = tmp_path / "project"
    make_project(project, env, config="runbooks:\n  sharp:\n    dockerfiles: [x]\n", lock=False)
    result = bot(env, "validate", "--repo", str(project))
    assert result.exit_code == 2
    assert ".github/rotation-bot.yml:3: unknown key runbooks.sharp.dockerfiles" in result.stderr


# --- the schema and the models agree ------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 300)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=6,
)
KEYS = st.sampled_from(
    [
        "version",
        "runbooks",
        "verify",
        "pull-requests",
        "dashboard",
        "sharp",
        "base-image",
        "platforms",
        "dockerfiles",
        "image-platforms",
        "major",
        "max-open",
        "base",
        "minimum-release-age",
        "rebase-when",
        "automerge",
        "enabled",
        "major-approval",
        "pin",
        "signatures",
    ]
)


def _models_accept(document: Any) -> bool:
    try:
        config_model().model_validate(document)
    except ValidationError:
        return False
    return True


def _mutate(document: Any, path: list[Any], value: Any) -> Any:
    """`document` with the value at `path` (as far as it goes) replaced by `value`."""
    if not path or not isinstance(document, dict | list) or not document:
        return value
    if isinstance(document, dict):
        key = list(document)[path[0] % len(document)]
        return {**document, key: _mutate(document[key], path[1:], value)}
    index = path[0] % len(document)
    return [*document[:index], _mutate(document[index], path[1:], value), *document[index + 1 :]]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(from_schema(copy.deepcopy(SCHEMA)))
def test_configs_generated_from_the_schema_are_accepted_by_the_models(document: Any) -> None:
    assert _models_accept(document)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    from_schema(copy.deepcopy(SCHEMA)),
    st.lists(st.integers(0, 10), max_size=4),
    JSON,
    st.one_of(st.none(), st.tuples(st.lists(st.integers(0, 10), max_size=3), KEYS, JSON)),
)
def test_mutated_configs_are_accepted_or_rejected_by_both(
    document: Any, path: list[int], value: Any, added: Any
) -> None:
    changed = _mutate(document, path, value)
    if added is not None and isinstance(changed, dict):
        where, key, extra = added
        changed = _mutate(changed, where, {key: extra}) if where else {**changed, key: extra}
    assert _models_accept(changed) == VALIDATOR.is_valid(changed), changed
