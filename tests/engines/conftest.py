"""Engine fixtures: every installed engine loaded once per test session, on the bundled model.

`engine` is parametrized over every engine wattlab knows; an engine that is not installed is
skipped with its install hint. The openai engine talks to a real OpenAI-compatible server that
this session starts on 127.0.0.1 (vLLM's API server on the derived SmolLM2 checkpoint) and stops
at the end. Derived model files go to WATTLAB_MODELS when it is set (a cache across sessions),
else to the session's data dir, so a first run pays the ~30 s conversion once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_support import ENGINES, EngineCache

from wattlab.engines.base import Engine


@pytest.fixture(scope="session")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineCache]:
    cache = EngineCache(tmp_path_factory.mktemp("engines"))
    yield cache
    cache.close()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, engine_cache: EngineCache) -> Engine:
    """Each engine wattlab knows, loaded on the bundled model (skipped where not installed)."""
    return engine_cache.get(request.param)
