"""Every log call in bot/ is a fixed message; the facts go in structured fields (`extra=`), so
JSON logs can be filtered by field and a message never carries unescaped data."""

from __future__ import annotations

import ast
from pathlib import Path

import bot

LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def _log_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in LEVELS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in {"log", "logger"}
    ]


def test_every_log_call_has_a_fixed_message_and_structured_fields() -> None:
    root = Path(bot.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for call in _log_calls(ast.parse(path.read_text(), str(path))):
            message = call.args[0] if call.args else None
            fixed = isinstance(message, ast.Constant) and isinstance(message.value, str)
            if not fixed or len(call.args) > 1 or "%" in str(getattr(message, "value", "")):
                offenders.append(f"{path.relative_to(root.parent)}:{call.lineno}")
    assert offenders == []
