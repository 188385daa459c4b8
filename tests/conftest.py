"""Fixtures of the template's tests; the helpers live in rendering.py, combos.py and tools.py."""

from __future__ import annotations

import pytest

from tests.rendering import Renders, prime_uv_cache


@pytest.fixture(scope="session", autouse=True)
def _uv_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Renders lock their dependencies with uv: from one shared cache, filled once."""
    prime_uv_cache(tmp_path_factory.mktemp("uv-prime"))


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Renders:
    return Renders(tmp_path_factory.mktemp("renders"))
