"""Fixtures of the template's tests; the helpers live in rendering.py, combos.py and tools.py."""

from __future__ import annotations

import pytest

from tests.rendering import Renders, SharedEnvironment, prime_uv_cache, shared_environment_for


@pytest.fixture(scope="session", autouse=True)
def _uv_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Renders lock their dependencies with uv: from one shared cache, filled once."""
    prime_uv_cache(tmp_path_factory.mktemp("uv-prime"))


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Renders:
    return Renders(tmp_path_factory.mktemp("renders"))


@pytest.fixture(scope="session")
def shared_environment(tmp_path_factory: pytest.TempPathFactory) -> SharedEnvironment:
    return shared_environment_for(tmp_path_factory.mktemp("reference"))
