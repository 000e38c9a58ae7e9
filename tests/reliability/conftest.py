"""Fixtures of the fault-injection suite: one deployment per module (harness.Deployment)."""
from __future__ import annotations

import pytest
from harness import (  # tests/reliability is on sys.path (no __init__.py: rootdir import)
    Deployment,
    rss,
)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    dep = Deployment(tmp_path_factory.mktemp("reliability"))
    try:
        dep.healthy()         # warm both processes before the baseline
        dep.baseline = {role: rss(dep.pid(role)) for role in ("server", "dealer")}
        yield dep
    finally:
        dep.close()


@pytest.fixture
def dep(deployment):
    """The deployment, checked after the test: still serving, memory within the budget."""
    yield deployment
    deployment.healthy()
    deployment.check_memory()
