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
        dep.baseline = {role: rss(dep.pid(role)) for role in dep.roles}
        yield dep
    finally:
        dep.close()


@pytest.fixture
def dep(deployment):
    """The deployment, checked after the test: still serving, memory within the budget."""
    yield deployment
    deployment.healthy()
    deployment.check_memory()


@pytest.fixture(scope="module")
def two_party_deployment(tmp_path_factory):
    from protocols.providers import PROVIDERS
    if "two-party" not in PROVIDERS:
        pytest.skip("the two-party provider is not in this build")
    dep = Deployment(tmp_path_factory.mktemp("reliability-two-party"), provider="two-party")
    try:
        dep.healthy()
        dep.baseline = {role: rss(dep.pid(role)) for role in dep.roles}
        yield dep
    finally:
        dep.close()


@pytest.fixture
def tp(two_party_deployment):
    """The two-party deployment, checked after the test like `dep`."""
    yield two_party_deployment
    two_party_deployment.healthy()
    two_party_deployment.check_memory()
