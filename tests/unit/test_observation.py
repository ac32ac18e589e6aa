"""The observation's wire format: the strict decoder's errors, and the drain's fast decoding path
agreeing with ``Observation.from_message``.

``fast_row`` decides what goes into ``site_checks`` for nearly every message, so it must accept
nothing the strict decoder rejects and give exactly its values; anything else it declines (None)
and the strict decoder decides. Both are derived from the fields' declarations (``COLUMNS``).
"""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitewatch.errors import MessageError
from sitewatch.names import LOCAL_LOCATION
from sitewatch.observation import (
    COLUMNS,
    FIELDS,
    LOCATION_NAME,
    MAX_TEXT,
    POSITION,
    SITE_NAME,
    Observation,
    fast_row,
)
from sitewatch.storage.checks import observation_rows

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NAMES = [f.name for f in FIELDS]


def full_doc() -> dict:
    """A message with every field set, as the probe task writes it."""
    obs = Observation(
        site="shop",
        url="https://shop.example.com/health",
        checked_at=T0,
        up=False,
        scheduled_at=T0 - timedelta(seconds=3),
        attempt=2,
        final=False,
        status_code=503,
        response_time_ms=120.5,
        dns_ms=1.0,
        connect_ms=2,
        tls_ms=3.25,
        ttfb_ms=100.0,
        regex="ok",
        regex_matched=False,
        error="status",
        error_detail="status 503 not in 200-399\nsecond line",
        final_url="https://shop.example.com/health?x=é",
        body_bytes=2048,
        tls_expires_at=T0 + timedelta(days=30),
        location="eu-west_2",
        tls_version="TLSv1.3",
    )
    return json.loads(obs.to_message())


def strict_row(data: bytes) -> tuple:
    """The row ``store_batch`` would store for ``data``; raises MessageError if rejected."""
    return observation_rows([Observation.from_message(data)])[0]


def encode(doc) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


def test_a_valid_message_takes_the_fast_path_with_the_strict_values():
    data = encode(full_doc())
    row = fast_row(data)
    assert row is not None
    assert row == strict_row(data)
    assert dict(zip(NAMES, row, strict=True))["connect_ms"] == 2.0  # JSON 2 stored as float8


def test_a_rows_fields_are_found_by_their_declared_position():
    obs = Observation.from_message(encode(full_doc()))
    row = fast_row(encode(full_doc()))
    assert list(POSITION) == NAMES
    assert all(row[POSITION[name]] == getattr(obs, name) for name in NAMES)


def test_offsets_are_converted_to_utc_like_the_strict_decoder():
    doc = full_doc()
    doc["checked_at"] = "2026-11-01T14:00:00+02:00"
    row = fast_row(encode(doc))
    checked_at = dict(zip(NAMES, row, strict=True))["checked_at"]
    assert checked_at == T0 and checked_at.utcoffset() == timedelta(0)
    assert row == strict_row(encode(doc))


@pytest.mark.parametrize(
    ("change", "strict_accepts"),
    [
        ({"v": True}, True),  # == 1 in Python: the strict decoder accepts it, msgspec does not
        ({"v": 1.0}, True),
        ({"site": "a\x00b"}, False),  # a NUL
        ({"url": "https://example.com/\ud800"}, True),  # a lone surrogate, stored as "?"
        ({"error_detail": "bell \x07 and é"}, True),  # sent as a \\u0007 escape
        ({"checked_at": "2026-11-01T12:00:00"}, False),  # naive
        ({"checked_at": "not a time"}, False),
        ({"checked_at": "0001-01-01T00:00:00+14:00"}, False),  # before year 1 in UTC
        ({"attempt": 2**31}, False),
        ({"attempt": -1}, False),
        ({"attempt": 1.0}, False),
        ({"status_code": True}, False),
        ({"response_time_ms": 1e12}, False),
        ({"response_time_ms": -0.5}, False),
        ({"response_time_ms": False}, False),
        ({"up": 1}, False),
        ({"up": None}, False),
        ({"regex": "x" * (MAX_TEXT + 1)}, False),
        ({"extra": 1}, False),
        ({"site": "Shop"}, False),  # the sites file's name rule
        ({"site": "s" * 64}, False),
        ({"site": "shop\n"}, False),  # "$" would match before a final line break
        ({"site": "-shop"}, False),
        ({"url": "javascript:alert(1)"}, False),
        ({"url": " https://shop.example/"}, False),
        ({"url": "httpſ://shop.example/"}, False),  # ſ folds to s case-insensitively
        ({"final_url": "data:text/html,<script>"}, False),
    ],
    ids=repr,
)
def test_odd_or_invalid_messages_leave_the_fast_path(change, strict_accepts):
    data = encode({**full_doc(), **change})
    assert fast_row(data) is None
    if strict_accepts:
        assert len(strict_row(data)) == len(NAMES)
    else:
        with pytest.raises(MessageError):
            strict_row(data)


