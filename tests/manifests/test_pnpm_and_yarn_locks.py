"""pnpm-lock.yaml (v6, v9) and yarn.lock (Yarn 1, Berry) into `LockedTree`: packages, edges,
platform fields, integrity vs Yarn's own checksum, and one-line refusals.  Shapes follow what
pnpm 8/9/10, Yarn 1.22 and Yarn 4.18 write (tests/managers regenerates real ones)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import BotError, ManifestError
from bot.manifests.pnpm_lock import parse_pnpm_lock, split_key
from bot.manifests.yaml_document import YamlDocument
from bot.manifests.yarn_lock import (
    berry_lock_version,
    is_berry_lock,
    parse_berry_lock,
    parse_classic_lock,
)
from tests.test_hostile_inputs import SETTINGS

SHA = "sha512-" + "A" * 86 + "=="
PNPM_V9 = f"""lockfileVersion: '9.0'

settings:
  autoInstallPeers: true
  excludeLinksFromLockfile: false

overrides:
  next>sharp: ^0.33.6

importers:

  .:
    dependencies:
      next:
        specifier: 15.0.0
        version: 15.0.0(react@19.0.0)
      string-width-cjs:
        specifier: npm:string-width@^4.2.0
        version: string-width@4.2.3

  packages/web:
    dependencies:
      lib:
        specifier: workspace:*
        version: link:../lib

packages:

  '@img/sharp-linuxmusl-x64@0.33.6':
    resolution: {{integrity: {SHA}}}
    cpu: [x64]
    os: [linux]
    libc: [musl]

  next@15.0.0:
    resolution: {{integrity: sha512-next}}

  sharp@0.33.6:
    resolution: {{integrity: sha512-sharp}}
    engines: {{node: ^18.17.0 || ^20.3.0 || >=21.0.0}}

  string-width@4.2.3:
    resolution: {{integrity: sha512-sw}}

snapshots:

  '@img/sharp-linuxmusl-x64@0.33.6':
    optional: true

  next@15.0.0(react@19.0.0):
    optionalDependencies:
      sharp: 0.33.6

  sharp@0.33.6:
    optionalDependencies:
      '@img/sharp-linuxmusl-x64': 0.33.6

  string-width@4.2.3: {{}}
"""
# pnpm 8's lockfile v6: one `packages:` map keyed `/name@version(peers)`, a single project's
# dependencies at the top level
PNPM_V6 = f"""lockfileVersion: '6.0'

dependencies:
  sharp:
    specifier: ^0.33.2
    version: 0.33.2

packages:

  /@img/sharp-linux-x64@0.33.2:
    resolution: {{integrity: {SHA}}}
    engines: {{glibc: '>=2.26', node: ^18.17.0 || ^20.3.0 || >=21.0.0}}
    cpu: [x64]
    os: [linux]
    requiresBuild: true
    dev: false
    optional: true

  /sharp@0.33.2:
    resolution: {{integrity: sha512-sharp}}
    requiresBuild: true
    optionalDependencies:
      '@img/sharp-linux-x64': 0.33.2
    dev: false
