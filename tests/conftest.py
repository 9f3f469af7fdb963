import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty zoo cache, so nothing leaks between tests or from the user's machine."""
    if "ZOO_TEST_KEEP_CACHE" not in os.environ:
        monkeypatch.setenv("ZOO_CACHE", str(tmp_path_factory.mktemp("zoo-cache")))