@pytest.mark.parametrize(
    "url", ["tcp://db.example:5432", "tls://mail.example:465", "dns://9.9.9.9/shop.example?type=A"]
)
def test_a_tcp_or_dns_checks_url_is_stored_by_both_decoders(url):
    # The Sites page shows it as text, never as a link (dashboard.render._url).
    data = encode({**full_doc(), "url": url})
    assert fast_row(data) == strict_row(data)


@pytest.mark.parametrize("name", ["site", "url", "checked_at", "up", "scheduled_at", "attempt"])
def test_a_missing_required_field_is_left_to_the_strict_decoder(name):
    doc = full_doc()
    del doc[name]
    data = encode(doc)
    assert fast_row(data) is None
    with pytest.raises(MessageError, match=f"missing field {name}"):
        Observation.from_message(data)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"site": None}, "missing field site"),
        ({"attempt": -1}, "attempt: expected a non-negative integer, got -1"),
        ({"body_bytes": 2**31}, "body_bytes: expected a non-negative integer, got 2147483648"),
        ({"status_code": True}, "status_code: expected a non-negative integer, got True"),
        ({"dns_ms": "1"}, "dns_ms: expected a duration in ms, got '1'"),
        ({"tls_ms": 1e12}, "tls_ms: expected a duration in ms, got 1000000000000.0"),
        ({"up": 1}, "up: expected bool, got int"),
        ({"url": ["x"]}, "url: expected str, got list"),
        ({"error": "a\x00b"}, "error: text contains a NUL character"),
        ({"regex": "x" * (MAX_TEXT + 1)}, "regex: text of 4097 characters exceeds 4096"),
        ({"checked_at": 0}, "checked_at: expected an ISO 8601 timestamp, got int"),
        ({"checked_at": "soon"}, "checked_at: invalid timestamp 'soon'"),
        (
            {"scheduled_at": "2026-11-01T12:00"},
            "scheduled_at: timestamp '2026-11-01T12:00' has no UTC offset",
        ),
        (
            {"site": "x" * 100},
            f"site: invalid name {'x' * 64!r}: use at most 63 of a-z, 0-9, '_', '-';"
            " start with a letter or digit",
        ),
        (
            {"site": "Shop"},
            "site: invalid name 'Shop': use at most 63 of a-z, 0-9, '_', '-';"
            " start with a letter or digit",
        ),
        (
            {"url": "javascript:alert(1)"},
            "url: not an http(s), tcp, tls or dns URL: 'javascript:alert(1)'",
        ),
        (
            {"final_url": "ftp://shop.example/"},
            "final_url: not an http(s) URL: 'ftp://shop.example/'",
        ),
        # the first problem in field order: url comes before attempt
        ({"attempt": -1, "url": 5}, "url: expected str, got int"),
    ],
    ids=repr,
)
def test_the_strict_decoder_names_the_first_problem(change, reason):
    with pytest.raises(MessageError) as failure:
        Observation.from_message(encode({**full_doc(), **change}))
    assert failure.value.reason == reason


def test_each_declared_kind_agrees_with_the_fields_annotation():
    # The annotation is for readers and type checkers; the declared kind is what the code uses.
    hints = typing.get_type_hints(Observation)
    for column in COLUMNS:
        python = column.kind.python
        allowed = {python, python | None} if column.required else {python | None}
        assert hints[column.name] in allowed, column.name


def test_the_longest_allowed_text_is_fast_and_equal():
    doc = {**full_doc(), "error_detail": "é" * MAX_TEXT}  # characters, not bytes
    data = encode(doc)
    assert fast_row(data) == strict_row(data)


