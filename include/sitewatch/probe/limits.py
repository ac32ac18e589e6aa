"""The checks every kind of check shares after its exchange: the response time against
``max_response_ms`` and the TLS chain's earliest expiry (``chain.Handshake.expires_at``) against
``min_cert_days``."""

from __future__ import annotations

from datetime import UTC, datetime

from sitewatch.probe.failures import Failure


def check_speed(limit_ms: int | None, response_ms: float | None) -> Failure | None:
    if limit_ms is None or response_ms is None or response_ms <= limit_ms:
        return None
    return Failure("slow", f"response took {response_ms:.0f} ms, limit {limit_ms} ms")


def check_cert(min_days: int | None, expires_at: datetime | None) -> Failure | None:
    if min_days is None or expires_at is None:
        return None
    days = (expires_at - datetime.now(UTC)).total_seconds() / 86400
    if days >= min_days:
        return None
    when = expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return Failure(
        "cert_expiring",
        f"certificate chain expires in {days:.1f} days ({when}), minimum {min_days}",
    )
