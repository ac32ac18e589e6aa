"""``SITEWATCH_QUERY_TIMEOUT_SECONDS`` (sitewatch.storage.timeouts): the default, a value in
range, and the exact message for each unusable value."""

from __future__ import annotations

import pytest

from sitewatch.errors import SettingError
from sitewatch.storage.timeouts import DEFAULT_TIMEOUT, TIMEOUT_VAR, query_timeout


@pytest.mark.parametrize(("text", "seconds"), [(None, 10.0), ("", 10.0), (" 2.5 ", 2.5)])
def test_unset_or_empty_is_the_default_and_a_number_is_taken(text, seconds):
    environ = {} if text is None else {TIMEOUT_VAR: text}
    assert query_timeout(environ) == seconds
    assert DEFAULT_TIMEOUT == 10.0


@pytest.mark.parametrize("text", ["0", "-1", "0.01", "3601", "nan", "inf", "ten", "٣"])
def test_an_unusable_value_names_the_variable_the_range_and_the_default(text):
    with pytest.raises(SettingError) as raised:
        query_timeout({TIMEOUT_VAR: text})
    assert str(raised.value) == (
        f"SITEWATCH_QUERY_TIMEOUT_SECONDS={text!r}: expected a number of seconds from 0.1 to "
        "3600 (default 10)"
    )
