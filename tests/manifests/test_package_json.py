"""package.json edits keep every byte they do not change."""

from __future__ import annotations

import pytest

from bot.errors import ManifestError
from bot.manifests.package_json import PackageJson, bump_spec, insert_member, replace_values

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
    places = document.override_pins({"@img/sharp-linux-x64"})
    assert places == {
        "@img/sharp-linux-x64": [(("overrides", "sharp", "@img/sharp-linux-x64"), "0.33.4")]
    }
    new = replace_values(document, {places["@img/sharp-linux-x64"][0][0]: "0.33.5"})
    assert new == text.replace(
        '"@img/sharp-linux-x64": "0.33.4"', '"@img/sharp-linux-x64": "0.33.5"'
    )


@pytest.mark.parametrize("text", ['{"a": 1,}', '{"a": 1} x', "[1]", '{"a": 1, "a": 2}'])
def test_malformed_or_ambiguous_json_is_refused(text: str) -> None:
    with pytest.raises(ManifestError, match="package.json"):
        PackageJson.parse(text)


def test_pins_must_be_exact_and_agree() -> None:
    ranged = PackageJson.parse('{"overrides": {"@img/x": "^1.0.0"}}')
    with pytest.raises(ManifestError, match="not an exact version"):
        ranged.pins({"@img/x"})
    split = PackageJson.parse('{"overrides": {"@img/x": "1.0.0", "sharp": {"@img/x": "1.0.1"}}}')
    with pytest.raises(ManifestError, match="make them agree"):
        split.pins({"@img/x"})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0.33.4", "0.33.5"),
        ("^0.33.4", "^0.33.5"),
        ("~0.33.4", "~0.33.5"),
        ("=0.33.4", "=0.33.5"),
        ("v0.33.4", "0.33.5"),
    ],
)
def test_bump_spec_keeps_the_operator(spec: str, expected: str) -> None:
    assert bump_spec(spec, "0.33.5", source="package.json", name="sharp") == expected


def test_bump_spec_refuses_complex_ranges() -> None:
    with pytest.raises(ManifestError, match="rewrites exact, \\^ and ~ specs only"):
        bump_spec(">=0.33.0 <0.34", "0.33.5", source="package.json", name="sharp")
