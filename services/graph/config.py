"""Graph tunables, in media's shape (`config.from_env`), read once per servicer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GraphConfig:
    """Graph reads no environment setting today; its fixed tunables live here, in the
    shape every service's config has, so the first setting that is read has a place."""

    #: Follows an account may make per hour.
    follows_per_hour: int = 500

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GraphConfig:
        return cls()
