"""Fixtures of the fault-injection suite: one deployment per module (harness.Deployment)."""
from __future__ import annotations

import pytest
from harness import (  # tests/reliability is on sys.path (no __init__.py: rootdir import)
    Deployment,
    rss,
)


def _started(path, **kw):
    """A deployment, warmed (both processes serve once before the memory baseline), closed after."""
    dep = Deployment(path, **kw)
    try:
        dep.healthy()
        dep.baseline = {role: rss(dep.pid(role)) for role in dep.roles}
        yield dep
    finally:
        dep.close()


def _checked(dep):
    """The deployment, checked after the test: still serving, memory within the budget."""
    yield dep
    dep.healthy()
    dep.check_memory()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    yield from _started(tmp_path_factory.mktemp("reliability"))


@pytest.fixture
def dep(deployment):
    """The deployment, checked after the test: still serving, memory within the budget."""
    yield from _checked(deployment)


@pytest.fixture(scope="module")
def two_party_deployment(tmp_path_factory):
    from protocols.providers import PROVIDERS
    if "two-party" not in PROVIDERS:
        pytest.skip("the two-party provider is not in this build")
    yield from _started(tmp_path_factory.mktemp("reliability-two-party"), provider="two-party")


@pytest.fixture
def tp(two_party_deployment):
    """The two-party deployment, checked after the test like `dep`."""
    yield from _checked(two_party_deployment)
