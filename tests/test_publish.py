"""The PR body treats every external string as data (issue 10 #11, #13): registry metadata and
release notes cannot forge sections or markers, mention people, load images or run links."""

from __future__ import annotations

import re

from bot.models import DigestChange, Project, ProjectRotation, Rotation, Skipped
from bot.publish import code, render_body, text
from bot.runbook import DEFAULT_RUNBOOKS_DIR, load_runbook
from bot.steps.outputs import (
    BaseImagesRepinned,
    CallSite,
    CallSitesFound,
    Outputs,
    ReleaseNotesRead,
    RiskAssessed,
)
from bot.verify.risk import RiskSignal

HOSTILE = (
    "<!-- rotation-bot:sharp:9.9.9 --> </details> ## Forged section @octocat "
    "<img src=x onerror=alert(1)> [click](javascript:alert(1)) ![x](https://evil.example/x.png) "
    "<script>alert(1)</script> `tick` | pipe"
)


def _body() -> str:
    runbook = load_runbook(DEFAULT_RUNBOOKS_DIR / "sharp.yml")
    rotation = Rotation(
        runbook="sharp",
        kind="major",
        subject="sharp",
        previous_version="0.33.4",
        new_version="0.34.1",
        branch="rotation-bot/sharp-0.34.1",
        projects=(
            ProjectRotation(
                Project("", "npm", "package-lock.json"), "0.33.4", "0.34.1", (), True, ()
            ),
        ),
    )
    outputs = Outputs(
        release_notes=ReleaseNotesRead(
            url="https://github.com/lovell/sharp/releases/tag/v0.34.1",
            tag="v0.34.1",
            body=HOSTILE + "\n```\nfence escape\n```\n" + HOSTILE,
            breaking_lines=(HOSTILE,),
        ),
        risk=RiskAssessed((RiskSignal("sharp", "install-script-added", HOSTILE),)),
        call_sites=CallSitesFound((CallSite("src/a.js", 1, HOSTILE),)),
        base_images=BaseImagesRepinned(
            (
                DigestChange(
                    "Dockerfile", 1, "node", "20", None, "sha256:" + "1" * 64, HOSTILE, None
                ),
            ),
            (Skipped("Dockerfile:3", HOSTILE),),
        ),
    )
    return render_body(runbook, rotation, outputs, (), "run-1")


def _outside_code(body: str) -> str:
    """What GitHub interprets as Markdown/HTML: the body without fenced blocks and code spans
    (their content is shown as text)."""
    without_fences = re.sub(r"^(`{3,})text\n.*?^\1$", "", body, flags=re.S | re.M)
    return re.sub(r"(`+).*?\1", "", without_fences)


def test_external_text_cannot_forge_markers_sections_mentions_or_html() -> None:
    body = _body()
    live = _outside_code(body)
    assert body.count("<!-- rotation-bot") == 1
    assert body.startswith("<!-- rotation-bot:sharp:0.34.1 -->")
    assert live.count("</details>") == 1, "only the bot's own details block closes"
    assert "<img" not in live and "<script" not in live and "<!--" not in live[5:]
    assert not re.search(r"(?<!\\)\]\(javascript:", live), "an unescaped ] would form a link"
    assert not re.search(r"!(?<!\\)\[x(?<!\\)\]\(", live), "an image must not form"
    assert not re.search(r"(?<![\w`])@octocat", live), "a mention must not ping anyone"
    assert "\n## Forged section" not in body and "\n### Forged" not in body
    # a fence in the notes cannot close the bot's fence: it is longer than any run inside
    assert "fence escape" in body and "````text" in body


def test_text_and_code_helpers() -> None:
    assert text("<b>@you</b> [a](b) npm@11") == "&lt;b&gt;@\u200byou&lt;/b&gt; \\[a\\](b) npm@11"
    assert code("a`b") == "``a`b``"
    assert code("<!-- x -->") == "`<!-\u200b- x -->`"
    assert code("") == "—"
