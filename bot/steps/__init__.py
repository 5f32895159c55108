"""Runbook step kinds: one module per kind, named after it (`verify-tarballs` →
`verify_tarballs.py`), each registering itself with `@step("kind")`.

`bot.steps.registry` lists the kinds from the module names and imports a module when its
step first runs, so a new step kind is a new module and nothing else.
"""
