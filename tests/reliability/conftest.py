from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_helpers import Procs


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Every process a test starts; each is killed by its own pid at teardown if still running."""
    started = Procs()
    yield started
    started.cleanup()