@pytest.mark.parametrize(
    "change",
    [
        {"site": "s" * 63},
        {"site": "0-a_b"},
        {"url": "HTTP://SHOP.EXAMPLE/", "final_url": "Https://shop.example/"},
        {"url": "http://shop.example/ü"},
    ],
    ids=repr,
)
def test_valid_names_and_urls_take_the_fast_path(change):
    data = encode({**full_doc(), **change})
    assert fast_row(data) is not None
    assert fast_row(data) == strict_row(data)


# --- location: a field added after v1, absent from the previous producers' messages -------------


def test_a_message_without_a_location_means_local_in_both_decoders():
    doc = full_doc()
    del doc["location"]
    data = encode(doc)
    assert Observation.from_message(data).location == LOCAL_LOCATION
    row = fast_row(data)
    assert row is not None and dict(zip(NAMES, row, strict=True))["location"] == LOCAL_LOCATION
    assert row == strict_row(data)


def test_a_location_sent_is_kept_by_both_decoders():
    data = encode(full_doc())
    assert Observation.from_message(data).location == "eu-west_2"
    assert dict(zip(NAMES, fast_row(data), strict=True))["location"] == "eu-west_2"


def test_to_message_always_writes_the_location():
    obs = Observation(site="a", url="https://a.example/", checked_at=T0, up=True)
    assert obs.location == LOCAL_LOCATION
    assert json.loads(obs.to_message())["location"] == LOCAL_LOCATION


@pytest.mark.parametrize(
    "location", ["East", "-east", "e" * 32, "east\n", "", "eu west", "é"], ids=repr
)
def test_an_invalid_location_is_rejected_naming_the_field(location):
    data = encode({**full_doc(), "location": location})
    assert fast_row(data) is None
    with pytest.raises(MessageError) as failure:
        Observation.from_message(data)
    assert failure.value.reason.startswith("location: invalid location ")
    assert "use at most 31 of a-z, 0-9, '_', '-'" in failure.value.reason


@pytest.mark.parametrize("value", [None, 5, ["east"]], ids=repr)
def test_a_location_that_is_not_text_is_rejected(value):
    data = encode({**full_doc(), "location": value})
    assert fast_row(data) is None
    with pytest.raises(MessageError, match="location"):
        Observation.from_message(data)


def test_the_longest_location_is_accepted():
    data = encode({**full_doc(), "location": "l" * 31})
    assert fast_row(data) == strict_row(data)
    assert LOCATION_NAME.fullmatch("l" * 31) and not LOCATION_NAME.fullmatch("l" * 32)


def test_the_site_name_rule_is_the_sites_files():
    from sitewatch.config import key_checks

    assert key_checks.NAME is SITE_NAME


def test_a_repeated_key_keeps_the_last_value_in_both():
    data = encode(full_doc())[:-1] + b',"attempt":7}'
    assert dict(zip(NAMES, fast_row(data), strict=True))["attempt"] == 7
    assert fast_row(data) == strict_row(data)


def test_not_json_is_declined():
    for data in (b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"v":1} trailing', b"NaN"):
        assert fast_row(data) is None


# --- the property: over arbitrary edits of a valid message, the two agree ------------------------