"""


def test_pnpm_v9_packages_snapshots_and_importers() -> None:
    tree = parse_pnpm_lock(PNPM_V9, source="web/pnpm-lock.yaml")

    assert tree.importers == (".", "packages/web")
    (binary,) = tree.find("@img/sharp-linuxmusl-x64")
    assert (binary.key, binary.integrity, binary.os, binary.cpu, binary.libc) == (
        "@img/sharp-linuxmusl-x64@0.33.6",
        SHA,
        ("linux",),
        ("x64",),
        ("musl",),
    )
    (next_copy,) = tree.find("next")
    assert next_copy.key == "next@15.0.0(react@19.0.0)" and next_copy.version == "15.0.0"
    assert [e.holder for e in tree.dependents("sharp@0.33.6")] == ["next@15.0.0(react@19.0.0)"]
    edges = {(e.holder, e.name): e.target for e in tree.edges}
    assert edges[(".", "string-width-cjs")] == "string-width@4.2.3"  # an alias
    assert edges[("packages/web", "lib")] is None  # a workspace link is no package
    assert tree.closure(["next@15.0.0(react@19.0.0)"]) >= {
        "sharp@0.33.6",
        "@img/sharp-linuxmusl-x64@0.33.6",
    }


def test_pnpm_v6_names_packages_like_v9() -> None:
    tree = parse_pnpm_lock(PNPM_V6)

    assert sorted(p.key for p in tree.packages) == ["@img/sharp-linux-x64@0.33.2", "sharp@0.33.2"]
    assert [(e.holder, e.spec, e.target) for e in tree.dependents("sharp@0.33.2")] == [
        (".", "^0.33.2", "sharp@0.33.2")
    ]
    (binary,) = tree.find("@img/sharp-linux-x64")
    assert binary.integrity == SHA and binary.cpu == ("x64",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lockfileVersion: 5.4\n", "pnpm-lock.yaml has lockfileVersion '5.4'; rotation-bot reads"),
        ("- a list\n", "pnpm-lock.yaml must hold a YAML mapping; regenerate it with pnpm install"),
        ("lockfileVersion: '9.0'\npackages: {a: [\n", "pnpm-lock.yaml is not valid YAML"),
        (
            "lockfileVersion: '9.0'\nsnapshots:\n  nameonly: {}\n",
            "'nameonly' is not a package key; regenerate it with pnpm install and commit it",
        ),
    ],
)
def test_bad_pnpm_lockfiles_are_one_line_errors_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as error:
        parse_pnpm_lock(text)
    assert message in error.value.message and "\n" not in error.value.message


def test_split_key() -> None:
    assert split_key("@img/sharp-linux-x64@0.33.5") == ("@img/sharp-linux-x64", "0.33.5")
    assert split_key("/next@15.0.0(react@19.0.0)(sharp@0.33.5)") == ("next", "15.0.0")


CLASSIC = f"""# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.
# yarn lockfile v1


"@img/sharp-linux-x64@0.33.6":
  version "0.33.6"
  resolved "http://127.0.0.1:4873/@img/sharp-linux-x64/-/sharp-linux-x64-0.33.6.tgz#ab"
  integrity {SHA}

miniflare@4.20260911.0:
  version "4.20260911.0"
  integrity sha512-mf
  dependencies:
    sharp "0.33.4"

sharp@0.33.4, sharp@^0.33.6:
  version "0.33.6"
  integrity sha512-sharp
  optionalDependencies:
    "@img/sharp-linux-x64" "0.33.6"

"string-width-cjs@npm:string-width@^4.2.0":
  version "4.2.3"
  integrity sha512-sw
"""


def test_yarn1_entries_descriptors_and_workspace_edges_from_the_manifests() -> None:
    tree = parse_classic_lock(
        CLASSIC,
        manifests={"": {"dependencies": {"sharp": "^0.33.6"}}, "packages/app": {}},
    )

    assert not tree.records_platforms
    assert tree.importers == (".", "packages/app")
    (binary,) = tree.find("@img/sharp-linux-x64")
    assert (binary.key, binary.integrity, binary.os) == ("@img/sharp-linux-x64@0.33.6", SHA, ())
    assert {(e.holder, e.spec) for e in tree.dependents("sharp@0.33.6")} == {
        ("miniflare@4.20260911.0", "0.33.4"),  # resolved through the resolution's descriptor
        (".", "^0.33.6"),
    }
    assert [p.key for p in tree.find("string-width")] == ["string-width@4.2.3"]
    assert "@img/sharp-linux-x64@0.33.6" in tree.closure(["miniflare@4.20260911.0"])


def test_yarn1_refusals_name_the_file_and_line() -> None:
    with pytest.raises(
        ManifestError, match=r"^yarn.lock:3: cannot read .*; regenerate it with yarn"
    ):
        parse_classic_lock('a@1:\n  version "1"\n  "unterminated\n')
    with pytest.raises(ManifestError, match="has no version; regenerate it with yarn install"):
        parse_classic_lock("a@1:\n  resolved x\n")
    with pytest.raises(ManifestError, match="is a Yarn Berry lockfile"):
        parse_classic_lock("__metadata:\n  version: 8\n")


BERRY = """# This file is generated by running "yarn install" inside your project.
# Manual changes might be lost - proceed with caution!

__metadata:
  version: 10
  cacheKey: 10c0

"@img/sharp-linuxmusl-x64@npm:0.33.6":
  version: 0.33.6
  resolution: "@img/sharp-linuxmusl-x64@npm:0.33.6"
  conditions: os=linux & cpu=x64 & libc=musl
  languageName: node
  linkType: hard

