"""Error types. Every user-facing failure is an InstructMiningError whose message names the
file, record/line and field at fault; the CLI prints it and exits 2 (no traceback)."""

from __future__ import annotations

from typing import Any


class InstructMiningError(Exception):
    """A failure the user can fix (bad input, bad config, missing model). Exit code 2."""


class DataError(InstructMiningError):
    """Bad input data: the message names the file, the line or record and the field."""

    def __init__(self, path: object, where: str | None, field: str | None, problem: str) -> None:
        loc = str(path)
        if where:
            loc += f":{where}"
        msg = f"{loc}: {problem}"
        if field:
            msg = f"{loc}: field {field!r}: {problem}"
        super().__init__(msg)
        self.path, self.where, self.field, self.problem = path, where, field, problem


class ConfigError(InstructMiningError):
    """Bad configuration: the message names the config key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key {key!r}: {problem}")
        self.key = key


def check_keys(block: dict[str, Any], known: list[str], where: str) -> None:
    """A typed config block's from_dict guard: an unknown key in `block` (the config slice at
    `where`, e.g. "finetune") is a ConfigError naming it, never silently ignored."""
    unknown = sorted(set(block) - set(known))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", f"unknown key (known: {sorted(known)})")


class ScorerError(InstructMiningError):
    """A scorer could not load or could not score a sample (message names the sample id)."""