_TIMES = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), None]),
    ).map(datetime.isoformat),
    st.sampled_from(
        ["2026-11-01T12:00Z", "2026-11-01 12:00+00:00", "2026-11-01T12:00:00.1234567+00:00"]
    ),
)
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([0, 2**31 - 1, 2**31, 10**12, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.text(alphabet="ab\x00\ud800é", max_size=5),
    _TIMES,
    st.lists(st.integers(), max_size=2),
    st.sampled_from(  # near the name, location and URL rules' edges
        ["a", "a" * 63, "a" * 64, "A", "-a", "a\n", "a.b", "https://x/", "HTTP://x", "http:x"]
    ),
    st.sampled_from(["local", "l" * 31, "l" * 32, "0_-", "_a"]),
    st.sampled_from(["javascript:x", "httpſ://x", " https://x", "https://x\n", "\x00"]),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.dictionaries(st.sampled_from([*NAMES, "v", "extra"]), _VALUES, max_size=4),
    drop=st.sets(st.sampled_from([*NAMES, "v"]), max_size=2),
)
def test_fast_row_never_disagrees_with_the_strict_decoder(changes, drop):
    doc = {k: v for k, v in {**full_doc(), **changes}.items() if k not in drop}
    data = encode(doc)
    row = fast_row(data)
    if row is not None:  # accepted fast: the strict decoder accepts it with the same values
        assert row == strict_row(data)


# --- maintenance: added by migration 8, absent from earlier producers' messages -----------------


def test_a_message_without_maintenance_means_false_in_both_decoders():
    doc = full_doc()
    del doc["maintenance"]
    data = encode(doc)
    assert Observation.from_message(data).maintenance is False
    assert dict(zip(NAMES, fast_row(data), strict=True))["maintenance"] is False


def test_maintenance_sent_is_kept_and_must_be_a_boolean():
    data = encode({**full_doc(), "maintenance": True})
    assert Observation.from_message(data).maintenance is True
    assert fast_row(data) == strict_row(data)
    for wrong in ("yes", 1, None):
        with pytest.raises(MessageError, match="maintenance"):
            Observation.from_message(encode({**full_doc(), "maintenance": wrong}))
        assert fast_row(encode({**full_doc(), "maintenance": wrong})) is None


# --- tls_version: added by migration 13, absent from earlier producers' messages ----------------


def test_a_message_without_a_tls_version_is_valid_in_both_decoders():
    doc = full_doc()
    del doc["tls_version"]
    data = encode(doc)
    assert Observation.from_message(data).tls_version is None
    assert dict(zip(NAMES, fast_row(data), strict=True))["tls_version"] is None


def test_a_tls_version_is_short_text():
    data = encode(full_doc())
    assert Observation.from_message(data).tls_version == "TLSv1.3"
    assert fast_row(data) == strict_row(data)
    for wrong in ("TLSv1.3" * 3, 1.3):
        with pytest.raises(MessageError, match="tls_version"):
            Observation.from_message(encode({**full_doc(), "tls_version": wrong}))
        assert fast_row(encode({**full_doc(), "tls_version": wrong})) is None


# --- steps: a flow's, added by migration 12, absent from single checks and earlier producers ---

STEP = {
    "name": "login",
    "method": "POST",
    "url": "https://api.example.com/login",
    "always": False,
    "passed": False,
    "status": 401,
    "response_ms": 12,
    "body_bytes": 30,
    "error": "status",
    "error_detail": "status 401 not in 200-399",
}


def test_a_flows_steps_take_the_fast_path_with_the_strict_values():
    data = encode({**full_doc(), "steps": [STEP, {**STEP, "name": "cleanup", "passed": None}]})
    row = fast_row(data)
    assert row == strict_row(data)
    steps = row[POSITION["steps"]]
    assert steps[0]["response_ms"] == 12.0 and isinstance(steps[0]["response_ms"], float)
    assert "passed" not in steps[1]  # null is left out, as the probe leaves it out
    assert Observation.from_message(encode(full_doc())).steps is None


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ({"name": "x"}, "steps: expected list, got dict"),
        ([STEP] * 21, "steps: 21 steps exceed 20"),
        (["login"], "steps[0]: expected an object, got str"),
        ([{**STEP, "extra": 1}], "steps[0]: unknown fields: extra"),
        ([{k: v for k, v in STEP.items() if k != "url"}], "steps[0]: missing field url"),
        (
            [{**STEP, "name": "Log In"}],
            "steps[0].name: invalid step name 'Log In': use at most"
            " 32 of a-z, 0-9, '_'; start with a letter",
        ),  # fmt: skip
        (
            [{**STEP, "url": "javascript:alert(1)"}],
            "steps[0].url: not an http(s) URL: 'javascript:alert(1)'",
        ),  # fmt: skip
        ([{**STEP, "status": -1}], "steps[0].status: expected a non-negative integer, got -1"),
        (
            [{**STEP, "error_detail": "a\x00b"}],
            "steps[0].error_detail: text contains a NUL character",
        ),  # fmt: skip
        (
            [{**STEP, "error_detail": "a\ud800"}],
            "steps[0].error_detail: text holds a lone surrogate",
        ),  # fmt: skip
    ],
    ids=repr,
)
def test_the_strict_decoder_names_what_is_wrong_with_a_step(steps, reason):
    data = encode({**full_doc(), "steps": steps})
    with pytest.raises(MessageError) as failure:
        Observation.from_message(data)
    assert failure.value.reason == reason
    assert fast_row(data) is None
