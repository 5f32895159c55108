"""Runbook step kinds: one module per kind, each registering itself with `@step("kind")`.

Importing this package imports every module in it, so a new step kind is a new module.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")
