"""Fixtures the unit suites share."""

import pytest

from tests import servers


@pytest.fixture(scope="module")
def routes():
    """The local HTTP server of ``servers.start_http`` (its routes), for one test module."""
    server = servers.start_http()
    yield server
    servers.stop(server)
