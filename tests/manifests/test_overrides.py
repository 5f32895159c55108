"""Override keys in each manager's syntax → (holder, target, selector)."""

from __future__ import annotations

from bot.manifests.overrides import npm_override, pnpm_override, yarn_resolution


def test_npm_nested_objects() -> None:
    assert npm_override(("sharp",)) == (None, "sharp", "")
    assert npm_override(("sharp", ".")) == (None, "sharp", "")
    assert npm_override(("next@15", "sharp")) == ("next", "sharp", "")
    assert npm_override(("sharp@0.33", ".")) == (None, "sharp", "0.33")
    assert npm_override((".",)) is None


def test_pnpm_parent_child_selectors() -> None:
    assert pnpm_override(("sharp",)) == (None, "sharp", "")
    assert pnpm_override(("sharp@<0.34",)) == (None, "sharp", "<0.34")
    assert pnpm_override(("next>sharp",)) == ("next", "sharp", "")
    assert pnpm_override(("@scope/a@1>@img/sharp-linux-x64",)) == (
        "@scope/a",
        "@img/sharp-linux-x64",
        "",
    )
    assert pnpm_override(("next>",)) is None
    assert pnpm_override(("a", "b")) is None


def test_yarn_paths_and_descriptors() -> None:
    assert yarn_resolution(("sharp",)) == (None, "sharp", "")
    assert yarn_resolution(("**/sharp",)) == (None, "sharp", "")
    assert yarn_resolution(("astro/sharp",)) == ("astro", "sharp", "")
    assert yarn_resolution(("@scope/pkg/sharp",)) == ("@scope/pkg", "sharp", "")
    assert yarn_resolution(("sharp@npm:^0.33.4",)) == (None, "sharp", "^0.33.4")
    assert yarn_resolution(("next/@img/sharp-linux-x64",)) == ("next", "@img/sharp-linux-x64", "")
