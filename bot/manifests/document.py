"""A human document's pin table (markdown): re-baseline versions and integrity values.

Pure text in, text out.  Only table rows (`| … |`) that name a pinned package in a cell are
touched, and in them only the old version and old integrity are replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class RowChange:
    """What to replace in the rows of one package."""

    name: str
    previous_version: str | None
    new_version: str
    previous_integrity: str | None = None
    new_integrity: str | None = None


def _names_in(row: str) -> set[str]:
    return {cell.strip().strip("`*_ ") for cell in row.strip().strip("|").split("|")}


def rebaseline(text: str, changes: list[RowChange]) -> tuple[str, list[str]]:
    """The document with each package's table rows updated, and the names that were updated."""
    by_name = {change.name: change for change in changes}
    updated: list[str] = []
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            continue
        for name in _names_in(line) & set(by_name):
            change = by_name[name]
            new_line = line
            if change.previous_version and change.previous_version != change.new_version:
                new_line = re.sub(
                    rf"(?<![\w.-]){re.escape(change.previous_version)}(?![\w.-])",
                    change.new_version,
                    new_line,
                )
            if change.previous_integrity and change.new_integrity:
                new_line = new_line.replace(change.previous_integrity, change.new_integrity)
            if new_line != line:
                lines[index] = new_line
                updated.append(name)
    return "".join(lines), sorted(set(updated))
