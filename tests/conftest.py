import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty zoo cache, so nothing leaks between tests or from the user's machine."""
    if "ZOO_TEST_KEEP_CACHE" not in os.environ:
        monkeypatch.setenv("ZOO_CACHE", str(tmp_path_factory.mktemp("zoo-cache")))


@pytest.fixture(autouse=True)
def _isolated_names():
    """Names a test registers (`zoo.register`) end with it, so no later test sees them in `zoo list`."""
    from zoo import hub

    saved = None if hub._NAMES is None else dict(hub._NAMES)
    yield
    hub._NAMES = saved

from hypothesis import HealthCheck, settings

# `ci` keeps the suite fast; `fuzz` is the thorough run (HYPOTHESIS_PROFILE=fuzz, >= 1000 cases per entry point)
settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
