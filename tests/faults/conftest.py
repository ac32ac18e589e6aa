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


def stack_used_later(item: pytest.Item) -> bool:
    """Whether a test after ``item`` in its group uses the private stack (else it stops after
    ``item``, and nothing need be put back on it)."""
    later = item.session.items[item.session.items.index(item) + 1 :]
    return any(_uses_stack(other) and group(other) == group(item) for other in later)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    if _uses_stack(item) and not stack_used_later(item):
        stop_shared()
    return result
