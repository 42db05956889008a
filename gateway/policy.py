"""Version policies: which stored versions of a model the gateway serves.

    latest        the newest version (default)
    latest:N      the N newest versions
    all           every version
    versions:1,3  exactly these versions (those that exist)

A model's policy comes from ``Settings.version_policies[name]``, else the label
``truce.version_policy`` of its newest version, else ``Settings.version_policy``. Versions an
alias points at are served as well, so ``stable`` and ``canary`` always resolve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from truce.errors import InvalidArgument

POLICY_LABEL = "truce.version_policy"
_HELP = "use latest, latest:N, all or versions:1,3"


@dataclass(frozen=True)
class VersionPolicy:
    """A parsed policy; ``select`` applies it to the versions in the store."""

    kind: str
    count: int = 1
    versions: frozenset[int] = frozenset()

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to serve among ``available``, ascending."""
        ordered = sorted(available)
        if self.kind == "all":
            return ordered
        if self.kind == "versions":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.count :] if ordered else []

    def __str__(self) -> str:
        if self.kind == "versions":
            return "versions:" + ",".join(map(str, sorted(self.versions)))
        if self.kind == "latest" and self.count != 1:
            return f"latest:{self.count}"
        return self.kind


def parse_policy(text: str) -> VersionPolicy:
    """Parse a policy string; ``InvalidArgument`` says what is accepted."""
    kind, _, arg = text.strip().partition(":")
    try:
        if kind == "latest":
            count = int(arg) if arg else 1
            if count >= 1:
                return VersionPolicy("latest", count=count)
        elif kind == "all" and not arg:
            return VersionPolicy("all")
        elif kind == "versions" and arg:
            versions = frozenset(int(v) for v in arg.split(","))
            if all(v >= 1 for v in versions):
                return VersionPolicy("versions", versions=versions)
    except ValueError:
        pass
    raise InvalidArgument(f"bad version policy {text!r}: {_HELP}")


def policy_for(
    name: str, labels: Mapping[str, str], overrides: Mapping[str, str], default: str
) -> VersionPolicy:
    """The policy of model ``name`` (see the module docstring for the order)."""
    text = overrides.get(name) or labels.get(POLICY_LABEL) or default
    return parse_policy(text)
