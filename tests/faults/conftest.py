"""The private stack (tests/faults/stack.py) stops after the last test of its group that uses it.

Its fixtures are session-scoped, so pytest alone would keep its Airflow and brokers running (and
polling, parsing, heartbeating) until every other test of the process has run too. A group's
tests run one after another in one process (tests/conftest.py, "Groups").
"""

from __future__ import annotations

import pytest

from tests.conftest import group
from tests.faults.stack import stop_shared


def _uses_stack(item: pytest.Item) -> bool:
    return "private_stack" in item.fixturenames


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    if _uses_stack(item):
        later = item.session.items[item.session.items.index(item) + 1 :]
        if not any(_uses_stack(other) and group(other) == group(item) for other in later):
            stop_shared()
    return result
