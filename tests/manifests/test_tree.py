"""Key-path look-ups shared by package.json and the YAML files: a missing step or a step into
a non-mapping is None, string leaves come with their paths, YAML's non-string keys are named as
strings, lists are not entered."""

from __future__ import annotations

from bot.manifests.package_json import PackageJson
from bot.manifests.tree import strings_under, value_at
from bot.manifests.yaml_document import YamlDocument


def test_value_at_follows_mappings_only() -> None:
    data = {"overrides": {"sharp": "0.33.5", "list": ["a"]}}

    assert value_at(data, ("overrides", "sharp")) == "0.33.5"
    assert value_at(data, ()) is data
    assert value_at(data, ("overrides", "missing")) is None
    assert value_at(data, ("overrides", "sharp", "deeper")) is None
    assert value_at(data, ("overrides", "list", "0")) is None


def test_strings_under_yields_string_leaves_with_paths_and_skips_lists() -> None:
    data = {"a": "1", "b": {"c": "2", "d": 3, "e": ["4"]}, 5: "6"}

    assert list(strings_under(data, ("root",))) == [
        (("root", "a"), "1"),
        (("root", "b", "c"), "2"),
        (("root", "5"), "6"),
    ]
    assert list(strings_under("leaf", ())) == []


def test_both_documents_answer_alike() -> None:
    yaml_document = YamlDocument.parse(
        "overrides:\n  sharp: 0.33.5\n  '1': x\n  nested:\n    2: y\n", source="f.yaml"
    )
    json_document = PackageJson.parse(
        '{"overrides": {"sharp": "0.33.5", "1": "x", "nested": {"2": "y"}}}'
    )

    for document in (yaml_document, json_document):
        assert document.get(("overrides", "sharp")) == "0.33.5"
        assert list(document.strings_under(("overrides",))) == [
            (("overrides", "sharp"), "0.33.5"),
            (("overrides", "1"), "x"),
            (("overrides", "nested", "2"), "y"),
        ]
