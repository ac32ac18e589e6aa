"""The drain's tuning values, read from environment variables (README, "Settings").

They change how fast and in what steps sitewatch stores observations, never what it stores:
every value in range keeps the guarantees (exactly once, offsets after the commit). They are
read where they are used, on the worker that runs the ``sitewatch_drain`` DAG's tasks, so a
change applies from the next run without a re-parse. Nothing here imports Airflow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from sitewatch.errors import SettingError

BATCH_SIZE_VAR = "SITEWATCH_DRAIN_BATCH_SIZE"
POLL_SECONDS_VAR = "SITEWATCH_DRAIN_POLL_SECONDS"
MAX_SECONDS_VAR = "SITEWATCH_DRAIN_MAX_SECONDS"
IDLE_SECONDS_VAR = "SITEWATCH_DRAIN_IDLE_SECONDS"
LOOK_SECONDS_VAR = "SITEWATCH_SENSOR_LOOK_SECONDS"

# A batch is held in memory and stored in one transaction: 100 000 typical (~1 KiB) observations
# are ~100 MB, and the client library refuses more than 1 000 000 per read anyway.
MAX_BATCH_SIZE = 100_000
MAX_POLL_SECONDS = 60.0
MAX_RUN_SECONDS = 604_800.0
# Every look starts a Python process that imports Airflow (~1.7 CPU-seconds), so looks much
# shorter than that would mostly be start-up.
MIN_LOOK_SECONDS = 5.0
MAX_LOOK_SECONDS = 3_600.0


@dataclass(frozen=True)
class DrainSettings:
    """How the drain DAG reads the topic.

    batch_size: messages per batch, each batch one transaction (``SITEWATCH_DRAIN_BATCH_SIZE``).
    poll_seconds: how long one read waits to fill a batch; a read that returns nothing means
    the drain is caught up (``SITEWATCH_DRAIN_POLL_SECONDS``).
    max_seconds: how long one run of the drain DAG lasts at least; past it, the drain ends its
    run at the first quiet moment (no message for ``idle_seconds``) instead of waiting in the
    triggerer again, and the next run applies pending migrations (``SITEWATCH_DRAIN_MAX_SECONDS``).
    Never while checks flow: a new run needs the scheduler to examine it several times, and with
    thousands of site runs due each examination waits minutes for its turn.
    idle_seconds: how long the drain keeps reading after the last message before it waits in the
    triggerer for the next one (``SITEWATCH_DRAIN_IDLE_SECONDS``; 0: at the first empty read).
    Checks arrive in bursts (the scheduler starts runs in batches); reading through the gaps
    keeps a burst sequence in one task process, and verdict sweeps and burn checks
    (``on_caught_up``) run on every empty read meanwhile. A waiting drain is woken by the trigger
    and resumes in a fresh process without the scheduler examining its run.
    look_seconds: how long one look of the sensor (one subprocess) waits for an undrained message
    before the next look starts (``SITEWATCH_SENSOR_LOOK_SECONDS``); a message ends a look at
    once, so this is a CPU-for-freshness trade-off (new partitions are seen from the next look),
    not a delay.
    """

    batch_size: int = 5000
    poll_seconds: float = 2.0
    max_seconds: float = 86_400.0
    idle_seconds: float = 30.0
    look_seconds: float = 120.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DrainSettings:
        """Read the settings; an unset or empty variable takes its default.

        Raises SettingError naming the first variable whose value is not a number in its range
        (the message gives the range and the default).
        """
        return cls(
            batch_size=_number(environ, BATCH_SIZE_VAR, cls.batch_size, 1, MAX_BATCH_SIZE),
            poll_seconds=_seconds(
                environ, POLL_SECONDS_VAR, cls.poll_seconds, 0.1, MAX_POLL_SECONDS
            ),
            max_seconds=_seconds(environ, MAX_SECONDS_VAR, cls.max_seconds, 1.0, MAX_RUN_SECONDS),
            idle_seconds=_seconds(
                environ, IDLE_SECONDS_VAR, cls.idle_seconds, 0.0, MAX_RUN_SECONDS
            ),
            look_seconds=_seconds(
                environ, LOOK_SECONDS_VAR, cls.look_seconds, MIN_LOOK_SECONDS, MAX_LOOK_SECONDS
            ),
        )


def _seconds(environ: Mapping[str, str], name: str, default, low, high) -> float:
    return _number(environ, name, default, low, high, unit="seconds")


def _number(environ, name: str, default, low, high, *, unit: str | None = None) -> int | float:
    """``environ[name]`` as a number from ``low`` to ``high``; a whole number unless ``unit``."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text) if unit else int(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        what = f"a number of {unit}" if unit else "a whole number"
        raise SettingError(
            f"{name}={text!r}: expected {what} from {low:g} to {high:g} (default {default:g})"
        )
    return value
