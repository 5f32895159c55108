"""YAML edits keep everything but the changed bytes: quoting style, comments, key order, list
style (pnpm-workspace.yaml as immich writes it), and refuse what they cannot do in place."""

from __future__ import annotations

import pytest

from bot.errors import ManifestError
from bot.manifests.yaml_document import YamlDocument, apply_yaml_edits, render_scalar
from bot.models import ManifestEdit

WORKSPACE = """packages:
  - server
  - web
# pins for the image stack
overrides:
  canvas: 2.11.2
  sharp: ^0.33.5   # keep in step with server
  'next>sharp': '^0.33.5'
  "@img/sharp-linux-x64": "0.33.5"
onlyBuiltDependencies:
  - sharp
"""


def edit(location: tuple[str, ...], previous: str, new: str, kind: str = "value") -> ManifestEdit:
    return ManifestEdit("pnpm-workspace.yaml", location, kind, previous, new)  # type: ignore[arg-type]


def test_values_change_in_place_in_their_own_quoting() -> None:
    result = apply_yaml_edits(
        WORKSPACE,
        [
            edit(("overrides", "sharp"), "^0.33.5", "^0.33.6"),
            edit(("overrides", "next>sharp"), "^0.33.5", "^0.33.6"),
            edit(("overrides", "@img/sharp-linux-x64"), "0.33.5", "0.33.6"),
        ],
        source="pnpm-workspace.yaml",
    )

    assert result == WORKSPACE.replace("sharp: ^0.33.5   #", "sharp: ^0.33.6   #").replace(
        "'^0.33.5'", "'^0.33.6'"
    ).replace('"0.33.5"', '"0.33.6"')


def test_inserts_follow_the_siblings_indentation_and_create_missing_blocks() -> None:
    result = apply_yaml_edits(
        WORKSPACE,
        [
            edit(("overrides", "@img/sharp-linuxmusl-x64"), "", "0.33.6", "insert"),
            edit(("catalog",), "", '{"sharp": "0.33.6"}', "insert"),
        ],
        source="pnpm-workspace.yaml",
    )

    assert (
        result
        == WORKSPACE.replace('"0.33.5"\n', "\"0.33.5\"\n  '@img/sharp-linuxmusl-x64': 0.33.6\n")
        + "catalog:\n  sharp: 0.33.6\n"
    )


def test_key_rename_keeps_the_value() -> None:
    text = "allowBuilds:\n  sharp@0.33.5: true\n  esbuild: true\n"
    result = apply_yaml_edits(
        text,
        [
            ManifestEdit(
                "w.yaml", ("allowBuilds", "sharp@0.33.5"), "key", "sharp@0.33.5", "sharp@0.33.6"
            )
        ],
        source="w.yaml",
    )
    assert result == text.replace("sharp@0.33.5", "sharp@0.33.6")


def test_refusals_name_the_file() -> None:
    with pytest.raises(ManifestError, match=r"pnpm-workspace.yaml: overrides.sharp is no longer"):
        apply_yaml_edits(
            WORKSPACE,
            [edit(("overrides", "sharp"), "^0.33.4", "^0.33.6")],
            source="pnpm-workspace.yaml",
        )
    with pytest.raises(ManifestError, match="is a flow mapping"):
        apply_yaml_edits(
            "overrides: {sharp: 0.33.5}\n",
            [edit(("overrides", "x"), "", "1", "insert")],
            source="pnpm-workspace.yaml",
        )
    with pytest.raises(ManifestError, match="must hold a YAML mapping"):
        YamlDocument.parse("- a\n", source="pnpm-workspace.yaml")


@pytest.mark.parametrize(
    ("value", "style", "rendered"),
    [
        ("^0.33.6", None, "^0.33.6"),
        ("1.0", None, "'1.0'"),  # plain would read back as a float
        ("yes", None, "'yes'"),
        ("@img/sharp-linux-x64", None, "'@img/sharp-linux-x64'"),
        ("0.33.6", '"', '"0.33.6"'),
        ("it's", "'", "'it''s'"),
    ],
)
def test_render_scalar_reads_back_as_the_same_string(
    value: str, style: str | None, rendered: str
) -> None:
    assert render_scalar(value, style) == rendered


def test_insert_before_an_indented_sibling_lands_inside_the_right_mapping() -> None:
    text = (
        "packageExtensions:\n  nestjs-kysely:\n    dependencies:\n      tslib: '*'\n"
        "  sharp:\n    dependencies:\n      node-gyp: '*'\nshamefullyHoist: false\n"
    )
    result = apply_yaml_edits(
        text,
        [
            edit(
                ("packageExtensions", "nestjs-kysely", "dependencies", "a"), "", "1.0.0", "insert"
            ),
            edit(("packageExtensions", "sharp", "dependencies", "b"), "", "2.0.0", "insert"),
        ],
        source="pnpm-workspace.yaml",
    )
    assert result == text.replace("tslib: '*'\n", "tslib: '*'\n      a: 1.0.0\n").replace(
        "node-gyp: '*'\n", "node-gyp: '*'\n      b: 2.0.0\n"
    )
