"""Figures of the hostile-input tests, merged into ``tests/artifacts/reliability-input.json``.

Each test module records its own section; the file keeps the sections of earlier modules, so one
run of the whole faults suite leaves one report (``docs/reliability.md`` quotes it).
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "reliability-input.json"


def record(section: str, figures: dict) -> None:
    """Store ``figures`` under ``section`` (replacing that section only)."""
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    try:
        report = json.loads(ARTIFACT.read_text())
    except (OSError, ValueError):
        report = {}
    report[section] = {
        **figures,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }
    ARTIFACT.write_text(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
