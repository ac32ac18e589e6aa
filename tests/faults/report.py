"""Figures of the hostile-input tests, merged into ``tests/artifacts/reliability-input.json``.

Each test module records its own section; the file keeps the sections of earlier modules, so one
run of the whole faults suite leaves one report (``docs/reliability.md`` quotes it).
"""

from __future__ import annotations

import fcntl
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "reliability-input.json"


def record(section: str, figures: dict) -> None:
    """Store ``figures`` under ``section`` (replacing that section only)."""
    merge(
        ARTIFACT,
        section,
        {
            **figures,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
        },
    )


def merge(artifact: Path, section: str, entry: dict) -> None:
    """Set ``section`` of the JSON file ``artifact`` to ``entry``, keeping the other sections.

    make test's processes record into the same files: each merge holds a lock (a file beside
    the artifact) from its read to its write, and replaces the file whole, so no section is lost
    and no reader sees half a file.
    """
    artifact.parent.mkdir(parents=True, exist_ok=True)
    with artifact.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            report = json.loads(artifact.read_text())
        except (OSError, ValueError):
            report = {}
        report[section] = entry
        written = artifact.with_suffix(".tmp")
        written.write_text(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        written.replace(artifact)
