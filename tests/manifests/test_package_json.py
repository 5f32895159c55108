"""package.json edits keep every byte they do not change."""

from __future__ import annotations

import json

import pytest

from bot.errors import ManifestError
from bot.manifests.package_json import (
    PackageJson,
    apply_edits,
    insert_member,
    replace_values,
    respec,
)
from bot.models import ManifestEdit

TABBED = '{\n\t"name": "app",\n\t"dependencies": {"sharp": "^0.33.4"},\n\t"overrides": {\n\t\t"@img/sharp-linux-x64": "0.33.4"\n\t}\n}'


def test_replace_keeps_indentation_order_and_missing_trailing_newline() -> None:
    document = PackageJson.parse(TABBED)
    text = replace_values(
        document,
        {("overrides", "@img/sharp-linux-x64"): "0.33.5", ("dependencies", "sharp"): "^0.33.5"},
    )
    assert text == TABBED.replace('"0.33.4"', '"0.33.5"').replace("^0.33.4", "^0.33.5")


def test_insert_member_uses_the_siblings_indentation() -> None:
    document = PackageJson.parse(TABBED)
    text = insert_member(document, ("overrides",), "@img/sharp-libvips-linux-x64", "1.0.4")
    assert (
        '\t\t"@img/sharp-linux-x64": "0.33.4",\n\t\t"@img/sharp-libvips-linux-x64": "1.0.4"\n\t}'
        in text
    )
    empty = PackageJson.parse('{\n  "overrides": {}\n}\n')
    assert insert_member(empty, ("overrides",), "a", "1.0.0") == (
        '{\n  "overrides": {\n    "a": "1.0.0"\n  }\n}\n'
    )


def test_nested_overrides_and_crlf_are_found_and_kept() -> None:
    text = '{\r\n  "dependencies": {"sharp": "0.33.4"},\r\n  "overrides": {"sharp": {"@img/sharp-linux-x64": "0.33.4"}}\r\n}\r\n'
    document = PackageJson.parse(text)
    places = list(document.strings_under(("overrides",)))
    assert places == [(("overrides", "sharp", "@img/sharp-linux-x64"), "0.33.4")]
    new = replace_values(document, {places[0][0]: "0.33.5"})
    assert new == text.replace(
        '"@img/sharp-linux-x64": "0.33.4"', '"@img/sharp-linux-x64": "0.33.5"'
    )


@pytest.mark.parametrize("text", ['{"a": 1,}', '{"a": 1} x', "[1]", '{"a": 1, "a": 2}'])
def test_malformed_or_ambiguous_json_is_refused(text: str) -> None:
    with pytest.raises(ManifestError, match="package.json"):
        PackageJson.parse(text)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0.33.4", "0.33.5"),
        ("^0.33.4", "^0.33.5"),
        ("~0.33.4", "~0.33.5"),
        ("=0.33.4", "0.33.5"),
        ("v0.33.4", "0.33.5"),
        (">=0.33.0 <0.34", None),
        ("$sharp", None),
        ("latest", None),
    ],
)
def test_respec_keeps_the_operator_of_simple_specs_only(spec: str, expected: str | None) -> None:
    assert respec(spec, "0.33.5") == expected


TABS_NO_NEWLINE = '{\n\t"name": "site",\n\t"dependencies": {\n\t\t"sharp": "^0.33.4"\n\t},\n\t"allowScripts": {\n\t\t"sharp@0.33.4": true\n\t}\n}'


def test_apply_edits_values_keys_and_a_new_pin_block_in_the_file_s_own_style() -> None:
    pins = {"@img/sharp-linux-x64": "0.33.5", "@img/sharp-libvips-linux-x64": "1.0.4"}
    text = apply_edits(
        TABS_NO_NEWLINE,
        [
            ManifestEdit("package.json", ("dependencies", "sharp"), "value", "^0.33.4", "^0.33.5"),
            ManifestEdit(
                "package.json",
                ("allowScripts", "sharp@0.33.4"),
                "key",
                "sharp@0.33.4",
                "sharp@0.33.5",
            ),
            ManifestEdit("package.json", ("overrides",), "insert", "", json.dumps(pins)),
        ],
        source="package.json",
    )
    assert text == (
        '{\n\t"name": "site",\n\t"dependencies": {\n\t\t"sharp": "^0.33.5"\n\t},\n'
        '\t"allowScripts": {\n\t\t"sharp@0.33.5": true\n\t},\n'
        '\t"overrides": {\n\t\t"@img/sharp-linux-x64": "0.33.5",\n'
        '\t\t"@img/sharp-libvips-linux-x64": "1.0.4"\n\t}\n}'
    )


def test_apply_edits_refuses_a_value_that_moved_since_planning() -> None:
    with pytest.raises(ManifestError, match="dependencies.sharp is no longer '\\^0.33.3'"):
        apply_edits(
            TABS_NO_NEWLINE,
            [
                ManifestEdit(
                    "package.json", ("dependencies", "sharp"), "value", "^0.33.3", "^0.33.5"
                )
            ],
            source="package.json",
        )
