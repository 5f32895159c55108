"""Step `find-call-sites`: for a major rotation, list every file and line that imports or
requires the parent package, for the reviewer's call-site audit."""

from __future__ import annotations

import re

from bot.models import StepResult
from bot.steps.registry import StepContext, passed, skipped, step

SOURCE_SUFFIXES = (".js", ".cjs", ".mjs", ".jsx", ".ts", ".cts", ".mts", ".tsx")
FILE_LIMIT = 1024 * 1024
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
    sites: list[dict[str, object]] = []
    for path in ctx.workspace.tracked_files():
        if not path.endswith(SOURCE_SUFFIXES) or "node_modules/" in path:
            continue
        file = ctx.worktree / path
        if not file.is_file() or file.stat().st_size > FILE_LIMIT:
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if pattern.search(line):
                sites.append({"file": path, "line": number, "text": line.strip()[:200]})
    return passed(
        f"{len(sites)} call site(s) of {ctx.rotation.subject} to audit",
        call_sites=sites[:SITE_LIMIT],
        truncated=len(sites) > SITE_LIMIT,
    )
