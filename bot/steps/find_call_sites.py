"""Step `find-call-sites`: for a major rotation, list every file and line that imports or
requires the parent package, for the reviewer's call-site audit."""

from __future__ import annotations

import re

from bot import paths
from bot.errors import ManifestError
from bot.models import StepResult
from bot.steps.outputs import CallSite, CallSitesFound
from bot.steps.registry import StepContext, passed, skipped, step

SOURCE_SUFFIXES = (".js", ".cjs", ".mjs", ".jsx", ".ts", ".cts", ".mts", ".tsx")
SITE_LIMIT = 200


def call_site_pattern(package: str) -> re.Pattern[str]:
    """`require('pkg')`, `import … from 'pkg'`, `import('pkg')`, `import 'pkg'` (and subpaths)."""
    name = re.escape(package)
    return re.compile(
        rf"""(?:require\s*\(\s*|\bfrom\s*|\bimport\s*\(?\s*)(['"`]){name}(?:/[^'"`]*)?\1"""
    )


@step("find-call-sites")
def find_call_sites(ctx: StepContext) -> StepResult:
    """Scan tracked source files in the worktree for uses of the parent package."""
    if not ctx.rotation.is_major:
        return skipped("not a major rotation: no call-site audit needed")
    pattern = call_site_pattern(ctx.rotation.subject)
    sites: list[CallSite] = []
    for path in ctx.workspace.tracked_files():
        if not path.endswith(SOURCE_SUFFIXES) or "node_modules" in path.split("/"):
            continue
        try:
            text = paths.read_text(ctx.worktree, path)
        except ManifestError:
            continue  # a link (never followed), an oversized or a non-UTF-8 file: not source
        for number, line in enumerate((text or "").splitlines(), start=1):
            if pattern.search(line):
                sites.append(CallSite(path, number, line.strip()[:200]))
    ctx.outputs.call_sites = CallSitesFound(
        tuple(sites[:SITE_LIMIT]), truncated=len(sites) > SITE_LIMIT
    )
    return passed(
        f"{len(sites)} call site(s) of {ctx.rotation.subject} to audit", ctx.outputs.call_sites
    )
