"""Rendering: the HTML pages (Jinja2, autoescaped) and the dashboard issue's markdown.

HTML: one `Environment` with autoescape on for every template, so every string from the audit
trail (which holds what registries and repositories said) is escaped; URLs become links only
when they are http(s) (`web_url`), never `javascript:` or `data:`.  The exported run page is the
same template with the stylesheet inlined and a Content-Security-Policy `<meta>` that allows
that one stylesheet by its hash and nothing else.

Markdown (the dashboard issue): autoescape does not apply to markdown, so that environment's
`finalize` escapes every interpolated value instead — markdown punctuation is backslash-escaped
(no links, images, emphasis or HTML from a registry string), `@` cannot mention anyone and line
breaks cannot start a new block.  Only values wrapped in `Markup` (built here) pass unescaped.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from bot import markdown
from bot.audit import AuditStore
from bot.service.dashboard import chart
from bot.service.dashboard.auth import Viewer
from bot.service.dashboard.data import (
    Fleet,
    FleetQuery,
    RepositoryStatus,
    RunView,
    evidence_json,
    repository_status,
)

STATIC = ("dashboard.css", "favicon.svg")
_FIRST_COLUMNS = (
    "name",
    "package",
    "subject",
    "file",
    "line",
    "image",
    "tag",
    "version",
    "previous_version",
    "new_version",
    "status",
    "verified",
    "signal",
    "detail",
    "reason",
    "text",
    "previous_digest",
    "new_digest",
    "previous_integrity",
    "new_integrity",
)
_LABELS = {
    "entries": "Lockfile entries: versions and integrity",
    "tarballs": "Tarballs hashed",
    "signatures": "Registry signatures",
    "provenance": "Provenance: verdicts and signer identity",
    "signals": "Risk signals",
    "call_sites": "Call sites to audit",
    "changes": "Base-image digests re-pinned",
    "skipped": "Skipped, with reasons",
    "problems": "Problems found",
    "failures": "Failed checks",
    "pins": "Pins",
    "current_pins": "Current pins",
    "rotations": "Rotations planned",
    "breaking_lines": "Lines that look breaking",
    "digests": "Digests",
}


def static_file(name: str) -> bytes:
    """A file shipped in the package's `static/` directory."""
    if name not in STATIC:
        raise KeyError(name)
    return resources.files("bot.service.dashboard").joinpath("static", name).read_bytes()


def web_url(value: object) -> str | None:
    """`value` if it is an http(s) URL safe to put in an `href`, else None."""
    if not isinstance(value, str) or any(ch in value for ch in "\x00\r\n\t <>\"'`"):
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def when(moment: datetime | None) -> str:
    """`2024-05-01 06:00 UTC`, or `—`."""
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "—"


