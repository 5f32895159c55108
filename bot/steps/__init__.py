"""Runbook step kinds: one module per kind, each registering itself with `@step("kind")`.

`bot.steps.registry` imports every module in this package on first lookup, so a new step kind
is a new module and nothing else.
"""
