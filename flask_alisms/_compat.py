"""The import paths of version 0.1, kept for one release with a DeprecationWarning.

0.2 laid the package out by concern (``sms/``, ``flows/``, ``web/``, ``testing/``). An old
``import flask_alisms.sender`` still works: a finder on ``sys.meta_path`` answers it with the
new module, after a warning that names the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

#: Old module (relative to the package) -> the module that replaces it.
MOVED: dict[str, str | tuple[str, ...]] = {
    "sender": "sms",
    "errors": ("sms.advice", "exceptions"),
    "settings": "parameters",
    "codes": "flows.codes",
    "limits": "flows.throttle",
    "verification": "flows.verification",
    "accounts": "flows.accounts",
    "views": "web",
    "forms": "web.forms",
    "pytest_plugin": "testing.pytest_plugin",
}


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new_names: tuple[str, ...]) -> None:
        self.new_names = new_names

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {' and '.join(self.new_names)}; the old path goes away in "
            "the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        modules = [importlib.import_module(name) for name in self.new_names]
        if len(modules) == 1:
            return modules[0]
        merged = ModuleType(spec.name, modules[0].__doc__)
        for module in modules:
            merged.__dict__.update(
                (key, value) for key, value in vars(module).items() if not key.startswith("_")
            )
        return merged

    def exec_module(self, module: ModuleType) -> None:
        """The new module is already executed."""


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, old = fullname.rpartition(".")
        if prefix != self.package or old not in MOVED:
            return None
        target = MOVED[old]
        targets = (target,) if isinstance(target, str) else target
        new_names = tuple(f"{self.package}.{name}" for name in targets)
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader(new_names))


def install(package: str) -> None:
    """Answer the old import paths of ``package`` (once per process)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder(package))
