"""PostConfig.from_env: the post service's one environment setting and its budgets."""

from __future__ import annotations

import dataclasses

import pytest

from services.post.config import PostConfig


def test_defaults_are_the_contracts_budgets() -> None:
    config = PostConfig.from_env({})
    assert (config.posts_per_minute, config.comments_per_minute) == (30, 60)
    assert config.anonymous_searches_per_minute == 60


def test_the_anonymous_search_budget_comes_from_the_environment() -> None:
    config = PostConfig.from_env({"SEARCH_ANONYMOUS_PER_MINUTE": "7"})
    assert config.anonymous_searches_per_minute == 7
    with pytest.raises(SystemExit):
        PostConfig.from_env({"SEARCH_ANONYMOUS_PER_MINUTE": "0"})


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PostConfig.from_env({}).posts_per_minute = 1  # type: ignore[misc]
