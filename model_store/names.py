"""Validation of model names, versions, aliases and references (``NAME[:VERSION|@ALIAS]``).

Names become directory names, so the rules are strict: anything that could escape the store
(``..``, slashes, NUL, absolute paths, encoded forms) is refused before the disk is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from truce.errors import InvalidArgument

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
RESERVED_ALIASES = frozenset({"latest"})
MAX_VERSION = 10**9


def check_name(name: str, what: str = "model name") -> str:
    """Return ``name`` if it is a valid model (or alias) name, else raise ``InvalidArgument``."""
    if not _NAME.match(name) or ".." in name:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise InvalidArgument(
            f"invalid {what} {shown!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return name


def is_valid_name(name: str) -> bool:
    """True if ``name`` passes :func:`check_name`."""
    return bool(_NAME.match(name)) and ".." not in name


def check_alias(alias: str) -> str:
    """Aliases follow the name rules, are not all digits (those are versions) nor 'latest'."""
    check_name(alias, "alias")
    if alias.isdigit():
        raise InvalidArgument(f"invalid alias {alias!r}: an alias cannot be a number")
    if alias in RESERVED_ALIASES:
        raise InvalidArgument(f"invalid alias {alias!r}: 'latest' is implicit and reserved")
    return alias


def parse_version(text: str) -> int:
    """A version number: a positive decimal integer."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise InvalidArgument(f"invalid version {text!r}: versions are positive integers")
    return int(text)


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``NAME``, ``NAME:VERSION``, ``NAME@ALIAS`` or ``NAME@latest``."""

    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def selector(self) -> str | None:
        """What ``ModelStore.resolve`` takes: a version number, an alias, or None (latest)."""
        if self.version is not None:
            return str(self.version)
        return self.alias

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str) -> ModelRef:
    """Parse a model reference as typed on the command line."""
    if "@" in text:
        name, alias = text.split("@", 1)
        check_name(name)
        if alias != "latest":
            check_alias(alias)
            return ModelRef(name, alias=alias)
        return ModelRef(name)
    if ":" in text:
        name, version = text.split(":", 1)
        return ModelRef(check_name(name), version=parse_version(version))
    return ModelRef(check_name(text))