"next@npm:^15.5.14":
  version: 15.5.21
  resolution: "next@npm:15.5.21"
  dependencies:
    sharp: "npm:^0.33.4"
  checksum: 10c0/e26e
  languageName: node
  linkType: hard

"sharp@npm:0.33.6":
  version: 0.33.6
  resolution: "sharp@npm:0.33.6"
  dependencies:
    "@img/sharp-linuxmusl-x64": "npm:0.33.6"
  dependenciesMeta:
    "@img/sharp-linuxmusl-x64":
      optional: true
  checksum: 10c0/7608
  languageName: node
  linkType: hard

"web@workspace:.":
  version: 0.0.0-use.local
  resolution: "web@workspace:."
  dependencies:
    next: "npm:^15.5.14"
    sharp: "npm:^0.33.6"
  languageName: unknown
  linkType: soft
"""


def test_berry_conditions_checksums_workspaces_and_resolutions() -> None:
    assert is_berry_lock(BERRY) and not is_berry_lock(CLASSIC)
    assert berry_lock_version(BERRY) == 10
    tree = parse_berry_lock(BERRY)

    assert tree.importers == (".",)
    (binary,) = tree.find("@img/sharp-linuxmusl-x64")
    assert (binary.integrity, binary.checksum, binary.os, binary.cpu, binary.libc) == (
        None,  # Berry records no npm integrity
        None,  # update-lockfile writes no checksum for conditional packages
        ("linux",),
        ("x64",),
        ("musl",),
    )
    (sharp,) = tree.find("sharp")
    assert (sharp.key, sharp.checksum) == ("sharp@npm:0.33.6", "10c0/7608")
    # next's `^0.33.4` descriptor is not a key: a resolution rewrote it; it reaches the one copy
    assert {e.holder for e in tree.dependents(sharp.key)} == {".", "next@npm:15.5.21"}
    assert tree.signature()["sharp@npm:0.33.6"] == ("0.33.6", None, "10c0/7608")


def test_berry_refusals() -> None:
    with pytest.raises(ManifestError, match="not a Yarn Berry lockfile"):
        parse_berry_lock(CLASSIC)
    with pytest.raises(ManifestError, match="has no resolution; regenerate it with yarn install"):
        parse_berry_lock("__metadata:\n  version: 8\na@npm:1:\n  version: 1\n")
    with pytest.raises(ManifestError, match=r"uses a YAML alias \(\*x\)"):
        parse_berry_lock("__metadata: &x {version: 8}\nb: *x\n")


LOCK_PIECES = st.sampled_from(
    [
        "lockfileVersion: '9.0'\n", "lockfileVersion: '6.0'\n", "lockfileVersion: 9\n",
        "importers:\n", "  .:\n", "    dependencies:\n", "      sharp:\n",
        "        specifier: ^0.33.4\n", "        version: 0.33.4\n", "        version: [1]\n",
        "packages:\n", "snapshots:\n", "  sharp@0.33.4:\n", "  /sharp@0.33.4:\n", "  '@x':\n",
        "    resolution: {integrity: sha512-x}\n", "    resolution: 7\n", "    os: linux\n",
        "    dependencies: {a: 1}\n", "    optionalDependencies: [a]\n", "  sharp: null\n",
        "__metadata:\n", "  version: 8\n", '"sharp@npm:^0.33.4, sharp@npm:0.33.4":\n',
        '  resolution: "sharp@npm:0.33.4"\n', "  conditions: os=linux & libc\n",
        "  checksum: 10c0/ab\n", "# yarn lockfile v1\n", 'sharp@^0.33.4, "sharp@0.33.4":\n',
        '  version "0.33.4"\n', "  integrity sha512-x\n", "  optionalDependencies:\n",
        '    "@img/sharp-linux-x64" "0.33.4"\n', "&a [*a]\n", "- - -\n", "{{\n", ": :\n", "\t\n",
    ]
)  # fmt: skip


@SETTINGS
@given(pieces=st.lists(LOCK_PIECES, max_size=14), noise=st.text(max_size=40))
def test_hostile_pnpm_and_yarn_files_parse_or_fail_in_one_line(
    pieces: list[str], noise: str
) -> None:
    text = "".join(pieces) + noise
    for parse in (parse_pnpm_lock, parse_classic_lock, parse_berry_lock):
        try:
            parse(text)
        except BotError as error:
            assert "\n" not in error.message
    try:
        YamlDocument.parse(text, source="pnpm-workspace.yaml")
    except BotError as error:
        assert "\n" not in error.message