def age(moment: datetime | None, now: datetime) -> str:
    """How long ago, roughly: `3 d`, `5 h`, `12 min`."""
    if moment is None:
        return "not recorded"
    seconds = max((now - moment).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def duration(seconds: float) -> str:
    """`850 ms`, `4.2 s`, `3 min 5 s`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def short(value: object, length: int = 12) -> str:
    """A digest or hash shortened for a table (`sha256:0123456789ab…`)."""
    text = str(value or "")
    prefix = "sha256:" if text.startswith("sha256:") else ""
    body = text.removeprefix(prefix)
    return prefix + body[:length] + ("…" if len(body) > length else "")


def cell(value: object) -> str:
    """A scalar or small list/dict as one line of text for a table cell."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value) or "—"
    if isinstance(value, Mapping):
        return "; ".join(f"{key}: {cell(item)}" for key, item in value.items())
    return str(value)


def columns(rows: list[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys: identifying columns first, the rest alphabetically (the
    audit trail stores evidence with sorted keys, so their own order is lost)."""
    keys = {key for row in rows for key in row}
    first = [key for key in _FIRST_COLUMNS if key in keys]
    return first + sorted(keys - set(first))


def is_table(value: object) -> bool:
    """Whether `value` is a non-empty list of objects (rendered as a table)."""
    return (
        isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)
    )


@cache
def _html() -> Environment:
    environment = Environment(
        loader=PackageLoader("bot.service.dashboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        when=when, duration=duration, short=short, cell=cell, web_url=web_url, label=label
    )
    environment.globals.update(columns=columns, is_table=is_table, evidence_json=evidence_json)
    return environment


def label(key: str) -> str:
    """A heading for an evidence key."""
    return _LABELS.get(key, key.replace("_", " "))


def stylesheet() -> str:
    """The dashboard's CSS."""
    return static_file("dashboard.css").decode("utf-8")


def render_fleet(fleet: Fleet, query: FleetQuery, viewer: Viewer, *, runbooks: list[str]) -> str:
    """The fleet page."""
    rows = query.apply(fleet.repositories)
    return (
        _html()
        .get_template("fleet.html")
        .render(
            fleet=fleet,
            rows=rows,
            query=query,
            viewer=viewer,
            runbooks=runbooks,
            states=("ok", "failed", "incident", "running"),
            now=fleet.generated_at,
            age=lambda moment: age(moment, fleet.generated_at),
            outcomes=chart.outcome_chart(fleet.runs, now=fleet.generated_at, window=fleet.window),
            leads=chart.lead_time_chart(fleet.lead_times, now=fleet.generated_at),
            width=chart.WIDTH,
            standalone=False,
        )
    )


def render_run(view: RunView, viewer: Viewer | None, *, now: datetime) -> str:
    """The run page, served (stylesheet linked)."""
    return _run_page(view, viewer, now=now, standalone=False)


def export_run(view: RunView, *, now: datetime) -> str:
    """The run page as one self-contained HTML file: the stylesheet inlined, nothing fetched."""
    return _run_page(view, None, now=now, standalone=True)


def _run_page(view: RunView, viewer: Viewer | None, *, now: datetime, standalone: bool) -> str:
    css = stylesheet()
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return (
        _html()
        .get_template("run.html")
        .render(
            view=view,
            viewer=viewer,
            now=now,
            timeline=chart.timeline_chart(view.steps),
            width=chart.WIDTH,
            standalone=standalone,
            css=Markup(css),  # noqa: S704 - the package's own stylesheet, not input
            csp=f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
            "base-uri 'none'; form-action 'none'",
        )
    )


def render_login(*, problem: str | None, next_path: str, now: datetime) -> str:
    """The sign-in form (no data)."""
    return (
        _html()
        .get_template("login.html")
        .render(problem=problem, next_path=next_path, viewer=None, now=now, standalone=False)
    )


def render_message(title: str, message: str, *, now: datetime) -> str:
    """A page with one message (not found, off, unavailable)."""
    return (
        _html()
        .get_template("message.html")
        .render(title=title, message=message, viewer=None, now=now, standalone=False)
    )


# --- markdown ---------------------------------------------------------------------------------


def markdown_text(value: object) -> str:
    """`value` as inert markdown text (`bot.markdown.text`); markup the templates built passes."""
    if isinstance(value, Markup):
        return str(value)
    return markdown.text("" if value is None else value)


def markdown_link(text: object, url: object) -> Markup:
    """`[text](url)` for an http(s) URL; anything else is shown, as code, never linked."""
    target = web_url(url)
    if target is None:
        shown = f" {markdown_code(url)}" if url else ""
        return Markup(f"{markdown_text(text)}{shown}")  # noqa: S704 - escaped above
    return Markup(f"[{markdown_text(text)}](<{quote(target, safe=':/?#[]@!$&*+,;=%~-._')}>)")  # noqa: S704


def markdown_code(value: object) -> Markup:
    """`value` as one inline code span that nothing inside can close (`bot.markdown.code`)."""
    return Markup(markdown.code(value))  # noqa: S704 - a code span renders nothing as markup


@cache
def _markdown() -> Environment:
    environment = Environment(
        loader=PackageLoader("bot.service.dashboard", "templates"),
        autoescape=False,  # noqa: S701 - markdown: `finalize` escapes every value instead
        finalize=markdown_text,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(
        link=markdown_link,
        code=markdown_code,
        short=short,
        day=lambda m: f"{m:%Y-%m-%d}" if m else "—",
    )
    return environment


def render_issue(status: RepositoryStatus, runbooks: list[str]) -> str:
    """The dependency dashboard issue's body for one repository (deterministic: no clock)."""
    body = _markdown().get_template("issue.md").render(status=status, runbooks=runbooks)
    return re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"


def issue_body(store: AuditStore, repo: str, *, runbooks: list[str], now: datetime) -> str | None:
    """The dashboard issue's body for `repo` as the audit trail records it (None: no runs)."""
    status = repository_status(store, repo, now=now)
    return None if status is None else render_issue(status, runbooks)
