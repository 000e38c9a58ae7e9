"""The garbled-circuit tests' session: one garbler/evaluator pair (protocols.garbled.connect)
per test module."""
from __future__ import annotations

import pytest

from protocols.garbled import connect


@pytest.fixture(scope="module")
def session():
    return connect()
