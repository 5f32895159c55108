"""What a package manager's failure or warning looks like in the output and the audit record."""

from __future__ import annotations

from bot.steps.regenerate_lockfile import tool_messages

# npm 11.19.1's stderr for a peer conflict, as captured from a real run (paths shortened)
ERESOLVE = """npm error code ERESOLVE
npm error ERESOLVE unable to resolve dependency tree
npm error
npm error While resolving: a@1.0.0
npm error Found: react@19.1.0
npm error node_modules/react
npm error   react@"19.1.0" from the root project
npm error
npm error For a full report see:
npm error /tmp/cache/_logs/2026-11-30T10_02_41_655Z-eresolve-report.txt
npm error A complete log of this run can be found in: /tmp/cache/_logs/2026-11-30T10_02_41_655Z-debug-0.log
"""


def test_npm_error_lines_keep_the_code_and_drop_blanks_and_log_pointers() -> None:
    assert tool_messages(ERESOLVE, "error") == (
        "npm error code ERESOLVE",
        "npm error ERESOLVE unable to resolve dependency tree",
        "npm error While resolving: a@1.0.0",
        "npm error Found: react@19.1.0",
        "npm error node_modules/react",
        'npm error react@"19.1.0" from the root project',
    )


def test_warnings_are_their_own_lines_and_errors_are_not_warnings() -> None:
    output = "npm warn ERESOLVE overriding peer dependency\nnpm warn\nnpm warn   Found: x\n"
    assert tool_messages(output, "warn") == (
        "npm warn ERESOLVE overriding peer dependency",
        "npm warn Found: x",
    )
    assert tool_messages(output, "error") == ()
    assert tool_messages(ERESOLVE, "warn") == ()
