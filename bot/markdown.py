"""External text in Markdown (pull-request bodies, issues): always data, never markup.

One place for it: the proposal renderer and the dashboard issue both use these.  `text` escapes
HTML and the Markdown that could form emphasis, code, links, images or table cells, and stops
`@mentions`; `code` and `code_block` show text verbatim in a code span or fence that nothing
inside can close; no helper ever emits a `<!-- … -->` comment from external text.
"""

from __future__ import annotations

import re

# what can start emphasis, code, a link or an image, or end a table cell (< > & become entities)
_MARKDOWN = re.compile(r"([\\`*_\[\]|])")
# GitHub links @name only when no word character precedes it (npm@11 is no mention)
_MENTION = re.compile(r"(?<![\w`])@(?=[A-Za-z0-9])")


def text(value: object) -> str:
    """External text for a Markdown line: HTML-escaped, Markdown syntax escaped, mentions and
    comment markers neutralised, on one line."""
    raw = " ".join(str(value).split())
    escaped = raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = _MARKDOWN.sub(r"\\\1", escaped)
    return _MENTION.sub("@\u200b", escaped)


def code(value: object) -> str:
    """External text as an inline code span (never interpreted), one line."""
    raw = " ".join(str(value).split()).replace("<!--", "<!-\u200b-")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", raw)), default=0) + 1)
    pad = " " if raw.startswith("`") or raw.endswith("`") else ""
    return f"{fence}{pad}{raw}{pad}{fence}" if raw else "—"


def code_block(value: str) -> list[str]:
    """External multi-line text as a fenced block (no HTML, links, images or mentions)."""
    body = value.replace("<!--", "<!-\u200b-")
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    return [f"{fence}text", *body.splitlines(), fence]
