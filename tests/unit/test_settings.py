"""The drain's tuning variables: defaults, accepted values, and the exact text of each bad one."""

import pytest

from sitewatch.errors import SettingError
from sitewatch.pipeline.settings import DrainSettings


def test_unset_or_empty_variables_take_the_defaults():
    defaults = DrainSettings(
        batch_size=5000, poll_seconds=2.0, max_seconds=86_400.0, look_seconds=120.0
    )
    assert DrainSettings.from_env({}) == defaults
    blank = {
        "SITEWATCH_DRAIN_BATCH_SIZE": "",
        "SITEWATCH_DRAIN_POLL_SECONDS": "  ",
        "SITEWATCH_DRAIN_MAX_SECONDS": "",
        "SITEWATCH_SENSOR_LOOK_SECONDS": "",
    }
    assert DrainSettings.from_env(blank) == defaults


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SITEWATCH_DRAIN_BATCH_SIZE": "1"}, {"batch_size": 1}),
        ({"SITEWATCH_DRAIN_BATCH_SIZE": " 100000 "}, {"batch_size": 100_000}),
        ({"SITEWATCH_DRAIN_POLL_SECONDS": "0.1"}, {"poll_seconds": 0.1}),
        ({"SITEWATCH_DRAIN_POLL_SECONDS": "60"}, {"poll_seconds": 60.0}),
        ({"SITEWATCH_DRAIN_IDLE_SECONDS": "0"}, {"idle_seconds": 0.0}),
        ({"SITEWATCH_DRAIN_IDLE_SECONDS": "90"}, {"idle_seconds": 90.0}),
        ({"SITEWATCH_DRAIN_MAX_SECONDS": "1"}, {"max_seconds": 1.0}),
        ({"SITEWATCH_DRAIN_MAX_SECONDS": "604800"}, {"max_seconds": 604_800.0}),
        ({"SITEWATCH_SENSOR_LOOK_SECONDS": "5"}, {"look_seconds": 5.0}),
        ({"SITEWATCH_SENSOR_LOOK_SECONDS": "3600"}, {"look_seconds": 3600.0}),
        ({"SITEWATCH_SENSOR_LOOK_SECONDS": "1e2"}, {"look_seconds": 100.0}),
    ],
)
def test_values_in_range_are_taken(environ, expected):
    settings = DrainSettings.from_env(environ)
    for name, value in expected.items():
        assert getattr(settings, name) == value
    assert type(settings.batch_size) is int


BAD = [
    ("SITEWATCH_DRAIN_BATCH_SIZE", "0", "a whole number from 1 to 100000 (default 5000)"),
    ("SITEWATCH_DRAIN_BATCH_SIZE", "100001", "a whole number from 1 to 100000 (default 5000)"),
    ("SITEWATCH_DRAIN_BATCH_SIZE", "2.5", "a whole number from 1 to 100000 (default 5000)"),
    ("SITEWATCH_DRAIN_BATCH_SIZE", "lots", "a whole number from 1 to 100000 (default 5000)"),
    ("SITEWATCH_DRAIN_POLL_SECONDS", "0", "a number of seconds from 0.1 to 60 (default 2)"),
    ("SITEWATCH_DRAIN_POLL_SECONDS", "2s", "a number of seconds from 0.1 to 60 (default 2)"),
    ("SITEWATCH_DRAIN_POLL_SECONDS", "nan", "a number of seconds from 0.1 to 60 (default 2)"),
    ("SITEWATCH_DRAIN_MAX_SECONDS", "-5", "a number of seconds from 1 to 604800 (default 86400)"),
    ("SITEWATCH_DRAIN_MAX_SECONDS", "inf", "a number of seconds from 1 to 604800 (default 86400)"),
    ("SITEWATCH_DRAIN_IDLE_SECONDS", "-1", "a number of seconds from 0 to 604800 (default 30)"),
    ("SITEWATCH_SENSOR_LOOK_SECONDS", "2", "a number of seconds from 5 to 3600 (default 120)"),
    ("SITEWATCH_SENSOR_LOOK_SECONDS", "3601", "a number of seconds from 5 to 3600 (default 120)"),
]


@pytest.mark.parametrize(("name", "value", "valid"), BAD)
def test_a_bad_value_names_the_variable_and_what_is_valid(name, value, valid):
    with pytest.raises(SettingError) as failure:
        DrainSettings.from_env({name: value})
    assert str(failure.value) == f"{name}={value!r}: expected {valid}"
