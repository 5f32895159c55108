"""`rotation-bot demo`: a sample repository one sharp patch behind, ready to rotate.

The sample pins sharp 0.33.4 and its four linux binaries exactly, carries a lockfile generated
by npm against the configured registry (the public one by default), a pin-table document, a
sharp call site and a Dockerfile, and is committed to git on `main`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import git

from bot.errors import UsageError
from bot.managers.base import Tool
from bot.managers.npm import Npm
from bot.shell import run
from bot.sources.npm.settings import isolated_npm_environment, load_npm_settings

SHARP = "0.33.4"
PINS = {
    "@img/sharp-linux-x64": "0.33.4",
    "@img/sharp-linuxmusl-x64": "0.33.4",
    "@img/sharp-libvips-linux-x64": "1.0.2",
    "@img/sharp-libvips-linuxmusl-x64": "1.0.2",
}
CONFIG = """\
# rotation-bot configuration for the demo repository.
version: 1
runbooks:
  sharp:
    document: docs/supply-chain.md
verify:
  # The npm registry reachable from the demo machine may be a mirror that strips
  # dist.signatures and serves no /-/npm/v1/keys; "if-published" records such a registry as
  # "not verifiable" instead of failing. Production repositories keep the default
  # ("required" for registry.npmjs.org).
  signatures: if-published
"""
DOCUMENT = """\
# Supply-chain pins

| Package | Version |
| --- | --- |
""" + "".join(f"| `{name}` | {version} |\n" for name, version in {"sharp": SHARP, **PINS}.items())
SOURCE = """\
const sharp = require('sharp');

module.exports = async function thumbnail(input) {
  return sharp(input).resize(200).webp().toBuffer();
};
"""
NODE_DIGEST = "sha256:9e38d3d4117da74a643f67041c83914480b335c3bd44d37ccf5b5ad86cd715d1"
DOCKERFILE = f"""\
# syntax=docker/dockerfile:1
ARG NODE=node:20.11.0-alpine3.19@{NODE_DIGEST}
FROM ${{NODE}} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts

FROM ${{NODE}}
COPY --from=build /app /app
"""


def _package_json() -> str:
    manifest = {
        "name": "rotation-bot-demo",
        "version": "1.0.0",
        "private": True,
        "dependencies": {"sharp": SHARP},
        "overrides": dict(PINS),
    }
    return json.dumps(manifest, indent=2) + "\n"


def build_sample_repository(directory: Path | None, environ: Mapping[str, str]) -> Path:
    """Create (in `directory` or a temp dir) and commit the demo repository; returns its path."""
    path = directory or Path(tempfile.mkdtemp(prefix="rotation-bot-demo-"))
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise UsageError(f"{path} is not empty; pick an empty or new directory for the demo")
    files = {
        "package.json": _package_json(),
        ".github/rotation-bot.yml": CONFIG,
        "docs/supply-chain.md": DOCUMENT,
        "src/thumbnail.js": SOURCE,
        "Dockerfile": DOCKERFILE,
        ".gitignore": "node_modules/\n",
    }
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="rotation-bot-demo-npm-") as scratch:
        env = isolated_npm_environment(
            environ,
            load_npm_settings(environ),
            userconfig=Path(scratch) / "npmrc",
            cache=Path(scratch) / "cache",
            omit_resolved=False,
        )
        host_npm = Tool("npm", "host", ("npm",))  # the sample's own history: any npm 7+
        run(Npm().regenerate_argv(host_npm), cwd=path, env=env, timeout=600)
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "Demo Developer")
        config.set_value("user", "email", "demo@example.invalid")
    repo.git.add("--all")
    repo.git.commit("-m", "Sample app pinned to sharp 0.33.4", "--no-verify")
    return path
