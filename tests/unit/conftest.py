"""Fixtures the unit suites share."""

import pytest
import servers  # tests/unit is on sys.path (pytest rootdir-relative import mode)


@pytest.fixture(scope="module")
def routes():
    """The local HTTP server of ``servers.start_http`` (its routes), for one test module."""
    server = servers.start_http()
    yield server
    servers.stop(server)
