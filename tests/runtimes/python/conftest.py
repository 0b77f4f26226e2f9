import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fake_runtime_api import FakeRuntimeApi  # noqa: E402
from runtime_harness import FakeApiRuntime, RieRuntime, find_rie  # noqa: E402


@pytest.fixture(scope="session")
def rie_bin():
    path, why_not = find_rie()
    if path is None:
        pytest.skip(why_not)
    return path


@pytest.fixture
def start_rie(rie_bin):
    """start_rie(handler, env=None, python=None) -> RieRuntime, stopped after the test."""
    started = []

    def start(handler, env=None, python=None, **kwargs):
        runtime = RieRuntime(rie_bin, handler, env=env, python=python, **kwargs)
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


@pytest.fixture
def fake_api():
    api = FakeRuntimeApi()
    yield api
    api.close()


@pytest.fixture
def start_runtime(fake_api):
    """start_runtime(handler, env=None, ...) -> FakeApiRuntime against ``fake_api``."""
    started = []

    def start(handler, env=None, **kwargs):
        runtime = FakeApiRuntime(fake_api, handler, env=env, **kwargs)
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()
