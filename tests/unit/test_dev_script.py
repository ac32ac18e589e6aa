"""scripts/dev.sh refuses an executor or worker count it does not know, before starting anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dev_env(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    """``dev.sh env`` on an empty private state directory with ``settings`` in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEWATCH_")}
    env.update(SITEWATCH_STATE_DIR=str(tmp_path / "state"), **settings)
    return subprocess.run(
        [ROOT / "scripts" / "dev.sh", "env"], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"SITEWATCH_EXECUTOR": "kubernetes"}, "SITEWATCH_EXECUTOR must be 'local' "),
        ({"SITEWATCH_EXECUTOR": "Celery"}, "or 'celery', not 'Celery'"),
        ({"SITEWATCH_EXECUTOR": "celery", "SITEWATCH_WORKERS": "0"}, "SITEWATCH_WORKERS must be"),
        ({"SITEWATCH_WORKERS": "two"}, "a whole number from 1 to 999, not 'two'"),
    ],
)
def test_an_unknown_setting_stops_the_script_with_its_name(tmp_path, settings, message):
    done = dev_env(tmp_path, **settings)
    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "state").exists()  # nothing was started or written
